/*
 * Statement texts. They are written with the default names, which are
 * swapped for those of the URL's schema and table prefix (both validated
 * as [a-z0-9_]*, so a name can be pasted: it is not a value). Every name
 * put in is a quoted identifier: a prefix such as 1e1 would otherwise read
 * as the number 1e1 followed by a word. Quoting changes nothing for the
 * names already in use, which are lower case.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg_store.h"

static const char *const defaults[] = { "bus_jobs", "bus_queues",
					"bus_schema_version" };

void bus__pg_tables_init(struct pg_tables *t, const char *schema,
			 const char *prefix)
{
	if (schema[0] != '\0')
		snprintf(t->schema, sizeof t->schema, "\"%s\".", schema);
	else
		t->schema[0] = '\0';
	snprintf(t->prefix, sizeof t->prefix, "%s", prefix);
	snprintf(t->jobs, sizeof t->jobs, "%s\"%sjobs\"", t->schema, prefix);
	snprintf(t->queues, sizeof t->queues, "%s\"%squeues\"", t->schema,
		 prefix);
	snprintf(t->version, sizeof t->version, "%s\"%sschema_version\"",
		 t->schema, prefix);
	snprintf(t->channel, sizeof t->channel, "%s%s%sjobs", schema,
		 schema[0] ? "." : "", prefix);
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

char *bus__pg_sql(const struct pg_tables *t, const char *sql)
{
	const char *names[] = { t->jobs, t->queues, t->version };
	struct sbuf b = { NULL, 0, 0, 0 };
	const char *s = sql, *plain = sql;
	int quoted = 0; /* inside a '...' literal (-- comments are skipped) */
	while (*s != '\0') {
		if (*s == '\'')
			quoted = !quoted;
		if (!quoted && s[0] == '-' && s[1] == '-') {
			while (*s != '\0' && *s != '\n')
				s++;
			continue;
		}
		if (quoted || (s > sql && ident_char(s[-1])) ||
		    strncmp(s, "bus_", 4) != 0) {
			s++;
			continue;
		}
		size_t len = 4;
		while (ident_char(s[len]))
			len++;
		put(&b, plain, (size_t)(s - plain));
		const char *name = NULL;
		for (size_t i = 0; i < sizeof defaults / sizeof *defaults; i++)
			if (strlen(defaults[i]) == len &&
			    strncmp(s, defaults[i], len) == 0)
				name = names[i];
		if (name != NULL) {
			put(&b, name, strlen(name));
		} else {
			put(&b, "\"", 1);
			put(&b, t->prefix, strlen(t->prefix));
			put(&b, s + 4, len - 4);
			put(&b, "\"", 1);
		}
		s += len;
		plain = s;
	}
	put(&b, plain, (size_t)(s - plain));
	if (b.oom) {
		free(b.p);
		return NULL;
	}
	return b.p;
}
