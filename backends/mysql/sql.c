/*
 * Statement texts. They are written with the default table names, which
 * are swapped for those of the URL's table prefix (validated as
 * [a-z0-9_]+, so a name can be pasted: it is not a value). The name is
 * put in as a quoted identifier (`1e1jobs`: unquoted, a prefix of digits
 * could read as a number), except where the text quotes it already
 * (after a backtick) or names it in a string literal (information_schema
 * lookups, a statement built as a string). A statement for a batch lists
 * its rows of parameters "{rows}" times.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mysql_store.h"

static const char *const defaults[] = {"bus_jobs", "bus_queues",
				       "bus_schema_version"};

void bus__my_tables_init(struct my_tables *t, const char *prefix)
{
	snprintf(t->jobs, sizeof t->jobs, "%sjobs", prefix);
	snprintf(t->queues, sizeof t->queues, "%squeues", prefix);
	snprintf(t->version, sizeof t->version, "%sschema_version", prefix);
}

struct sbuf {
	char *p;
	size_t len, cap;
	int oom;
};

static void put(struct sbuf *b, const char *s, size_t len)
{
	if (b->oom)
		return;
	if (b->len + len + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + len + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (p == NULL) {
			b->oom = 1;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, len);
	b->len += len;
	b->p[b->len] = '\0';
}

static int ident_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '_' || c == '$';
}

/* The table of the default name at `s` (a whole word), or NULL. */
static const char *table_at(const struct my_tables *t, const char *sql,
			    const char *s, size_t *len)
{
	if (s > sql && ident_char(s[-1]))
		return NULL;
	const char *names[] = { t->jobs, t->queues, t->version };
	for (size_t i = 0; i < sizeof defaults / sizeof *defaults; i++) {
		size_t n = strlen(defaults[i]);
		if (strncmp(s, defaults[i], n) == 0 && !ident_char(s[n])) {
			*len = n;
			return names[i];
		}
	}
	return NULL;
}

char *bus__my_sql(const struct my_tables *t, const char *sql, const char *group,
		  const char *sep, size_t n)
{
	struct sbuf b = { NULL, 0, 0, 0 };
	const char *s = sql, *plain = sql;
	int in_string = 0;
	while (*s != '\0') {
		size_t len;
		const char *name = table_at(t, sql, s, &len);
		if (!in_string && s[0] == '-' && s[1] == '-' &&
		    (s[2] == ' ' || s[2] == '\t' || s[2] == '\n')) {
			/* A comment, whose apostrophes open no string. */
			s += strcspn(s, "\n");
		} else if (*s == '\'') {
			in_string = !in_string;
			s++;
		} else if (name == NULL && strncmp(s, "{rows}", 6) == 0) {
			put(&b, plain, (size_t)(s - plain));
			for (size_t i = 0; i < n; i++) {
				if (i > 0)
					put(&b, sep, strlen(sep));
				put(&b, group, strlen(group));
			}
			s += 6;
			plain = s;
		} else if (name != NULL) {
			int quote = !in_string && !(s > sql && s[-1] == '`');
			put(&b, plain, (size_t)(s - plain));
			if (quote)
				put(&b, "`", 1);
			put(&b, name, strlen(name));
			if (quote)
				put(&b, "`", 1);
			s += len;
			plain = s;
		} else {
			s++;
		}
	}
	put(&b, plain, (size_t)(s - plain));
	if (b.oom) {
		free(b.p);
		return NULL;
	}
	return b.p;
}
