/* UUIDv7 identifiers and the per-thread random generator behind them. */
#ifndef BUS_LIB_UUID_H
#define BUS_LIB_UUID_H

#include <stdint.h>

#define BUS_UUID_TEXT_LEN 36

typedef struct bus_uuid {
	uint8_t b[16];
} bus_uuid;

/* A new UUIDv7 (RFC 9562): 48-bit Unix milliseconds, then a 30-bit counter
 * (rand_a and the top of rand_b, method 1 of §6.2) that keeps ids made by
 * one thread strictly increasing, then 44 random bits. */
void bus__uuid7(bus_uuid *out);

/* Writes the 36-character lower-case form and a NUL into `out`. */
void bus__uuid_format(char out[BUS_UUID_TEXT_LEN + 1], const bus_uuid *u);

/* Parses the 8-4-4-4-12 hex form (either case); 0 on success, -1 if `s` is
 * not exactly that. */
int bus__uuid_parse(bus_uuid *out, const char *s);

/* 64 random bits from a fast per-thread generator, seeded from the kernel
 * and reseeded after fork(), so that a child never repeats its parent. Not
 * for secrets. */
uint64_t bus__random_u64(void);

#endif
