#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#include "log.h"

static const char *level_name(bus_log_level level)
{
	switch (level) {
	case BUS_LOG_DEBUG: return "debug";
	case BUS_LOG_INFO: return "info";
	case BUS_LOG_WARN: return "warn";
	case BUS_LOG_ERROR: return "error";
	default: return "off";
	}
}

static void log_to_stderr(bus_log_level level, const char *message,
			  void *udata)
{
	(void)udata;
	/* One fprintf per line so lines from threads do not interleave. */
	fprintf(stderr, "libbus %s: %s\n", level_name(level), message);
}

static bus_log_level level_from_env(void)
{
	const char *v = getenv("BUS_LOG");
	if (v == NULL || *v == '\0')
		return BUS_LOG_WARN;
	static const bus_log_level levels[] = { BUS_LOG_DEBUG, BUS_LOG_INFO,
						BUS_LOG_WARN, BUS_LOG_ERROR,
						BUS_LOG_OFF };
	for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++)
		if (strcasecmp(v, level_name(levels[i])) == 0)
			return levels[i];
	if (strcasecmp(v, "warning") == 0)
		return BUS_LOG_WARN;
	fprintf(stderr,
		"libbus warn: BUS_LOG='%s' is not one of debug, info, warn, "
		"error, off; using warn\n",
		v);
	return BUS_LOG_WARN;
}

void bus__logger_init(struct bus_logger *lg)
{
	lg->level = level_from_env();
	lg->fn = log_to_stderr;
	lg->udata = NULL;
}

void bus__log(const struct bus_logger *lg, bus_log_level level,
	      const char *fmt, ...)
{
	if (!bus__log_enabled(lg, level))
		return;
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	lg->fn(level, line, lg->udata);
}

