#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "jobmeta.h"

#define K_MESSAGE "{\"message_id\":\""
#define K_REQUEST "\",\"request_id\":\""
#define K_CORRELATION "\",\"correlation_id\":\""
#define K_CAUSATION "\",\"causation_id\":\""
#define K_END "\""
#define LIT(s) (sizeof(s) - 1)
#define ID BUS_UUID_TEXT_LEN

static char *put(char *p, const char *s, size_t n)
{
	memcpy(p, s, n);
	return p + n;
}

int bus__job_meta_write(char **out, const struct bus_message *m)
{
	/* The free keys are compact JSON, "{}" or {"k":...}: their members
	 * are spliced in after the ids. */
	const char *free_keys = m->meta;
	size_t free_len = strcmp(free_keys, "{}") == 0 ? 0 : strlen(free_keys);
	size_t len = LIT(K_MESSAGE) + ID + LIT(K_REQUEST) + ID +
		     LIT(K_CORRELATION) + ID + LIT(K_END) +
		     (m->has_causation ? LIT(K_CAUSATION) + ID : 0) +
		     (free_len ? free_len : 1);
	char *text = malloc(len + 1);
	if (text == NULL)
		return bus__error_oom();
	char *p = put(text, K_MESSAGE, LIT(K_MESSAGE));
	bus__uuid_format(p, &m->id);
	p = put(p + ID, K_REQUEST, LIT(K_REQUEST));
	bus__uuid_format(p, &m->request_id);
	p = put(p + ID, K_CORRELATION, LIT(K_CORRELATION));
	bus__uuid_format(p, &m->correlation_id);
	p += ID;
	if (m->has_causation) {
		p = put(p, K_CAUSATION, LIT(K_CAUSATION));
		bus__uuid_format(p, &m->causation_id);
		p += ID;
	}
	p = put(p, K_END, LIT(K_END));
	if (free_len) {
		*p++ = ',';
		p = put(p, free_keys + 1, free_len - 1);
	} else {
		*p++ = '}';
	}
	*p = '\0';
	*out = text;
	return 0;
}

/* Reads `key` then a UUID then nothing else of the key's value. */
static const char *read_id(const char *p, const char *key, size_t key_len,
			   bus_uuid *id)
{
	char text[ID + 1];
	if (strncmp(p, key, key_len) != 0)
		return NULL;
	p += key_len;
	if (strnlen(p, ID) < ID)
		return NULL;
	memcpy(text, p, ID);
	text[ID] = '\0';
	return bus__uuid_parse(id, text) == 0 ? p + ID : NULL;
}

int bus__job_meta_read(struct bus_message *m, const char *meta)
{
	bus_uuid id, req, cor, cau;
	int has_cau = 0;
	const char *p = read_id(meta, K_MESSAGE, LIT(K_MESSAGE), &id);
	if (p != NULL)
		p = read_id(p, K_REQUEST, LIT(K_REQUEST), &req);
	if (p != NULL)
		p = read_id(p, K_CORRELATION, LIT(K_CORRELATION), &cor);
	if (p != NULL && strncmp(p, K_CAUSATION, LIT(K_CAUSATION)) == 0) {
		p = read_id(p, K_CAUSATION, LIT(K_CAUSATION), &cau);
		has_cau = 1;
	}
	if (p == NULL || *p != '"' || (p[1] != ',' && p[1] != '}'))
		return 1;
	p++;
	/* What follows is "}" or ",<members>}": the free keys are
	 * "{<members>}". Checked when stored; a store returns it as written. */
	char *free_keys;
	if (*p == '}') {
		if (p[1] != '\0')
			return 1;
		free_keys = strdup("{}");
	} else {
		size_t n = strlen(p);
		free_keys = malloc(n + 1);
		if (free_keys != NULL) {
			free_keys[0] = '{';
			memcpy(free_keys + 1, p + 1, n);
		}
	}
	if (free_keys == NULL)
		return bus__error_oom();
	m->id = id;
	m->request_id = req;
	m->correlation_id = cor;
	m->has_causation = has_cau;
	if (has_cau)
		m->causation_id = cau;
	free(m->meta_owned);
	m->meta_owned = free_keys;
	m->meta = free_keys;
	return 0;
}
