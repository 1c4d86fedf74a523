/*
 * A token a SQL store writes with an insert or a claim, so that after a
 * lost connection it can read back what that write left (issue 11): 128
 * bits, unique without asking anyone. Compiled into each store plug-in;
 * the name is bus__ and hidden (-fvisibility=hidden).
 */
#ifndef BUS_BACKENDS_TOKEN_H
#define BUS_BACKENDS_TOKEN_H

/* A token: 32 lowercase hex digits (128 bits) and a NUL. */
#define BUS_TOKEN_LEN 32

/* A fresh token: the time in milliseconds (12 digits, so that tokens
 * made one after another sort together in an index), then 80 random
 * bits (the kernel's; a seed of our own when it has none). */
void bus__token(char out[BUS_TOKEN_LEN + 1]);

#endif
