#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "clock.h"
#include "uuid.h"

/* xoshiro256** state per thread. `generation` is compared with the process's
 * fork generation so that a forked child reseeds instead of replaying the
 * parent's sequence (which would give both the same "unique" ids). */
struct rng {
	uint64_t s[4];
	unsigned generation;
	int seeded;
	uint64_t last_ms;
	uint32_t counter;
};

static _Thread_local struct rng tls_rng;
static atomic_uint fork_generation = 1;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void on_fork_child(void)
{
	atomic_fetch_add_explicit(&fork_generation, 1, memory_order_relaxed);
}

static void register_atfork(void)
{
	pthread_atfork(NULL, NULL, on_fork_child);
}

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void seed(struct rng *r, unsigned generation)
{
	uint64_t k;
	if (getrandom(&k, sizeof k, 0) != (ssize_t)sizeof k) {
		/* No entropy source: mix what differs between threads and
		 * processes. Ids stay unique in practice; they are not secrets. */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		k = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^
		    (uint64_t)(uintptr_t)r;
	}
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&k);
	r->generation = generation;
	r->seeded = 1;
	r->last_ms = 0;
}

static inline uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static struct rng *thread_rng(void)
{
	struct rng *r = &tls_rng;
	unsigned gen =
		atomic_load_explicit(&fork_generation, memory_order_relaxed);
	if (!r->seeded) {
		pthread_once(&atfork_once, register_atfork);
		gen = atomic_load_explicit(&fork_generation,
					   memory_order_relaxed);
		seed(r, gen);
	} else if (r->generation != gen) {
		seed(r, gen);
	}
	return r;
}

static uint64_t next(struct rng *r)
{
	uint64_t *s = r->s;
	uint64_t result = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

uint64_t bus__random_u64(void)
{
	return next(thread_rng());
}

#define COUNTER_BITS 30
#define COUNTER_MAX ((1u << COUNTER_BITS) - 1)

void bus__uuid7(bus_uuid *out)
{
	struct rng *r = thread_rng();
	uint64_t ms = bus__wall_ms_coarse();
	uint64_t rnd = next(r);

	if (ms > r->last_ms) {
		r->last_ms = ms;
		/* Start low in the counter's range so it can count far. */
		r->counter = (uint32_t)(rnd >> 35) & (COUNTER_MAX >> 1);
	} else if (r->counter < COUNTER_MAX) {
		/* Same (or an earlier, after a clock step) millisecond: count,
		 * keeping ids from this thread increasing. */
		r->counter++;
	} else {
		r->last_ms++;
		r->counter = 0;
	}
	ms = r->last_ms;

	uint8_t *b = out->b;
	b[0] = (uint8_t)(ms >> 40);
	b[1] = (uint8_t)(ms >> 32);
	b[2] = (uint8_t)(ms >> 24);
	b[3] = (uint8_t)(ms >> 16);
	b[4] = (uint8_t)(ms >> 8);
	b[5] = (uint8_t)ms;
	/* 12 bits of rand_a: the counter's top bits, under version 7. */
	b[6] = (uint8_t)(0x70 | ((r->counter >> 26) & 0x0f));
	b[7] = (uint8_t)(r->counter >> 18);
	/* rand_b: variant 10, 6 more counter bits ... */
	b[8] = (uint8_t)(0x80 | ((r->counter >> 12) & 0x3f));
	b[9] = (uint8_t)(r->counter >> 4);
	b[10] = (uint8_t)(((r->counter & 0x0f) << 4) | (rnd & 0x0f));
	/* ... then random bits. */
	b[11] = (uint8_t)(rnd >> 4);
	b[12] = (uint8_t)(rnd >> 12);
	b[13] = (uint8_t)(rnd >> 20);
	b[14] = (uint8_t)(rnd >> 28);
	b[15] = (uint8_t)(rnd >> 36);
}

static const char hex[] = "0123456789abcdef";

void bus__uuid_format(char out[BUS_UUID_TEXT_LEN + 1], const bus_uuid *u)
{
	char *p = out;
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*p++ = '-';
		*p++ = hex[u->b[i] >> 4];
		*p++ = hex[u->b[i] & 0x0f];
	}
	*p = '\0';
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int bus__uuid_parse(bus_uuid *out, const char *s)
{
	int byte = 0;
	for (int i = 0; i < BUS_UUID_TEXT_LEN; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return -1;
			continue;
		}
		int hi = hexval(s[i]);
		int lo = hi < 0 ? -1 : hexval(s[i + 1]);
		if (lo < 0)
			return -1;
		out->b[byte++] = (uint8_t)(hi << 4 | lo);
		i++;
	}
	return s[BUS_UUID_TEXT_LEN] == '\0' ? 0 : -1;
}
