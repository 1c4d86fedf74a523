/*
 * The worker under store faults it cannot cause through the public API: a
 * store that refuses one job's outcome, one job's rescue, every lease
 * renewal, or does not answer for a while. The store under test is
 * $BUS_CONTRACT_URL (memory: when unset; faults_mysql.sh runs it on
 * MariaDB), its operations wrapped so that chosen calls fail as a real
 * store's would (nothing changed, an error recorded).
 *
 *  - one refused outcome never blocks the others: the batch is split, the
 *    refused item recorded discarded with the refusal as its error;
 *  - an outcome refused in every form is left executing, the others
 *    recorded;
 *  - while the store does not answer, outcomes wait for it (none is
 *    discarded) and are recorded once it is back;
 *  - one refused rescue never stops the rescue of the others;
 *  - when renewals fail, a running job is stopped once its lease has run
 *    out (its handler sees bus_ctx_expired) and its outcome is not
 *    recorded; rescued later, it runs again;
 *  - the stop of a job whose lease ran out does not wait for the lease
 *    keeper's store calls (a renewal that hangs);
 *  - renewals go on while a rescue or prune is slow.
 */
#include <stdatomic.h>
#include <string.h>

#include "contract/contract.h"
#include "core.h"
#include "error.h"

/* ---- the faulty store ---- */

static const struct bus_store_ops *real;
static struct bus_store_ops faulty;

static _Atomic int64_t poison_id;     /* refuse outcomes of this job */
static atomic_int poison_every_state; /* ... its failure too */
static atomic_int poison_rescue_only; /* only rescues (only_if_expired) */
/* At its first refusal, the poisoned job's fate is written by another
 * party (as a rescuer would): it is not the worker's any more. */
static atomic_int poison_then_taken;
static atomic_int extend_down;        /* every renewal fails */
static atomic_int store_down;         /* finish and get fail */
static atomic_int refusals;           /* finish calls refused */
static atomic_int slow_maintenance;   /* expired and prune hang */
/* The lease keeper's calls (extend, cancel_pending) fail slowly, as a
 * store's do while it reconnects in vain. */
static atomic_int lease_calls_mute;
/* While mute: extend calls of one job made right after a failed call of
 * several (the one-by-one fallback), and the size of the last extend
 * since the last cancel_pending (0: none). */
static atomic_int single_extends;
static atomic_int last_extend_n;
/* The lease keeper's calls do not return while set (at most a minute), as
 * a store's do that neither answers nor drops the connection. */
static atomic_int lease_calls_hang;
static atomic_int lease_hanging; /* lease keeper calls hanging now */

static int poisoned(const bus_store_finish *it)
{
	if (it->id != atomic_load(&poison_id))
		return 0;
	if (atomic_load(&poison_rescue_only) && !it->only_if_expired)
		return 0;
	return it->state != BUS_JOB_DISCARDED ||
	       atomic_load(&poison_every_state);
}

static int faulty_finish(bus_store *s, int64_t now,
			 const bus_store_finish *items, size_t n,
			 unsigned char *applied)
{
	if (atomic_load(&store_down)) {
		atomic_fetch_add(&refusals, 1);
		return bus__error_set(BUS_EBACKEND,
				      "simulated outage: the store is down");
	}
	for (size_t i = 0; i < n; i++) {
		if (poisoned(&items[i])) {
			if (atomic_exchange(&poison_then_taken, 0)) {
				bus_store_finish other = items[i];
				other.state = BUS_JOB_CANCELLED;
				other.delay_us = -1;
				other.error = "taken by another party";
				unsigned char one = 0;
				real->finish(s, now, &other, 1, &one);
			}
			atomic_fetch_add(&refusals, 1);
			return bus__error_set(BUS_EBACKEND,
					      "simulated refusal of job %lld "
					      "(\xff not UTF-8)",
					      (long long)items[i].id);
		}
	}
	return real->finish(s, now, items, n, applied);
}

static int faulty_get(bus_store *s, int64_t id, bus_job **out)
{
	if (atomic_load(&store_down)) {
		*out = NULL;
		return bus__error_set(BUS_EBACKEND,
				      "simulated outage: the store is down");
	}
	return real->get(s, id, out);
}

static void lease_call_hang(void)
{
	if (!atomic_load(&lease_calls_hang))
		return;
	atomic_fetch_add(&lease_hanging, 1);
	for (int i = 0; i < 12000 && atomic_load(&lease_calls_hang); i++)
		sleep_ms(5);
	atomic_fetch_sub(&lease_hanging, 1);
}

static int faulty_extend(bus_store *s, int64_t now, const char *node,
			 int64_t lease_us, const int64_t *ids,
			 const int *attempts, size_t n, unsigned char *held)
{
	lease_call_hang();
	if (atomic_load(&extend_down))
		return bus__error_set(BUS_EBACKEND,
				      "simulated outage: renewals fail");
	if (atomic_load(&lease_calls_mute)) {
		if (n == 1 && atomic_load(&last_extend_n) > 1)
			atomic_fetch_add(&single_extends, 1);
		atomic_store(&last_extend_n, (int)n);
		sleep_ms(50);
		return bus__error_set(BUS_EBACKEND,
				      "simulated outage: no answer");
	}
	return real->extend(s, now, node, lease_us, ids, attempts, n, held);
}

static int faulty_cancel_pending(bus_store *s, const char *node,
				 const int64_t *ids, const int *attempts,
				 size_t n, unsigned char *pending)
{
	lease_call_hang();
	if (atomic_load(&lease_calls_mute)) {
		atomic_store(&last_extend_n, 0);
		sleep_ms(50);
		return bus__error_set(BUS_EBACKEND,
				      "simulated outage: no answer");
	}
	return real->cancel_pending(s, node, ids, attempts, n, pending);
}

/* A rescue or prune that does not return while slow_maintenance is set
 * (at most a minute). */
static atomic_int hanging; /* maintenance calls hanging now */

static void hang_while_slow(void)
{
	if (!atomic_load(&slow_maintenance))
		return;
	atomic_fetch_add(&hanging, 1);
	for (int i = 0; i < 12000 && atomic_load(&slow_maintenance); i++)
		sleep_ms(5);
	atomic_fetch_sub(&hanging, 1);
}

static int maintenance_hangs(void *arg)
{
	(void)arg;
	return atomic_load(&hanging) > 0;
}

static int faulty_expired(bus_store *s, int64_t now, size_t limit,
			  bus_job **out, size_t *n_out)
{
	hang_while_slow();
	return real->expired(s, now, limit, out, n_out);
}

static int faulty_prune(bus_store *s, int64_t now, int64_t age_us,
			size_t limit, int64_t *deleted)
{
	hang_while_slow();
	return real->prune(s, now, age_us, limit, deleted);
}

/* Opens the store under test, emptied, behind the faulty ops. */
static bus *open_faulty(struct test_clock *clock)
{
	bus *b;
	contract_open(&b);
	if (clock != NULL)
		contract_clock_install(b, clock);
	atomic_store(&poison_id, -1);
	atomic_store(&poison_every_state, 0);
	atomic_store(&poison_rescue_only, 0);
	atomic_store(&poison_then_taken, 0);
	atomic_store(&extend_down, 0);
	atomic_store(&store_down, 0);
	atomic_store(&refusals, 0);
	atomic_store(&slow_maintenance, 0);
	atomic_store(&lease_calls_mute, 0);
	atomic_store(&single_extends, 0);
	atomic_store(&last_extend_n, 0);
	atomic_store(&lease_calls_hang, 0);
	real = b->store.ops;
	faulty = *real;
	faulty.finish = faulty_finish;
	faulty.get = faulty_get;
	faulty.extend = faulty_extend;
	faulty.expired = faulty_expired;
	faulty.prune = faulty_prune;
	faulty.cancel_pending = faulty_cancel_pending;
	b->store.ops = &faulty;
	return b;
}

static void close_faulty(bus *b)
{
	atomic_store(&poison_id, -1);
	atomic_store(&store_down, 0);
	atomic_store(&extend_down, 0);
	atomic_store(&slow_maintenance, 0);
	atomic_store(&lease_calls_mute, 0);
	atomic_store(&lease_calls_hang, 0);
	bus_close(b);
}

/* ---- handlers ---- */

static int succeed(bus_ctx *ctx, void *udata)
{
	(void)ctx;
	atomic_fetch_add((atomic_int *)udata, 1);
	return 0;
}

struct hold {
	atomic_int started;
	atomic_int release;
	atomic_int saw_expired;
	atomic_int returned;
};

/* Attempt 1 holds until released or stopped; later attempts succeed. */
static int hold_first(bus_ctx *ctx, void *udata)
{
	struct hold *h = udata;
	atomic_fetch_add(&h->started, 1);
	if (bus_ctx_job(ctx)->attempt > 1)
		return 0;
	for (int i = 0; i < CONTRACT_LIVENESS_MS && !atomic_load(&h->release);
	     i++) {
		if (bus_ctx_expired(ctx)) {
			atomic_store(&h->saw_expired, 1);
			break;
		}
		sleep_ms(1);
	}
	atomic_fetch_add(&h->returned, 1);
	return 0;
}

/* ---- outcomes ---- */

static void enqueue_n(bus *b, const char *kind, int64_t *ids, int n)
{
	for (int i = 0; i < n; i++)
		ids[i] = enqueue_ok(b, kind, "{}", NULL, BUS_INSERTED);
}

START_TEST(a_refused_outcome_is_recorded_discarded_and_blocks_nothing)
{
	atomic_int runs = 0;
	bus *b = open_faulty(NULL);
	contract_handle(b, "faults.out", succeed, &runs, NULL, "faults.q");
	int64_t ids[12];
	enqueue_n(b, "faults.out", ids, 12);
	atomic_store(&poison_id, ids[5]);
	bus_worker *w = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "faults.q",
						   .concurrency = 4 });
	for (int i = 0; i < 12; i++) {
		if (i == 5)
			continue;
		bus_job_free(wait_job(b, ids[i], BUS_JOB_COMPLETED, 1));
	}
	bus_job *j = wait_job(b, ids[5], BUS_JOB_DISCARDED, 1);
	assert_errors(j, 1, "the store refused this job's outcome (completed)");
	assert_errors(j, 1, "simulated refusal");
	bus_job_free(j);
	ck_assert_int_ge(atomic_load(&refusals), 1);
	bus_worker_stop(w, 1000);
	bus_worker_stats st;
	bus_worker_get_stats(&st, w);
	ck_assert_int_eq(st.refused, 1);
	ck_assert_int_eq(st.completed, 11);
	bus_worker_free(w);
	close_faulty(b);
}
END_TEST

/* A refused outcome whose job is meanwhile not the worker's (rescued,
 * say) is not recorded discarded, nor counted refused: its new fate
 * stands. */
START_TEST(a_refused_outcome_of_a_job_taken_meanwhile_is_not_counted_refused)
{
	atomic_int runs = 0;
	bus *b = open_faulty(NULL);
	contract_handle(b, "faults.taken", succeed, &runs, NULL, "faults.t");
	int64_t ids[4];
	enqueue_n(b, "faults.taken", ids, 4);
	atomic_store(&poison_id, ids[1]);
	atomic_store(&poison_then_taken, 1);
	bus_worker *w = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "faults.t" });
	for (int i = 0; i < 4; i++) {
		if (i != 1)
			bus_job_free(wait_job(b, ids[i], BUS_JOB_COMPLETED, 1));
	}
	bus_job *j = wait_job(b, ids[1], BUS_JOB_CANCELLED, 1);
	assert_errors(j, 1, "taken by another party");
	bus_job_free(j);
	bus_worker_stop(w, 1000);
	bus_worker_stats st;
	bus_worker_get_stats(&st, w);
	ck_assert_int_eq(st.completed, 3);
	ck_assert_int_eq(st.refused, 0);
	ck_assert_int_eq(st.discarded, 0);
	ck_assert_int_eq(st.lost, 1);
	bus_worker_free(w);
	close_faulty(b);
}
END_TEST

START_TEST(an_outcome_refused_in_every_form_leaves_its_job_to_the_rescuer)
{
	struct test_clock clock;
	atomic_int runs = 0;
	bus *b = open_faulty(&clock);
	contract_handle(b, "faults.every", succeed, &runs, NULL, "faults.e");
	int64_t ids[8];
	enqueue_n(b, "faults.every", ids, 8);
	atomic_store(&poison_id, ids[0]);
	atomic_store(&poison_every_state, 1);
	bus_worker *w = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "faults.e",
						   .concurrency = 2,
						   .lease_ms = 60000,
						   .rescue_delay_ms = 1 });
	for (int i = 1; i < 8; i++)
		bus_job_free(wait_job(b, ids[i], BUS_JOB_COMPLETED, 1));
	sleep_ms(CONTRACT_SETTLE_MS);
	bus_job *j = get_job(b, ids[0]);
	ck_assert_str_eq(bus_job_state_name(j->state), "executing");
	bus_job_free(j);
	/* The store takes it again: its lease runs out, it is rescued and
	 * runs again. */
	atomic_store(&poison_id, -1);
	clock_advance(&clock, 61 * SEC_US);
	j = wait_job(b, ids[0], BUS_JOB_RETRYABLE, 1);
	assert_errors(j, 1, "lease expired");
	bus_job_free(j);
	clock_advance(&clock, SEC_US);
	bus_job_free(wait_job(b, ids[0], BUS_JOB_COMPLETED, 2));
	bus_worker_free(w);
	close_faulty(b);
}
END_TEST

static int refused_a_few(void *arg)
{
	(void)arg;
	return atomic_load(&refusals) >= 3;
}

START_TEST(outcomes_wait_for_a_store_that_does_not_answer)
{
	atomic_int runs = 0;
	bus *b = open_faulty(NULL);
	contract_handle(b, "faults.down", succeed, &runs, NULL, "faults.d");
	int64_t ids[10];
	enqueue_n(b, "faults.down", ids, 10);
	atomic_store(&store_down, 1);
	bus_worker *w = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "faults.d",
						   .concurrency = 2 });
	wait_for(refused_a_few, NULL, "the worker to try a few times");
	atomic_store(&store_down, 0);
	for (int i = 0; i < 10; i++)
		bus_job_free(wait_job(b, ids[i], BUS_JOB_COMPLETED, 1));
	bus_worker_stop(w, 1000);
	bus_worker_stats st;
	bus_worker_get_stats(&st, w);
	ck_assert_int_eq(st.refused, 0);
	ck_assert_int_eq(st.completed, 10);
	bus_worker_free(w);
	close_faulty(b);
}
END_TEST

/* ---- rescues ---- */

START_TEST(a_refused_rescue_does_not_stop_the_others)
{
	struct test_clock clock;
	struct hold h = { 0, 0, 0, 0 };
	bus *b = open_faulty(&clock);
	contract_handle(b, "faults.strand", hold_first, &h, NULL, "faults.s");
	int64_t ids[6];
	enqueue_n(b, "faults.strand", ids, 6);
	atomic_store(&poison_id, ids[0]);
	atomic_store(&poison_rescue_only, 1);
	bus_worker *dead = contract_start_worker(
		b, &(struct contract_worker_opts){
			      .queue = "faults.s", .node = "dead",
			      .concurrency = 6, .lease_ms = 60000,
			      .rescue_interval_ms = 600000 });
	for (int i = 0; i < 6; i++)
		bus_job_free(wait_job(b, ids[i], BUS_JOB_EXECUTING, 1));
	clock_advance(&clock, 120 * SEC_US);
	bus_worker *rescuer = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "faults.other",
						   .node = "rescuer" });
	for (int i = 1; i < 6; i++) {
		bus_job *j = wait_job(b, ids[i], BUS_JOB_RETRYABLE, 1);
		assert_errors(j, 1, "lease expired");
		bus_job_free(j);
	}
	/* The refused one is recorded failed, with the refusal. */
	bus_job *j = wait_job(b, ids[0], BUS_JOB_DISCARDED, 1);
	assert_errors(j, 1, "refused");
	bus_job_free(j);
	atomic_store(&h.release, 1);
	bus_worker_free(rescuer);
	bus_worker_free(dead);
	close_faulty(b);
}
END_TEST

/* ---- renewals ---- */

static int lease_lost(void *arg)
{
	bus_worker_stats st;
	bus_worker_get_stats(&st, arg);
	return st.lease_lost >= 1;
}

START_TEST(a_job_whose_lease_cannot_be_renewed_is_stopped)
{
	struct test_clock clock;
	struct hold h = { 0, 0, 0, 0 };
	bus *b = open_faulty(&clock);
	contract_handle(b, "faults.renew", hold_first, &h, NULL, "faults.r");
	int64_t id = enqueue_ok(b, "faults.renew", "{}", NULL, BUS_INSERTED);
	bus_worker *w = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "faults.r",
						   .lease_ms = 600,
						   .rescue_delay_ms = 1 });
	wait_atomic(&h.started, 1, "the handler to start");
	atomic_store(&extend_down, 1);
	/* Within its lease (600 ms of this machine's time) and a renewal
	 * period, the worker stops it: the handler sees bus_ctx_expired. */
	wait_atomic(&h.returned, 1, "the handler to be stopped");
	ck_assert_int_eq(atomic_load(&h.saw_expired), 1);
	wait_for(lease_lost, w, "the worker to count the lost lease");
	/* Its outcome is not recorded: the job is the rescuer's to decide. */
	sleep_ms(CONTRACT_SETTLE_MS);
	bus_job *j = get_job(b, id);
	ck_assert_str_eq(bus_job_state_name(j->state), "executing");
	ck_assert_int_eq(j->attempt, 1);
	bus_job_free(j);
	bus_worker_stats st;
	bus_worker_get_stats(&st, w);
	ck_assert_int_eq(st.completed, 0);

	/* The store's lease runs out too; rescued, it runs again. */
	atomic_store(&extend_down, 0);
	clock_advance(&clock, SEC_US);
	bus_job_free(wait_job(b, id, BUS_JOB_RETRYABLE, 1));
	clock_advance(&clock, SEC_US);
	bus_job_free(wait_job(b, id, BUS_JOB_COMPLETED, 2));
	bus_worker_free(w);
	close_faulty(b);
}
END_TEST

static int leases_lost_8(void *arg)
{
	bus_worker_stats st;
	bus_worker_get_stats(&st, arg);
	return st.lease_lost >= 8;
}

/* While the store does not answer, the lease keeper does not try each
 * job's renewal on its own: each such call may last a whole reconnect
 * cycle, and the stop of the jobs whose lease runs out (on the same
 * thread) would come that many times later -- after another node may have
 * rescued and rerun them. */
START_TEST(a_store_that_does_not_answer_is_not_asked_lease_by_lease)
{
	struct hold h = { 0, 0, 0, 0 };
	bus *b = open_faulty(NULL);
	contract_handle(b, "faults.mute", hold_first, &h, NULL, "faults.m");
	int64_t ids[8];
	enqueue_n(b, "faults.mute", ids, 8);
	bus_worker *w = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "faults.m",
						   .concurrency = 8,
						   .lease_ms = 1500,
						   .rescue_interval_ms = 600000 });
	wait_atomic(&h.started, 8, "the handlers to start");
	atomic_store(&lease_calls_mute, 1);
	wait_for(leases_lost_8, w, "the worker to stop the 8 jobs");
	wait_atomic(&h.returned, 8, "the handlers to return");
	ck_assert_int_eq(atomic_load(&h.saw_expired), 1);
	ck_assert_int_eq(atomic_load(&single_extends), 0);
	atomic_store(&lease_calls_mute, 0);
	atomic_store(&h.release, 1);
	bus_worker_free(w);
	close_faulty(b);
}
END_TEST

/* The stop of a job whose lease ran out does not wait for the lease
 * keeper's store calls: with a renewal that does not return (for a minute,
 * three times the test's wait), the job is stopped at its local deadline,
 * while that renewal still hangs -- before another node could rescue and
 * rerun it. */
START_TEST(a_job_is_stopped_at_its_deadline_while_renewals_hang)
{
	struct hold h = { 0, 0, 0, 0 };
	bus *b = open_faulty(NULL);
	contract_handle(b, "faults.hang", hold_first, &h, NULL, "faults.h");
	int64_t id = enqueue_ok(b, "faults.hang", "{}", NULL, BUS_INSERTED);
	bus_worker *w = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "faults.h",
						   .lease_ms = 600,
						   .rescue_interval_ms = 600000 });
	wait_atomic(&h.started, 1, "the handler to start");
	atomic_store(&lease_calls_hang, 1);
	wait_atomic(&h.returned, 1, "the handler to be stopped");
	ck_assert_int_eq(atomic_load(&h.saw_expired), 1);
	wait_for(lease_lost, w, "the worker to count the lost lease");
	ck_assert_msg(atomic_load(&lease_hanging) > 0,
		      "the job was stopped only after the hung store call "
		      "returned");
	atomic_store(&lease_calls_hang, 0);
	/* Its outcome is not recorded: the rescue decides. */
	sleep_ms(CONTRACT_SETTLE_MS);
	bus_job *j = get_job(b, id);
	ck_assert_str_eq(bus_job_state_name(j->state), "executing");
	bus_job_free(j);
	bus_worker_free(w);
	close_faulty(b);
}
END_TEST

struct lease_wait {
	bus *b;
	int64_t id, want, seen;
};

static int lease_is(void *arg)
{
	struct lease_wait *lw = arg;
	bus_job *j = get_job(lw->b, lw->id);
	lw->seen = j->lease_until;
	bus_job_free(j);
	return lw->seen == lw->want;
}

/* Renewals do not wait behind a slow rescue or prune: they have a thread
 * and connection of their own. */
START_TEST(renewals_go_on_while_maintenance_is_slow)
{
	struct test_clock clock;
	struct hold h = { 0, 0, 0, 0 };
	bus *b = open_faulty(&clock);
	contract_handle(b, "faults.slow", hold_first, &h, NULL, "faults.sl");
	int64_t id = enqueue_ok(b, "faults.slow", "{}", NULL, BUS_INSERTED);
	bus_worker *w = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "faults.sl",
						   .lease_ms = 1500 });
	wait_atomic(&h.started, 1, "the handler to start");
	atomic_store(&slow_maintenance, 1);
	wait_for(maintenance_hangs, NULL, "a rescue or prune to hang");
	for (int i = 0; i < 3; i++) {
		clock_advance(&clock, SEC_US);
		struct lease_wait lw = { b, id, clock_now(&clock) + 1500000, 0 };
		ck_assert_msg(contract_poll(lease_is, &lw),
			      "the lease was not renewed to %lld while "
			      "maintenance was slow (it is %lld)",
			      (long long)lw.want, (long long)lw.seen);
	}
	/* ... all while maintenance still hung. */
	ck_assert_int_gt(atomic_load(&hanging), 0);
	bus_worker_stats st;
	bus_worker_get_stats(&st, w);
	ck_assert_int_eq(st.lease_lost, 0);
	ck_assert_int_eq(atomic_load(&h.saw_expired), 0);
	atomic_store(&slow_maintenance, 0);
	atomic_store(&h.release, 1);
	bus_job_free(wait_job(b, id, BUS_JOB_COMPLETED, 1));
	bus_worker_free(w);
	close_faulty(b);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("faults");
	TCase *tc = contract_tcase("faults");
	tcase_add_test(tc,
		       a_refused_outcome_is_recorded_discarded_and_blocks_nothing);
	tcase_add_test(
		tc, an_outcome_refused_in_every_form_leaves_its_job_to_the_rescuer);
	tcase_add_test(
		tc,
		a_refused_outcome_of_a_job_taken_meanwhile_is_not_counted_refused);
	tcase_add_test(tc, outcomes_wait_for_a_store_that_does_not_answer);
	tcase_add_test(tc, a_refused_rescue_does_not_stop_the_others);
	tcase_add_test(tc, a_job_whose_lease_cannot_be_renewed_is_stopped);
	tcase_add_test(tc, renewals_go_on_while_maintenance_is_slow);
	tcase_add_test(tc,
		       a_store_that_does_not_answer_is_not_asked_lease_by_lease);
	tcase_add_test(tc, a_job_is_stopped_at_its_deadline_while_renewals_hang);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
