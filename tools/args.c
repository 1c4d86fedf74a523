/* Option parsing and the argument types the commands share. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* Appends `v` to a NULL-ended list. */
static int list_add(const char ***list, const char *v)
{
	size_t n = 0;
	while (*list != NULL && (*list)[n] != NULL)
		n++;
	const char **l = realloc((void *)*list, (n + 2) * sizeof *l);
	if (l == NULL)
		return cli_error(CLI_FAILED, "out of memory");
	l[n] = v;
	l[n + 1] = NULL;
	*list = l;
	return 0;
}

const char *cli_redact(const char *arg, char *buf, size_t size)
{
	/* scheme://user:password@host...: show the password as "***". The
	 * stores take the LAST '@' as the end of the user part (an unencoded
	 * '@' in a password works), so everything up to the last '@' is
	 * masked; a "password=" option (libpq's) is masked too. */
	const char *sep = strstr(arg, "://");
	const char *at = NULL, *colon = sep ? strchr(sep + 3, ':') : NULL;
	for (const char *p = sep ? sep + 3 : arg; sep && *p; p++)
		if (*p == '@')
			at = p;
	const char *pw = strstr(arg, "password=");
	if ((at == NULL || colon == NULL || colon > at) && pw == NULL)
		return arg;
	size_t o = 0;
	const char *p = arg;
	buf[0] = '\0';
#define EMIT(s, n)                                                             \
	do {                                                                   \
		size_t n_ = (n);                                               \
		if (o + n_ >= size)                                            \
			n_ = size - 1 - o;                                     \
		memcpy(buf + o, (s), n_);                                      \
		o += n_;                                                       \
		buf[o] = '\0';                                                 \
	} while (0)
	if (at != NULL && colon != NULL && colon < at) {
		EMIT(arg, (size_t)(colon - arg));
		EMIT(":***", 4);
		p = at;
	}
	while ((pw = strstr(p, "password=")) != NULL) {
		EMIT(p, (size_t)(pw - p) + 9);
		EMIT("***", 3);
		p = pw + 9 + strcspn(pw + 9, "& ");
	}
	EMIT(p, strlen(p));
#undef EMIT
	return buf;
}

int cli_parse(struct cli *c, const char *cmd, int argc, char **argv,
	      const struct cli_opt *opts, char **pos, int *npos)
{
	*npos = 0;
	int only_pos = 0;
	for (int i = 0; i < argc; i++) {
		char *a = argv[i];
		if (only_pos || a[0] != '-' || a[1] == '\0') {
			pos[(*npos)++] = a;
			continue;
		}
		if (strcmp(a, "--") == 0) {
			only_pos = 1;
			continue;
		}
		if (a[1] != '-') {
			char shown[512];
			return cli_usage(
			    "unknown option '%s' for 'bus %s' (see "
			    "'bus --help')",
			    cli_redact(a, shown, sizeof shown), cmd);
		}
		const char *name = a + 2;
		const char *eq = strchr(name, '=');
		size_t len = eq ? (size_t)(eq - name) : strlen(name);
		const char *value = eq ? eq + 1 : NULL;
		if (len == 4 && strncmp(name, "json", 4) == 0 && !eq) {
			c->json = 1;
			continue;
		}
		const struct cli_opt *o = NULL;
		int is_url = len == 3 && strncmp(name, "url", 3) == 0;
		for (size_t k = 0; !is_url && opts && opts[k].name; k++)
			if (strlen(opts[k].name) == len &&
			    strncmp(opts[k].name, name, len) == 0)
				o = &opts[k];
		if (!is_url && o == NULL)
			return cli_usage("unknown option '--%.*s' for 'bus %s' "
					 "(see 'bus --help')",
					 (int)len, name, cmd);
		if (!is_url && o->kind == OPT_FLAG) {
			if (eq)
				return cli_usage("option '--%s' of 'bus %s' "
						 "takes no value",
						 o->name, cmd);
			*(int *)o->target = 1;
			continue;
		}
		if (value == NULL) {
			if (i + 1 >= argc)
				return cli_usage("option '--%.*s' of 'bus %s' "
						 "needs a value",
						 (int)len, name, cmd);
			value = argv[++i];
		}
		if (is_url)
			c->url = value;
		else if (o->kind == OPT_STRING)
			*(const char **)o->target = value;
		else if (list_add((const char ***)o->target, value) != 0)
			return CLI_FAILED;
	}
	return 0;
}

int cli_duration_ms(int64_t *out, const char *opt, const char *text)
{
	static const struct {
		const char *suffix;
		int64_t ms;
	} units[] = {{"ms", 1},	     {"s", 1000},     {"m", 60000},
		     {"h", 3600000}, {"d", 86400000}, {"w", 7 * 86400000LL},
		     {"", 1000}};
	errno = 0;
	char *end;
	double v = strtod(text, &end);
	if (end == text || errno != 0 || v < 0 || v != v)
		goto bad;
	for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
		if (strcmp(end, units[i].suffix) != 0)
			continue;
		double ms = v * (double)units[i].ms;
		if (ms > 9.2e15)
			goto bad;
		*out = (int64_t)(ms + 0.5);
		return 0;
	}
bad:
	return cli_usage("%s: '%s' is not a duration (like 250ms, 30s, 5m, "
			 "12h, 7d)",
			 opt, text);
}

int cli_int(long long *out, const char *what, const char *text, long long min,
	    long long max)
{
	errno = 0;
	char *end;
	long long v = strtoll(text, &end, 10);
	if (end == text || *end != '\0' || errno != 0 || v < min || v > max)
		return cli_usage("%s: '%s' is not an integer in %lld..%lld",
				 what, text, min, max);
	*out = v;
	return 0;
}

int cli_states(unsigned *out, const char *text)
{
	*out = 0;
	if (strcmp(text, "all") == 0)
		return 0;
	const char *p = text;
	while (*p != '\0') {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		char name[32];
		bus_job_state st;
		if (len == 0 || len >= sizeof name)
			goto bad;
		memcpy(name, p, len);
		name[len] = '\0';
		if (bus_job_state_parse(&st, name) != 0)
			goto bad;
		*out |= BUS_STATE_BIT(st);
		p += len + (comma != NULL);
	}
	if (*out != 0)
		return 0;
bad:
	return cli_usage("--state: '%s' is not a state (available, scheduled, "
			 "executing, retryable, completed, cancelled, "
			 "discarded, or several with commas, or all)",
			 text);
}
