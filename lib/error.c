/* Thread-local error state: the libgit2 model. Each thread keeps the code and
 * message of its own last failure in a fixed buffer, so that recording an
 * error never allocates (and so works when memory has run out). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "error.h"

#define ERROR_MESSAGE_MAX 1024

struct error_state {
	bus_error pub;
	char message[ERROR_MESSAGE_MAX];
};

static _Thread_local struct error_state tls_error = {
	{ 0, "no error" }, { 0 }
};

int bus__error_set(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(tls_error.message, sizeof tls_error.message, fmt, ap);
	va_end(ap);
	tls_error.pub.code = code;
	tls_error.pub.message = tls_error.message;
	return code;
}

int bus__error_oom(void)
{
	tls_error.pub.code = BUS_ENOMEM;
	tls_error.pub.message = "out of memory";
	return BUS_ENOMEM;
}

int bus__error_code(void)
{
	return tls_error.pub.code;
}

void bus__error_reset(void)
{
	tls_error.pub.code = 0;
	tls_error.pub.message = "no error";
}

const bus_error *bus_error_last(void)
{
	return &tls_error.pub;
}

void bus_error_clear(void)
{
	bus__error_reset();
}

const char *bus_error_name(int code)
{
	switch (code) {
	case BUS_OK: return "BUS_OK";
	case BUS_ERROR: return "BUS_ERROR";
	case BUS_EINVAL: return "BUS_EINVAL";
	case BUS_ENOTFOUND: return "BUS_ENOTFOUND";
	case BUS_EEXISTS: return "BUS_EEXISTS";
	case BUS_ENOMEM: return "BUS_ENOMEM";
	case BUS_ETIMEOUT: return "BUS_ETIMEOUT";
	case BUS_EHANDLER: return "BUS_EHANDLER";
	case BUS_ESTATE: return "BUS_ESTATE";
	case BUS_EBACKEND: return "BUS_EBACKEND";
	case BUS_ESCHEMA: return "BUS_ESCHEMA";
	case BUS_ESNOOZE: return "BUS_ESNOOZE";
	case BUS_ECANCEL: return "BUS_ECANCEL";
	default: return "unknown";
	}
}

void bus_free(void *ptr)
{
	free(ptr);
}

const char *bus_version(void)
{
	return BUS_VERSION;
}
