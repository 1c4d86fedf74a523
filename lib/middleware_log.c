/* The logging middleware: one line per handler call. */
#include "core.h"
#include "ctx.h"

int bus_middleware_log(bus_ctx *ctx, bus_next *next, void *udata)
{
	(void)udata;
	const struct bus_logger *lg = &ctx->msg->bus->log;
	int rc = bus_next_call(next);
	bus_log_level level = rc == 0 ? BUS_LOG_DEBUG : BUS_LOG_WARN;
	if (!bus__log_enabled(lg, level))
		return rc;
	double us = (double)bus_next_elapsed_ns(next) / 1000.0;
	if (rc == 0)
		bus__log(lg, level, "%s '%s' handler '%s' id=%s ok in %.1f us",
			 bus__kind_name(ctx->msg->kind), ctx->msg->name,
			 ctx->handler->name, bus_ctx_id(ctx), us);
	else
		bus__log(lg, level,
			 "%s '%s' handler '%s' id=%s failed (%s) in %.1f us: %s",
			 bus__kind_name(ctx->msg->kind), ctx->msg->name,
			 ctx->handler->name, bus_ctx_id(ctx),
			 bus_error_name(rc), us,
			 ctx->error ? ctx->error : "no message");
	return rc;
}
