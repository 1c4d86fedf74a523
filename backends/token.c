/* The tokens both SQL stores write with a write they may have to read back
 * after a lost connection (see token.h). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "token.h"

void bus__token(char out[BUS_TOKEN_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char rnd[10];
	size_t got = 0;
	while (got < sizeof rnd) {
		ssize_t r = getrandom(rnd + got, sizeof rnd - got, 0);
		if (r > 0)
			got += (size_t)r;
		else if (errno != EINTR)
			break;
	}
	if (got < sizeof rnd) {
		/* No kernel randomness: a seed of our own, still unique
		 * enough beside the time and the address. */
		static _Thread_local unsigned seed;
		if (seed == 0)
			seed = (unsigned)time(NULL) ^ (unsigned)getpid() ^
			       (unsigned)(uintptr_t)&seed;
		for (size_t i = got; i < sizeof rnd; i++)
			rnd[i] = (unsigned char)rand_r(&seed);
	}
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	for (int i = 11; i >= 0; i--, ms >>= 4)
		out[i] = hex[ms & 15];
	for (size_t i = 0; i < sizeof rnd; i++) {
		out[12 + 2 * i] = hex[rnd[i] >> 4];
		out[13 + 2 * i] = hex[rnd[i] & 15];
	}
	out[BUS_TOKEN_LEN] = '\0';
}
