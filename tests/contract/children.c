/*
 * Process isolation and the rest of the process: a child runs handlers and
 * nothing else of its parent's. It holds no descriptor of the parent's
 * (database connections, listening sockets, files) but its standard
 * streams and its own socket to the parent; and it ignores the stop
 * signals sent to the whole process group (systemd's SIGTERM, a
 * terminal's Ctrl-C), which are the parent's to act on: the parent stops
 * gracefully and its children finish their jobs within the grace. A
 * program a handler runs, though, gets the default stop signals.
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "contract.h"

/* Descriptors the parent had open (beyond 0-2) before the worker
 * started, and so when it forked its children. */
struct parent_fds {
	int fd[64];
	int n;
};

static void parent_fds_read(struct parent_fds *pf)
{
	pf->n = 0;
	DIR *d = opendir("/proc/self/fd");
	ck_assert_ptr_nonnull(d);
	struct dirent *e;
	while ((e = readdir(d)) != NULL && pf->n < 64) {
		int fd = atoi(e->d_name);
		if (e->d_name[0] != '.' && fd > 2 && fd != dirfd(d))
			pf->fd[pf->n++] = fd;
	}
	closedir(d);
	ck_assert_int_gt(pf->n, 0);
}

/* Fails the job naming every descriptor beyond 0-2 but one AF_UNIX socket
 * (the child's own) and /dev/null (which keeps an inherited number taken);
 * and when a descriptor the child opens takes the number of one the
 * parent had (writes of the parent's code in the child to its old
 * descriptor would go into the child's new one). */
static int list_descriptors(bus_ctx *ctx, void *udata)
{
	const struct parent_fds *pf = udata;
	int fresh = open("/dev/null", O_RDONLY);
	if (fresh < 0)
		return bus_ctx_fail(ctx, "open /dev/null: %s", strerror(errno));
	for (int i = 0; i < pf->n; i++)
		if (fresh == pf->fd[i]) {
			close(fresh);
			return bus_ctx_fail(ctx,
					    "a descriptor opened in the child "
					    "took number %d, which the parent "
					    "had open",
					    fresh);
		}
	close(fresh);
	DIR *d = opendir("/proc/self/fd");
	if (d == NULL)
		return bus_ctx_fail(ctx, "opendir /proc/self/fd: %s",
				    strerror(errno));
	char extra[512] = "";
	size_t used = 0;
	int unix_sockets = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		int fd = atoi(e->d_name);
		if (e->d_name[0] == '.' || fd <= 2 || fd == dirfd(d))
			continue;
		int domain = -1;
		socklen_t len = sizeof domain;
		if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 &&
		    domain == AF_UNIX && unix_sockets == 0) {
			unix_sockets++;
			continue;
		}
		char target[128] = "?";
		char path[64];
		snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
		ssize_t n = readlink(path, target, sizeof target - 1);
		target[n > 0 ? n : 1] = '\0';
		if (strcmp(target, "/dev/null") == 0)
			continue;
		used += (size_t)snprintf(extra + used, sizeof extra - used,
					 " fd %d (%s%s)", fd, target,
					 domain == AF_INET || domain == AF_INET6
						 ? ", TCP/IP"
						 : "");
		if (used >= sizeof extra)
			break;
	}
	closedir(d);
	if (extra[0] != '\0')
		return bus_ctx_fail(ctx, "inherited:%s", extra);
	if (unix_sockets != 1)
		return bus_ctx_fail(ctx, "no socket to the parent");
	return 0;
}

/* Stores one job of `kind` (its handler registered by the caller on queue
 * `queue`), runs it on a worker with one child, and fails the test, saying
 * `what` and the job's error, unless it completed. */
static void assert_job_completes(bus *b, const char *kind, const char *queue,
				 const char *what)
{
	int64_t id = enqueue_ok(b, kind, "{}", NULL, BUS_INSERTED);
	bus_worker *w = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = queue,
						   .concurrency = 1,
						   .process = 1 });
	bus_job *j = NULL;
	for (int tries = 0; tries < 2000; tries++) {
		bus_job_free(j);
		j = get_job(b, id);
		if (j->state != BUS_JOB_AVAILABLE &&
		    j->state != BUS_JOB_EXECUTING)
			break;
		sleep_ms(5);
	}
	struct cJSON *errors = job_errors(j);
	char why[600];
	snprintf(why, sizeof why, "%s",
		 errors ? job_error_text(errors, 0) : "no error");
	cJSON_Delete(errors);
	ck_assert_msg(j->state == BUS_JOB_COMPLETED, "%s: state %d, %s", what,
		      j->state, why);
	bus_job_free(j);
	bus_worker_free(w);
}

START_TEST(process_isolation_child_holds_no_inherited_descriptor)
{
	/* Descriptors a child must not inherit, open before the children
	 * are forked, without close-on-exec: a listening TCP socket and a
	 * pipe. (With a SQL store, the store's connections too.) */
	int tcp = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(tcp, 0);
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	ck_assert_int_eq(bind(tcp, (struct sockaddr *)&a, sizeof a), 0);
	ck_assert_int_eq(listen(tcp, 1), 0);
	int p[2];
	ck_assert_int_eq(pipe(p), 0);

	bus *b;
	contract_open(&b);
	struct parent_fds pf;
	parent_fds_read(&pf);
	contract_handle(b, "fd.job", list_descriptors, &pf, NULL, "fd.q");
	assert_job_completes(b, "fd.job", "fd.q", "the child's descriptors");
	bus_close(b);
	close(tcp);
	close(p[0]);
	close(p[1]);
}
END_TEST

/* ---- a program a handler runs gets the default stop signals ---- */

/* Runs a shell that sends itself SIGTERM: a program started from a child
 * must be stoppable as any other, so the child's deafness to the group's
 * stop signals must not be SIG_IGN, which exec keeps. */
static int exec_term_self(bus_ctx *ctx, void *udata)
{
	(void)udata;
	pid_t pid = fork();
	if (pid < 0)
		return bus_ctx_fail(ctx, "fork: %s", strerror(errno));
	if (pid == 0) {
		execl("/bin/sh", "sh", "-c", "kill -TERM $$; exit 7",
		      (char *)NULL);
		_exit(127);
	}
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return bus_ctx_fail(ctx, "waitpid: %s",
					    strerror(errno));
	if (WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM)
		return 0;
	if (WIFEXITED(status))
		return bus_ctx_fail(ctx,
				    "sh survived its own SIGTERM (exit %d): "
				    "it inherited SIGTERM ignored",
				    WEXITSTATUS(status));
	return bus_ctx_fail(ctx, "sh ended with wait status %#x", status);
}

START_TEST(process_isolation_exec_from_handler_gets_default_sigterm)
{
	bus *b;
	contract_open(&b);
	contract_handle(b, "exec.job", exec_term_self, NULL, NULL, "exec.q");
	assert_job_completes(b, "exec.job", "exec.q",
			     "a program run by a handler");
	bus_close(b);
}
END_TEST

/* ---- SIGTERM to the whole process group ---- */

#define GROUP_JOBS 2
#define GROUP_JOB_MS 1500

static bus_worker *group_worker;

static void on_term(int sig)
{
	(void)sig;
	bus_worker_request_stop(group_worker);
}

static int slow_job(bus_ctx *ctx, void *udata)
{
	(void)ctx;
	(void)udata;
	sleep_ms(GROUP_JOB_MS);
	return 0;
}

/* The process that leads its own group: a worker with children, SIGTERM
 * to the group while both run, then the graceful stop. Exits 0 when both
 * jobs completed on their first attempt. */
static _Noreturn void group_leader(void)
{
	setpgid(0, 0);
	bus *b;
	contract_open(&b);
	contract_handle(b, "grp.job", slow_job, NULL, NULL, "grp.q");
	int64_t ids[GROUP_JOBS];
	for (int i = 0; i < GROUP_JOBS; i++)
		ids[i] = enqueue_ok(b, "grp.job", "{}", NULL, BUS_INSERTED);
	group_worker = contract_start_worker(
		b, &(struct contract_worker_opts){
			   .queue = "grp.q",
			   .concurrency = GROUP_JOBS,
			   .process = 1,
			   .shutdown_grace_ms = 30000 });
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_term;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	bus_worker_stats st;
	for (int waited = 0;; waited += 5) {
		bus_worker_get_stats(&st, group_worker);
		if (st.running == GROUP_JOBS)
			break;
		if (waited > 20000) {
			fprintf(stderr, "the jobs never ran together\n");
			_exit(2);
		}
		sleep_ms(5);
	}
	/* As systemd's stop or a terminal's Ctrl-C would: everyone. */
	kill(0, SIGTERM);
	if (bus_worker_run(group_worker) != 0) {
		fprintf(stderr, "bus_worker_run: %s\n",
			bus_error_last()->message);
		_exit(3);
	}
	int bad = 0;
	for (int i = 0; i < GROUP_JOBS; i++) {
		bus_job *j = NULL;
		if (bus_job_get(&j, b, ids[i]) != 0) {
			fprintf(stderr, "bus_job_get: %s\n",
				bus_error_last()->message);
			_exit(4);
		}
		if (j->state != BUS_JOB_COMPLETED || j->attempt != 1) {
			fprintf(stderr,
				"job %d: state %d attempt %d errors %s\n", i,
				j->state, j->attempt, j->errors);
			bad = 1;
		}
		bus_job_free(j);
	}
	bus_worker_free(group_worker);
	bus_close(b);
	_exit(bad);
}

START_TEST(process_isolation_jobs_finish_after_sigterm_to_the_group)
{
	fflush(NULL);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		group_leader();
	int status = 0;
	pid_t r;
	for (int waited = 0;; waited += 10) {
		r = waitpid(pid, &status, WNOHANG);
		if (r == pid || waited > 90000)
			break;
		sleep_ms(10);
	}
	if (r != pid) {
		kill(-pid, SIGKILL);
		waitpid(pid, &status, 0);
		ck_abort_msg("the worker did not stop after SIGTERM");
	}
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "after SIGTERM to the process group the jobs did not "
		      "finish in the grace (status %#x; see stderr)",
		      status);
}
END_TEST

TCase *contract_children(void)
{
	TCase *tc = contract_tcase("children");
	tcase_set_tags(tc, "process");
	tcase_add_test(tc, process_isolation_child_holds_no_inherited_descriptor);
	tcase_add_test(tc,
		       process_isolation_jobs_finish_after_sigterm_to_the_group);
	tcase_add_test(tc,
		       process_isolation_exec_from_handler_gets_default_sigterm);
	return tc;
}
