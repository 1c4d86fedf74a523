/*
 * bus batch [--keep-going]: runs commands read from stdin, one a line, on
 * one bus: one connection for many commands, and the only way to use the
 * memory: store across commands (it lives as long as the process). Words
 * are split as a shell would for quotes ('...', "..." with \" and \\) and
 * backslashes; a line starting with # is a comment. The first command that
 * fails stops the batch (unless --keep-going) and its exit status is the
 * batch's.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* Splits `line` in place into words; returns how many, or -1 for an
 * unterminated quote. */
static int split(char *line, char **words, int max)
{
	int n = 0;
	char *r = line, *w = line;
	while (*r) {
		while (*r == ' ' || *r == '\t' || *r == '\n' || *r == '\r')
			r++;
		if (*r == '\0' || (*r == '#' && n == 0))
			break;
		if (n == max)
			return -1;
		words[n++] = w;
		while (*r && *r != ' ' && *r != '\t' && *r != '\n' &&
		       *r != '\r') {
			if (*r == '\'') {
				r++;
				while (*r && *r != '\'')
					*w++ = *r++;
				if (*r++ != '\'')
					return -1;
			} else if (*r == '"') {
				r++;
				while (*r && *r != '"') {
					if (*r == '\\' &&
					    (r[1] == '"' || r[1] == '\\' ||
					     r[1] == '$' || r[1] == '`'))
						r++;
					*w++ = *r++;
				}
				if (*r++ != '"')
					return -1;
			} else if (*r == '\\' && r[1] != '\0') {
				r++;
				*w++ = *r++;
			} else {
				*w++ = *r++;
			}
		}
		/* The word ends where the next starts reading: at r, which is
		 * past w, so the terminator never overwrites unread text. */
		char *end = w;
		if (*r)
			r++;
		*end = '\0';
		w = r;
	}
	return n;
}

int cmd_batch(struct cli *c, int argc, char **argv)
{
	int keep_going = 0;
	const struct cli_opt opts[] = {{"keep-going", OPT_FLAG, &keep_going},
				       {NULL, 0, NULL}};
	char *pos[argc + 1];
	int npos, rc = cli_parse(c, "batch", argc, argv, opts, pos, &npos);
	if (rc != 0)
		return rc;
	if (npos > 0)
		return cli_usage("'bus batch' reads its commands from stdin");
	int status = CLI_OK, json = c->json;
	char **lines = NULL;
	size_t n_lines = 0;
	char *line = NULL;
	size_t cap = 0;
	long lineno = 0;
	while (getline(&line, &cap, stdin) >= 0) {
		lineno++;
		char **l = realloc(lines, (n_lines + 1) * sizeof *l);
		if (l == NULL) {
			status = cli_error(CLI_FAILED, "out of memory");
			break;
		}
		lines = l;
		/* Kept to the end: a command may hold on to its words. */
		lines[n_lines++] = line;
		char *words[256];
		int n = split(line, words, 256);
		line = NULL;
		cap = 0;
		if (n < 0) {
			rc = cli_usage("batch line %ld: unterminated quote or "
				       "more than 256 words",
				       lineno);
		} else if (n == 0) {
			continue;
		} else if (strcmp(words[0], "batch") == 0) {
			rc = cli_usage("batch line %ld: batches do not nest",
				       lineno);
		} else {
			c->json = json;
			rc = cli_run(c, n, words);
		}
		fflush(stdout);
		if (rc != CLI_OK && status == CLI_OK)
			status = rc;
		if (rc != CLI_OK && !keep_going)
			break;
	}
	free(line);
	for (size_t i = 0; i < n_lines; i++)
		free(lines[i]);
	free(lines);
	return status;
}
