/*
 * An admin write reports what happened, whatever the network does: through
 * the fault proxy, the connection is dropped right after the server's
 * reply to the COMMIT of a cancel, a retry or a delete (the reply is
 * swallowed: the change committed, the store cannot know it), or to the
 * changing statement itself (before the COMMIT: the change must not land,
 * and runs again). Each call must report success and leave the job as
 * asked: cancelled, available again, deleted; a cancel of an executing job
 * records its request. Run blindly again, a delete that landed would say
 * "not found" and a cancel "already finished". Last, the same with the
 * lost session left alive on the server (holding the job's row lock when
 * the change had not committed): the store must end it first.
 *
 * On PostgreSQL ($BUS_FAULT_STORE=postgres, tests/postgres/net_admin.sh)
 * the same: each change is a transaction there too, so the COMMIT's reply
 * is the one lost, or the changing statement's (its Sync passed, which
 * commits nothing inside the transaction).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault_proxy.h"

static struct fault_env env;
static struct fault_proxy proxy;

/* Texts of the changing statements (backends/mysql/admin.c,
 * backends/postgres/admin.c), for rules that fire on them, or on the
 * COMMIT after them. */
enum op { CANCEL, RETRY, DELETE };
static const char *const op_name[] = { "cancel", "retry", "delete" };
static const char *const my_sql[] = {
	"cancel_requested_at = IF(state = 2",
	"max_attempts = IF(attempt >= max_attempts",
	"DELETE FROM",
};
static const char *const pg_sql[] = {
	"cancel_requested_at = CASE WHEN state = 2",
	"max_attempts = CASE WHEN attempt >= max_attempts",
	"DELETE FROM",
};

static const char *op_sql(enum op op)
{
	return env.dsn.postgres ? pg_sql[op] : my_sql[op];
}

static int64_t new_job(bus *direct, const char *kind)
{
	bus_enqueue_result r;
	if (bus_enqueue(&r, direct, kind, "{}", NULL) != 0)
		fault_fail("bus_enqueue: %s", bus_error_last()->message);
	return r.id;
}

static int run_op(bus *b, enum op op, int64_t id)
{
	switch (op) {
	case CANCEL: return bus_job_cancel(b, id);
	case RETRY: return bus_job_retry(b, id);
	default: return bus_job_delete(b, id);
	}
}

/* The job's state through the direct connection; -1 when it is gone. */
static int state_of(bus *direct, int64_t id, int64_t *cancel_requested_at)
{
	bus_job *j = NULL;
	int rc = bus_job_get(&j, direct, id);
	if (rc == BUS_ENOTFOUND)
		return -1;
	if (rc != 0)
		fault_fail("bus_job_get: %s", bus_error_last()->message);
	int st = (int)j->state;
	if (cancel_requested_at != NULL)
		*cancel_requested_at = j->cancel_requested_at;
	bus_job_free(j);
	return st;
}

/* Makes the job executing, as a claim by node "elsewhere" would, with
 * the test's own connection. */
static void make_executing(int64_t id)
{
	char why[300];
	fault_db *db = fault_connect(&env.dsn, why, sizeof why);
	if (db == NULL)
		fault_fail("connecting: %s", why);
	if (env.dsn.postgres)
		fault_sql(db,
			  "UPDATE %sjobs SET state = 2, attempt = attempt + 1, "
			  "attempted_by = 'elsewhere', attempted_at = now(), "
			  "lease_until = now() + interval '1 hour' "
			  "WHERE id = %lld",
			  env.prefix, (long long)id);
	else
		fault_sql(db,
			  "UPDATE %sjobs SET state = 2, attempt = attempt + 1, "
			  "attempted_by = 'elsewhere', "
			  "attempted_at = UTC_TIMESTAMP(6), "
			  "lease_until = UTC_TIMESTAMP(6) + INTERVAL 1 HOUR "
			  "WHERE id = %lld",
			  env.prefix, (long long)id);
	fault_db_close(db);
}

/* One admin call whose connection the armed rule breaks: it must fire,
 * the call must succeed, and the job must end in `want` (-1: gone). */
static void broken(bus *direct, bus *b, enum op op, int64_t id,
		   const char *rule, int want, const char *label)
{
	long fired = fault_proxy_stat(&proxy, "fired");
	fault_proxy_cmd(&proxy, "%s", rule);
	int rc = run_op(b, op, id);
	if (fault_proxy_stat(&proxy, "fired") != fired + 1) {
		fault_proxy_cmd(&proxy, "disarm");
		fault_fail("%s: the proxy's rule '%s' did not fire", label,
			   rule);
	}
	if (rc != 0)
		fault_fail("%s: bus_job_%s of job %lld returned %d: %s", label,
			   op_name[op], (long long)id, rc,
			   bus_error_last()->message);
	int st = state_of(direct, id, NULL);
	if (st != want)
		fault_fail("%s: job %lld is %s, expected %s", label,
			   (long long)id,
			   st < 0 ? "gone" : bus_job_state_name(st),
			   want < 0 ? "gone" : bus_job_state_name(want));
	fault_note("%s: success, job %s", label,
		   want < 0 ? "gone" : bus_job_state_name(want));
}

/* For each op, with `rule` ("COMMIT after <its statement>", or its
 * statement): a job in the state the op applies to, the op broken. */
static void each_op(bus *direct, bus *b, int on_commit, const char *tag)
{
	char rule[160], label[160];
	for (int op = CANCEL; op <= DELETE; op++) {
		int64_t id = new_job(direct, "net.admin");
		int want = BUS_JOB_CANCELLED;
		if (op == RETRY) {
			if (bus_job_cancel(direct, id) != 0)
				fault_fail("bus_job_cancel: %s",
					   bus_error_last()->message);
			want = BUS_JOB_AVAILABLE;
		} else if (op == DELETE) {
			want = -1;
		}
		if (on_commit)
			snprintf(rule, sizeof rule, "drop-reply COMMIT after %s",
				 op_sql((enum op)op));
		else
			snprintf(rule, sizeof rule, "drop-reply %s",
				 op_sql((enum op)op));
		snprintf(label, sizeof label, "%s, %s reply lost%s",
			 op_name[op], on_commit ? "COMMIT" : "statement", tag);
		broken(direct, b, (enum op)op, id, rule, want, label);
	}
}

/* A cancel of an executing job records the request, once. */
static void cancel_executing(bus *direct, bus *b, int on_commit)
{
	int64_t id = new_job(direct, "net.admin.exec");
	make_executing(id);
	char rule[160], label[160];
	snprintf(rule, sizeof rule,
		 on_commit ? "drop-reply COMMIT after %s" : "drop-reply %s",
		 op_sql(CANCEL));
	snprintf(label, sizeof label, "cancel of an executing job, %s reply "
				      "lost",
		 on_commit ? "COMMIT" : "statement");
	broken(direct, b, CANCEL, id, rule, BUS_JOB_EXECUTING, label);
	int64_t requested = 0;
	state_of(direct, id, &requested);
	if (requested == 0)
		fault_fail("%s: no cancel request was recorded", label);
}

int main(void)
{
	fault_init(&env, "net_admin", "fna", 240);
	bus *direct = fault_open_bus(&env);
	if (bus_migrate(direct) != 0)
		fault_fail("bus_migrate: %s", bus_error_last()->message);
	fault_proxy_start(&proxy, &env);
	bus *b = fault_proxy_bus(&env, &proxy,
				 "connect-timeout=5&read-timeout=10");
	/* Each op once unbroken: the statements are prepared and work. */
	for (int op = CANCEL; op <= DELETE; op++) {
		int64_t id = new_job(direct, "net.admin.warm");
		if (op == RETRY && bus_job_cancel(direct, id) != 0)
			fault_fail("bus_job_cancel: %s",
				   bus_error_last()->message);
		if (run_op(b, (enum op)op, id) != 0)
			fault_fail("bus_job_%s: %s", op_name[op],
				   bus_error_last()->message);
	}
	each_op(direct, b, 1, "");
	cancel_executing(direct, b, 1);
	each_op(direct, b, 0, "");
	cancel_executing(direct, b, 0);
	/* The lost session lives on: idle after its COMMIT, or holding the
	 * job's row lock in its open transaction. */
	fault_proxy_cmd(&proxy, "orphan");
	each_op(direct, b, 1, ", session alive");
	each_op(direct, b, 0, ", session alive");
	bus_close(b);
	bus_close(direct);
	fault_proxy_stop(&proxy);
	fault_pass("cancel, retry and delete report what they did when the "
		   "connection drops");
}
