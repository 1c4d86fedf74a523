#include "policy.h"
#include "uuid.h"

#define MINUTE_US (60LL * 1000000)

int64_t bus__backoff_default_us(int attempt)
{
	int64_t minutes = attempt >= 7 ? 60 : (int64_t)1 << (attempt - 1);
	if (minutes > 60)
		minutes = 60;
	if (attempt < 1)
		minutes = 1;
	int64_t base = minutes * MINUTE_US;
	/* Jitter spreads retries of jobs that failed together. */
	int64_t jitter = (int64_t)(bus__random_u64() % (uint64_t)(base / 10 + 1));
	return base + jitter;
}

int64_t bus__delay_clamp_us(int64_t us)
{
	return us < 0 ? 0 : us > BUS_DELAY_MAX_US ? BUS_DELAY_MAX_US : us;
}

int64_t bus__seconds_to_us(int64_t s)
{
	return s <= 0 ? 0 : s >= BUS_DELAY_MAX_S ? BUS_DELAY_MAX_US : s * 1000000;
}

int64_t bus__backoff_us(const struct bus_handler *h, int attempt)
{
	if (h != NULL && h->job.backoff != NULL)
		return bus__delay_clamp_us(
			h->job.backoff(attempt, h->job.backoff_udata));
	return bus__backoff_default_us(attempt);
}

void bus__policy_decide(bus_store_finish *f, const bus_job *job,
			const struct bus_handler *h, const char *node,
			const struct bus_outcome *o)
{
	f->id = job->id;
	f->node = node;
	f->attempt = job->attempt;
	f->only_if_expired = 0;
	f->delay_us = -1;
	f->error = NULL;
	f->refund_attempt = 0;
	switch (o->rc) {
	case 0:
		f->state = BUS_JOB_COMPLETED;
		return;
	case BUS_ESNOOZE:
		f->state = BUS_JOB_SCHEDULED;
		f->delay_us = bus__seconds_to_us(o->snooze_s);
		f->refund_attempt = 1;
		return;
	case BUS_ECANCEL:
		f->state = BUS_JOB_CANCELLED;
		f->error = o->error;
		return;
	default:
		f->error = o->error ? o->error : "failed";
		if (job->attempt >= job->max_attempts) {
			f->state = BUS_JOB_DISCARDED;
		} else {
			f->state = BUS_JOB_RETRYABLE;
			f->delay_us = bus__backoff_us(h, job->attempt);
		}
	}
}
