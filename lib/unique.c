/* Unique keys: SHA-256 over a canonical JSON encoding of what makes two jobs
 * the same. The store's unique index on the key does the enforcing, so that
 * no race between producers can let a duplicate in. */
#include <cjson/cJSON.h>
#include <math.h>
#include <sha2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "unique.h"

#define UNIQUE_FIELDS_ALL                                                      \
	(BUS_UNIQUE_PAYLOAD | BUS_UNIQUE_QUEUE | BUS_UNIQUE_PRIORITY |           \
	 BUS_UNIQUE_MAX_ATTEMPTS | BUS_UNIQUE_TIMEOUT | BUS_UNIQUE_TAGS |        \
	 BUS_UNIQUE_META)

#define DEFAULT_STATES (BUS_STATES_UNFINISHED | BUS_STATE_BIT(BUS_JOB_COMPLETED))

unsigned bus__unique_states(const bus_unique_opts *u)
{
	return u->states ? u->states : DEFAULT_STATES;
}

int bus__unique_opts_check(const bus_unique_opts *u)
{
	if (u->version != BUS_UNIQUE_OPTS_VERSION)
		return bus__error_set(BUS_EINVAL,
				      "bus_unique_opts.version is %u, expected "
				      "%u: initialise it with "
				      "BUS_UNIQUE_OPTS_INIT",
				      u->version, BUS_UNIQUE_OPTS_VERSION);
	if (u->fields & ~UNIQUE_FIELDS_ALL)
		return bus__error_set(BUS_EINVAL,
				      "unique fields have unknown bits 0x%x",
				      u->fields & ~UNIQUE_FIELDS_ALL);
	if (u->n_payload_keys > 0 && u->payload_keys == NULL)
		return bus__error_set(BUS_EINVAL,
				      "unique options: n_payload_keys is %zu but "
				      "payload_keys is NULL",
				      u->n_payload_keys);
	if (u->n_payload_keys > 0 && (u->fields & BUS_UNIQUE_PAYLOAD))
		return bus__error_set(BUS_EINVAL,
				      "unique options: payload_keys and "
				      "BUS_UNIQUE_PAYLOAD exclude each other "
				      "(keys pick part of the payload)");
	for (size_t i = 0; i < u->n_payload_keys; i++)
		if (u->payload_keys[i] == NULL || u->payload_keys[i][0] == '\0')
			return bus__error_set(BUS_EINVAL,
					      "unique options: payload key %zu is "
					      "empty",
					      i);
	if (u->period_s < 0 || u->period_s > BUS_DELAY_MAX_S)
		return bus__error_set(BUS_EINVAL,
				      "unique options: period_s %lld is "
				      "outside 0..%lld (BUS_DELAY_MAX_S)",
				      (long long)u->period_s,
				      (long long)BUS_DELAY_MAX_S);
	if (u->period_base != BUS_UNIQUE_BY_INSERTED_AT &&
	    u->period_base != BUS_UNIQUE_BY_SCHEDULED_AT)
		return bus__error_set(BUS_EINVAL,
				      "unique options: unknown period_base %d",
				      (int)u->period_base);
	unsigned states = bus__unique_states(u);
	if (states & ~BUS_STATES_ALL)
		return bus__error_set(BUS_EINVAL,
				      "unique states have unknown bits 0x%x",
				      states & ~BUS_STATES_ALL);
	if ((states & BUS_STATES_UNFINISHED) != BUS_STATES_UNFINISHED)
		return bus__error_set(
			BUS_EINVAL,
			"unique states must hold every unfinished state "
			"(available, scheduled, executing, retryable), so a job "
			"never leaves them and comes back; only completed, "
			"cancelled and discarded are yours to choose");
	return 0;
}

/* ---- canonical JSON ---------------------------------------------------- */

struct buf {
	char *p;
	size_t len, cap;
	int failed;
};

static void put(struct buf *b, const char *s, size_t n)
{
	if (b->failed)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (p == NULL) {
			b->failed = 1;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void puts_(struct buf *b, const char *s)
{
	put(b, s, strlen(s));
}

static void put_string(struct buf *b, const char *s)
{
	put(b, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		char esc[8];
		switch (*p) {
		case '"': put(b, "\\\"", 2); break;
		case '\\': put(b, "\\\\", 2); break;
		case '\n': put(b, "\\n", 2); break;
		case '\r': put(b, "\\r", 2); break;
		case '\t': put(b, "\\t", 2); break;
		case '\b': put(b, "\\b", 2); break;
		case '\f': put(b, "\\f", 2); break;
		default:
			if (*p < 0x20) {
				snprintf(esc, sizeof esc, "\\u%04x", *p);
				put(b, esc, 6);
			} else {
				put(b, (const char *)p, 1);
			}
		}
	}
	put(b, "\"", 1);
}

/* Integers print as integers (1.0 and 1 are the same number), others in
 * the shortest form that reads back the same; -0 is 0. */
static void put_number(struct buf *b, double v)
{
	char num[40];
	if (v == 0)
		v = 0; /* folds -0 */
	if (isfinite(v) && v == floor(v) && fabs(v) < 9007199254740992.0) {
		snprintf(num, sizeof num, "%lld", (long long)v);
	} else {
		for (int prec = 15; prec <= 17; prec++) {
			snprintf(num, sizeof num, "%.*g", prec, v);
			if (strtod(num, NULL) == v)
				break;
		}
	}
	puts_(b, num);
}

static int key_cmp(const void *a, const void *b)
{
	const cJSON *x = *(const cJSON *const *)a;
	const cJSON *y = *(const cJSON *const *)b;
	return strcmp(x->string, y->string);
}

static void put_value(struct buf *b, const cJSON *v);

static void put_object(struct buf *b, const cJSON *obj)
{
	size_t n = 0;
	for (const cJSON *c = obj->child; c; c = c->next)
		n++;
	const cJSON **items = n ? malloc(n * sizeof *items) : NULL;
	if (n && items == NULL) {
		b->failed = 1;
		return;
	}
	size_t i = 0;
	for (const cJSON *c = obj->child; c; c = c->next)
		items[i++] = c;
	if (n > 1)
		qsort(items, n, sizeof *items, key_cmp);
	put(b, "{", 1);
	for (i = 0; i < n; i++) {
		if (i)
			put(b, ",", 1);
		put_string(b, items[i]->string);
		put(b, ":", 1);
		put_value(b, items[i]);
	}
	put(b, "}", 1);
	free(items);
}

static void put_value(struct buf *b, const cJSON *v)
{
	if (cJSON_IsObject(v)) {
		put_object(b, v);
	} else if (cJSON_IsArray(v)) {
		put(b, "[", 1);
		for (const cJSON *c = v->child; c; c = c->next) {
			if (c != v->child)
				put(b, ",", 1);
			put_value(b, c);
		}
		put(b, "]", 1);
	} else if (cJSON_IsString(v)) {
		put_string(b, v->valuestring);
	} else if (cJSON_IsNumber(v)) {
		put_number(b, v->valuedouble);
	} else if (cJSON_IsTrue(v)) {
		puts_(b, "true");
	} else if (cJSON_IsFalse(v)) {
		puts_(b, "false");
	} else {
		puts_(b, "null");
	}
}

static int canonical_of(char **out, const cJSON *v)
{
	struct buf b = { NULL, 0, 0, 0 };
	put_value(&b, v);
	if (b.failed) {
		free(b.p);
		return bus__error_oom();
	}
	*out = b.p;
	return 0;
}

int bus__json_canonical(char **out, const char *json)
{
	cJSON *v = cJSON_Parse(json);
	if (v == NULL)
		return bus__error_set(BUS_EINVAL,
				      "cannot canonicalise invalid JSON");
	int rc = canonical_of(out, v);
	cJSON_Delete(v);
	return rc;
}

/* ---- the key ----------------------------------------------------------- */

static int tag_cmp(const void *a, const void *b)
{
	const cJSON *x = *(const cJSON *const *)a;
	const cJSON *y = *(const cJSON *const *)b;
	const char *xs = cJSON_IsString(x) ? x->valuestring : "";
	const char *ys = cJSON_IsString(y) ? y->valuestring : "";
	return strcmp(xs, ys);
}

/* Tags are a set: their order does not make two jobs different. */
static cJSON *sorted_tags(const char *tags)
{
	cJSON *arr = cJSON_Parse(tags ? tags : "[]");
	if (arr == NULL || !cJSON_IsArray(arr))
		return arr;
	int n = cJSON_GetArraySize(arr);
	if (n < 2)
		return arr;
	cJSON **items = malloc((size_t)n * sizeof *items);
	if (items == NULL) {
		cJSON_Delete(arr);
		return NULL;
	}
	for (int i = 0; i < n; i++)
		items[i] = cJSON_DetachItemFromArray(arr, 0);
	qsort(items, (size_t)n, sizeof *items, tag_cmp);
	for (int i = 0; i < n; i++)
		cJSON_AddItemToArray(arr, items[i]);
	free(items);
	return arr;
}

static cJSON *payload_part(const bus_unique_opts *u, const char *payload)
{
	cJSON *p = cJSON_Parse(payload ? payload : "null");
	if (p == NULL || u->n_payload_keys == 0)
		return p;
	/* Only the named keys; a payload that is not an object has none. */
	cJSON *picked = cJSON_CreateObject();
	for (size_t i = 0; picked && i < u->n_payload_keys; i++) {
		cJSON *item = cJSON_IsObject(p)
				      ? cJSON_DetachItemFromObjectCaseSensitive(
						p, u->payload_keys[i])
				      : NULL;
		if (item != NULL)
			cJSON_AddItemToObject(picked, u->payload_keys[i], item);
	}
	cJSON_Delete(p);
	return picked;
}

int bus__unique_key(char out[BUS_UNIQUE_KEY_LEN + 1], const bus_unique_opts *u,
		    const struct bus_unique_input *in)
{
	cJSON *k = cJSON_CreateObject();
	if (k == NULL)
		return bus__error_oom();
	int ok = cJSON_AddStringToObject(k, "kind", in->kind) != NULL &&
		 cJSON_AddStringToObject(k, "handler", in->handler) != NULL;
	if (ok && (u->fields & BUS_UNIQUE_PAYLOAD || u->n_payload_keys > 0)) {
		cJSON *p = payload_part(u, in->payload);
		ok = p != NULL && cJSON_AddItemToObject(
					  k, u->n_payload_keys ? "payload_keys"
							       : "payload",
					  p);
	}
	if (ok && (u->fields & BUS_UNIQUE_QUEUE))
		ok = cJSON_AddStringToObject(k, "queue", in->queue) != NULL;
	if (ok && (u->fields & BUS_UNIQUE_PRIORITY))
		ok = cJSON_AddNumberToObject(k, "priority", in->priority) != NULL;
	if (ok && (u->fields & BUS_UNIQUE_MAX_ATTEMPTS))
		ok = cJSON_AddNumberToObject(k, "max_attempts",
					     in->max_attempts) != NULL;
	if (ok && (u->fields & BUS_UNIQUE_TIMEOUT))
		ok = cJSON_AddNumberToObject(k, "timeout_ms",
					     (double)in->timeout_ms) != NULL;
	if (ok && (u->fields & BUS_UNIQUE_TAGS)) {
		cJSON *t = sorted_tags(in->tags);
		ok = t != NULL && cJSON_AddItemToObject(k, "tags", t);
	}
	if (ok && (u->fields & BUS_UNIQUE_META)) {
		cJSON *m = cJSON_Parse(in->meta ? in->meta : "{}");
		ok = m != NULL && cJSON_AddItemToObject(k, "meta", m);
	}
	if (ok && u->period_s > 0) {
		int64_t t = u->period_base == BUS_UNIQUE_BY_SCHEDULED_AT
				    ? in->scheduled_at
				    : in->inserted_at;
		int64_t period_us = u->period_s * 1000000;
		/* floor, also for times before the epoch */
		int64_t bucket = t / period_us - (t % period_us < 0);
		char text[64];
		snprintf(text, sizeof text, "%lld/%lld", (long long)u->period_s,
			 (long long)bucket);
		ok = cJSON_AddStringToObject(k, "period", text) != NULL;
	}
	char *canon = NULL;
	int rc = ok ? canonical_of(&canon, k) : bus__error_oom();
	cJSON_Delete(k);
	if (rc != 0)
		return rc;
	SHA2_CTX sha;
	SHA256Init(&sha);
	SHA256Update(&sha, (const uint8_t *)canon, strlen(canon));
	SHA256End(&sha, out);
	free(canon);
	return 0;
}
