/*
 * promcheck: a strict checker of the Prometheus text exposition format
 * (version 0.0.4), for the tests of `bus metrics` and bus_metrics_render.
 *
 *   promcheck FILE [--expect 'SERIES VALUE']... [--has SERIES]...
 *
 * FILE ("-" for stdin) must be valid: every line ends with a newline;
 * "# HELP name text" and "# TYPE name counter|gauge|summary|histogram|
 * untyped" at most once per family, TYPE before the family's samples;
 * sample lines `name{label="value",...} value [timestamp]` with valid
 * metric and label names (no reserved "__" labels, no label twice), label
 * values with only the escapes \\ \" \n and valid UTF-8, values that are
 * floats (or NaN, +Inf, -Inf), integer timestamps; each family's lines
 * together (not interleaved with another's); no series twice; a summary's
 * samples are name_sum, name_count or name{quantile=...}, a histogram's
 * name_bucket{le=...} (with le="+Inf"), name_sum and name_count; counters
 * and _count samples are not negative.
 *
 * Each --expect names a series (labels in any order) that must be present
 * with exactly that value; each --has one that must be present. Exit
 * status 0 when all holds; otherwise 1, with one line per problem naming
 * the line number.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LABELS 32

struct label {
	char name[128];
	char value[512];
};

struct series {
	char name[256];
	int n_labels;
	struct label labels[MAX_LABELS];
	double value;
};

struct family {
	char name[256];
	char type[32];
	int has_help, has_type, has_samples, closed;
	int has_inf_bucket;
};

static int problems;

static void problem(long line, const char *fmt, const char *a, const char *b)
{
	if (line > 0)
		fprintf(stderr, "promcheck: line %ld: ", line);
	else
		fprintf(stderr, "promcheck: ");
	fprintf(stderr, fmt, a ? a : "", b ? b : "");
	fputc('\n', stderr);
	problems++;
}

static int is_metric_name(const char *s, size_t n)
{
	if (n == 0 ||
	    !(isalpha((unsigned char)s[0]) || s[0] == '_' || s[0] == ':'))
		return 0;
	for (size_t i = 1; i < n; i++)
		if (!(isalnum((unsigned char)s[i]) || s[i] == '_' ||
		      s[i] == ':'))
			return 0;
	return 1;
}

static int is_label_name(const char *s, size_t n)
{
	if (n == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
		return 0;
	for (size_t i = 1; i < n; i++)
		if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
			return 0;
	return 1;
}

static int valid_utf8(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	while (*p) {
		size_t n = *p < 0x80		     ? 1
			   : *p >= 0xc2 && *p < 0xe0 ? 2
			   : *p >= 0xe0 && *p < 0xf0 ? 3
			   : *p >= 0xf0 && *p < 0xf5 ? 4
						     : 0;
		if (n == 0)
			return 0;
		for (size_t k = 1; k < n; k++)
			if ((p[k] & 0xc0) != 0x80)
				return 0;
		p += n;
	}
	return 1;
}

static int parse_value(const char *s, double *out)
{
	if (strcmp(s, "NaN") == 0) {
		*out = NAN;
		return 1;
	}
	if (strcmp(s, "+Inf") == 0 || strcmp(s, "Inf") == 0) {
		*out = INFINITY;
		return 1;
	}
	if (strcmp(s, "-Inf") == 0) {
		*out = -INFINITY;
		return 1;
	}
	/* strtod also takes hex, "inf" and "nan" spelt otherwise: refuse
	 * those, the format's floats are decimal. */
	for (const char *p = s; *p; p++)
		if (!(isdigit((unsigned char)*p) || strchr("+-.eE", *p)))
			return 0;
	errno = 0;
	char *end;
	*out = strtod(s, &end);
	return end != s && *end == '\0' && errno == 0;
}

/* Parses a sample line (or an --expect argument) into *s; the value part
 * is required when want_value. Returns 0 or a message. */
static const char *parse_series(const char *line, struct series *s,
				int want_value, int *has_timestamp)
{
	memset(s, 0, sizeof *s);
	const char *p = line;
	size_t n = 0;
	while (p[n] && p[n] != '{' && p[n] != ' ' && p[n] != '\t')
		n++;
	if (!is_metric_name(p, n) || n >= sizeof s->name)
		return "bad metric name";
	memcpy(s->name, p, n);
	p += n;
	if (*p == '{') {
		p++;
		for (;;) {
			while (*p == ' ' || *p == '\t')
				p++;
			if (*p == '}') {
				p++;
				break;
			}
			size_t ln = 0;
			while (p[ln] && p[ln] != '=' && p[ln] != ' ')
				ln++;
			if (!is_label_name(p, ln) ||
			    ln >= sizeof s->labels[0].name)
				return "bad label name";
			if (ln >= 2 && p[0] == '_' && p[1] == '_')
				return "reserved label name (starts with __)";
			if (s->n_labels == MAX_LABELS)
				return "too many labels";
			struct label *l = &s->labels[s->n_labels++];
			memcpy(l->name, p, ln);
			for (int i = 0; i < s->n_labels - 1; i++)
				if (strcmp(s->labels[i].name, l->name) == 0)
					return "label given twice";
			p += ln;
			if (*p++ != '=')
				return "expected '=' after a label name";
			if (*p++ != '"')
				return "expected '\"' to open a label value";
			size_t vn = 0;
			while (*p && *p != '"') {
				char ch = *p++;
				if (ch == '\\') {
					ch = *p++;
					if (ch == 'n')
						ch = '\n';
					else if (ch != '\\' && ch != '"')
						return "bad escape in a label "
						       "value (only \\\\ \\\" "
						       "\\n)";
				}
				if (vn + 1 >= sizeof l->value)
					return "label value too long";
				l->value[vn++] = ch;
			}
			if (*p++ != '"')
				return "unterminated label value";
			if (!valid_utf8(l->value))
				return "label value is not UTF-8";
			while (*p == ' ' || *p == '\t')
				p++;
			if (*p == ',') {
				p++;
				continue;
			}
			if (*p != '}')
				return "expected ',' or '}' after a label";
		}
	}
	if (!want_value)
		return *p == '\0' ? NULL : "text after the series";
	if (*p != ' ' && *p != '\t')
		return "expected a blank before the value";
	while (*p == ' ' || *p == '\t')
		p++;
	char value[64], ts[64];
	int k = sscanf(p, "%63s %63s", value, ts);
	if (k < 1)
		return "missing value";
	if (!parse_value(value, &s->value))
		return "value is not a float";
	if (k == 2) {
		char *end;
		errno = 0;
		strtoll(ts, &end, 10);
		if (*end != '\0' || errno != 0)
			return "timestamp is not an integer";
		*has_timestamp = 1;
		/* nothing may follow the timestamp */
		const char *after = strstr(p, ts) + strlen(ts);
		while (*after == ' ' || *after == '\t')
			after++;
		if (*after != '\0')
			return "text after the timestamp";
	}
	return NULL;
}

static int label_cmp(const void *a, const void *b)
{
	return strcmp(((const struct label *)a)->name,
		      ((const struct label *)b)->name);
}

static int same_series(const struct series *a, const struct series *b)
{
	if (strcmp(a->name, b->name) != 0 || a->n_labels != b->n_labels)
		return 0;
	for (int i = 0; i < a->n_labels; i++)
		if (strcmp(a->labels[i].name, b->labels[i].name) != 0 ||
		    strcmp(a->labels[i].value, b->labels[i].value) != 0)
			return 0;
	return 1;
}

static struct family *families;
static size_t n_families;
static struct series *all;
static size_t n_all, cap_all;

static struct family *family_get(const char *name)
{
	for (size_t i = 0; i < n_families; i++)
		if (strcmp(families[i].name, name) == 0)
			return &families[i];
	families = realloc(families, (n_families + 1) * sizeof *families);
	if (families == NULL)
		exit(2);
	struct family *f = &families[n_families++];
	memset(f, 0, sizeof *f);
	snprintf(f->name, sizeof f->name, "%s", name);
	return f;
}

/* The family a sample belongs to: its name, or its name without a
 * _sum/_count/_bucket suffix when that names a summary or histogram. */
static struct family *family_of(const char *name, const char **suffix)
{
	static const char *const sfx[] = {"_sum", "_count", "_bucket"};
	*suffix = "";
	for (int i = 0; i < 3; i++) {
		size_t n = strlen(name), k = strlen(sfx[i]);
		if (n <= k || strcmp(name + n - k, sfx[i]) != 0)
			continue;
		char base[256];
		snprintf(base, sizeof base, "%.*s", (int)(n - k), name);
		for (size_t j = 0; j < n_families; j++)
			if (strcmp(families[j].name, base) == 0 &&
			    (strcmp(families[j].type, "summary") == 0 ||
			     strcmp(families[j].type, "histogram") == 0)) {
				*suffix = sfx[i];
				return &families[j];
			}
	}
	return family_get(name);
}

/* The family of the lines being read, by index: family_get may move the
 * array. */
static long current = -1;

static void enter(struct family *f, long line)
{
	long at = (long)(f - families);
	if (current == at)
		return;
	if (f->closed)
		problem(line, "lines of family '%s' are not together%s",
			f->name, "");
	if (current >= 0)
		families[current].closed = 1;
	current = at;
}

static void check_line(char *line, long no)
{
	if (line[0] == '\0')
		return;
	if (line[0] == '#') {
		char word[16], name[256];
		int k = sscanf(line, "# %15s %255s", word, name);
		int help = k >= 1 && strcmp(word, "HELP") == 0;
		int type = k >= 1 && strcmp(word, "TYPE") == 0;
		if (!help && !type)
			return; /* a comment */
		if (k < 2 || !is_metric_name(name, strlen(name))) {
			problem(no, "%s line without a valid metric name%s",
				word, "");
			return;
		}
		struct family *f = family_get(name);
		enter(f, no);
		if (help) {
			if (f->has_help++)
				problem(no, "second HELP for '%s'%s", name, "");
			if (!valid_utf8(line))
				problem(no, "HELP of '%s' is not UTF-8%s", name,
					"");
			return;
		}
		char t[32] = "";
		if (sscanf(line, "# TYPE %*s %31s", t) != 1 ||
		    (strcmp(t, "counter") && strcmp(t, "gauge") &&
		     strcmp(t, "summary") && strcmp(t, "histogram") &&
		     strcmp(t, "untyped")))
			problem(no, "bad TYPE for '%s': '%s'", name, t);
		if (f->has_type++)
			problem(no, "second TYPE for '%s'%s", name, "");
		if (f->has_samples)
			problem(no, "TYPE of '%s' after its samples%s", name,
				"");
		snprintf(f->type, sizeof f->type, "%s", t);
		return;
	}
	struct series s;
	int has_ts = 0;
	const char *why = parse_series(line, &s, 1, &has_ts);
	if (why != NULL) {
		problem(no, "%s: %s", why, line);
		return;
	}
	const char *suffix;
	struct family *f = family_of(s.name, &suffix);
	enter(f, no);
	f->has_samples = 1;
	const char *quantile = NULL, *le = NULL;
	for (int i = 0; i < s.n_labels; i++) {
		if (strcmp(s.labels[i].name, "quantile") == 0)
			quantile = s.labels[i].value;
		if (strcmp(s.labels[i].name, "le") == 0)
			le = s.labels[i].value;
	}
	if (strcmp(f->type, "summary") == 0 && suffix[0] == '\0' && !quantile)
		problem(no,
			"summary sample '%s' is neither _sum, _count nor "
			"a quantile%s",
			s.name, "");
	if (strcmp(f->type, "histogram") == 0) {
		if (suffix[0] == '\0')
			problem(no,
				"histogram sample '%s' is not _bucket, "
				"_sum or _count%s",
				s.name, "");
		if (strcmp(suffix, "_bucket") == 0 && le == NULL)
			problem(no, "bucket '%s' has no le label%s", s.name,
				"");
		if (le != NULL && strcmp(le, "+Inf") == 0)
			f->has_inf_bucket = 1;
	}
	if ((strcmp(f->type, "counter") == 0 ||
	     strcmp(suffix, "_count") == 0) &&
	    !(s.value >= 0))
		problem(no, "counter '%s' is negative or NaN%s", s.name, "");
	qsort(s.labels, (size_t)s.n_labels, sizeof s.labels[0], label_cmp);
	for (size_t i = 0; i < n_all; i++)
		if (same_series(&all[i], &s))
			problem(no, "series given twice: %s%s", line, "");
	if (n_all == cap_all) {
		cap_all = cap_all ? cap_all * 2 : 256;
		all = realloc(all, cap_all * sizeof *all);
		if (all == NULL)
			exit(2);
	}
	all[n_all++] = s;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: promcheck FILE [--expect 'SERIES "
				"VALUE']... [--has SERIES]...\n");
		return 2;
	}
	FILE *in = strcmp(argv[1], "-") == 0 ? stdin : fopen(argv[1], "r");
	if (in == NULL) {
		perror(argv[1]);
		return 2;
	}
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	long no = 0;
	while ((len = getline(&line, &cap, in)) >= 0) {
		no++;
		if (len == 0 || line[len - 1] != '\n') {
			problem(no,
				"the last line does not end with a "
				"newline%s%s",
				"", "");
		} else {
			line[len - 1] = '\0';
		}
		if (strchr(line, '\r'))
			problem(no, "carriage return in the line%s%s", "", "");
		check_line(line, no);
	}
	free(line);
	if (no == 0)
		problem(0, "no lines at all%s%s", "", "");
	for (size_t i = 0; i < n_families; i++) {
		if (strcmp(families[i].type, "histogram") == 0 &&
		    families[i].has_samples && !families[i].has_inf_bucket)
			problem(0, "histogram '%s' has no le=\"+Inf\" bucket%s",
				families[i].name, "");
	}
	for (int i = 2; i < argc; i++) {
		int expect = strcmp(argv[i], "--expect") == 0;
		if ((!expect && strcmp(argv[i], "--has") != 0) ||
		    i + 1 >= argc) {
			fprintf(stderr, "promcheck: bad argument '%s'\n",
				argv[i]);
			return 2;
		}
		const char *arg = argv[++i];
		struct series want;
		int ts = 0;
		const char *why = parse_series(arg, &want, expect, &ts);
		if (why != NULL) {
			fprintf(stderr, "promcheck: bad series '%s': %s\n", arg,
				why);
			return 2;
		}
		qsort(want.labels, (size_t)want.n_labels, sizeof want.labels[0],
		      label_cmp);
		size_t k = 0;
		while (k < n_all && !same_series(&all[k], &want))
			k++;
		if (k == n_all)
			problem(0, "missing series: %s%s", arg, "");
		else if (expect && !(all[k].value == want.value)) {
			char got[64];
			snprintf(got, sizeof got, "%.17g", all[k].value);
			problem(0,
				"series has another value: expected '%s', "
				"found %s",
				arg, got);
		}
	}
	if (problems == 0)
		printf(
		    "promcheck: %ld lines, %zu series, %zu families: valid\n",
		    no, n_all, n_families);
	return problems == 0 ? 0 : 1;
}
