/*
 * quickstart: the in-process bus in one page.
 *
 * An event with two handlers, a command, a query and one middleware, on the
 * in-memory bus. Build and run:  ./examples/quickstart
 */
#include <bus/bus.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>

/* Application state the handlers share (a real program's database, ...). */
struct shop {
	int orders;
	int emails_sent;
};

/* Middleware: runs around every handler call. */
static int timing(bus_ctx *ctx, bus_next *next, void *udata)
{
	(void)udata;
	int rc = bus_next_call(next);
	printf("  [middleware] %s '%s' -> %s in %.1f us\n",
	       bus_ctx_kind(ctx) == BUS_KIND_EVENT ? "event" : "request",
	       bus_ctx_handler(ctx), rc == 0 ? "ok" : "failed",
	       (double)bus_next_elapsed_ns(next) / 1000.0);
	return rc;
}

/* Command: place an order; its result is the order number. */
static int place_order(bus_ctx *ctx, void *udata)
{
	struct shop *shop = udata;
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(bus_ctx_json(ctx),
							     "item");
	if (!cJSON_IsString(item))
		return bus_ctx_fail(ctx, "an order needs an \"item\" string");
	shop->orders++;
	printf("  placing an order for %s\n", item->valuestring);

	/* Tell whoever cares; the event inherits this request's ids. */
	char payload[64];
	snprintf(payload, sizeof payload, "{\"order\":%d}", shop->orders);
	int rc = bus_ctx_publish(NULL, ctx, "order.placed", payload, NULL);
	if (rc != 0)
		return rc;

	char result[32];
	snprintf(result, sizeof result, "{\"order\":%d}", shop->orders);
	return bus_ctx_set_result(ctx, result);
}

/* Two handlers of the same event, run in registration order. */
static int send_receipt(bus_ctx *ctx, void *udata)
{
	struct shop *shop = udata;
	shop->emails_sent++;
	const char *cause = bus_ctx_causation_id(ctx);
	printf("  receipt for %s (%s%.8s)\n", bus_ctx_payload(ctx),
	       cause ? "caused by message " : "published directly",
	       cause ? cause : "");
	return 0;
}

static int update_stock(bus_ctx *ctx, void *udata)
{
	(void)udata;
	printf("  stock updated for %s\n", bus_ctx_payload(ctx));
	return 0;
}

/* Query: read-only, answers with JSON. */
static int order_count(bus_ctx *ctx, void *udata)
{
	struct shop *shop = udata;
	char result[32];
	snprintf(result, sizeof result, "{\"orders\":%d}", shop->orders);
	return bus_ctx_set_result(ctx, result);
}

static int check(int rc, const char *what)
{
	if (rc != 0) {
		fprintf(stderr, "%s: %s\n", what, bus_error_last()->message);
		exit(1);
	}
	return rc;
}

int main(void)
{
	struct shop shop = { 0, 0 };
	bus *b;
	check(bus_open(&b, "memory:"), "bus_open");

	check(bus_use(b, timing, NULL), "bus_use");
	check(bus_handle_command(b, "order.place", place_order, &shop, NULL),
	      "register command");
	bus_handler_opts receipt = BUS_HANDLER_OPTS_INIT;
	receipt.name = "send_receipt";
	check(bus_on(b, "order.placed", send_receipt, &shop, &receipt),
	      "register handler");
	bus_handler_opts stock = BUS_HANDLER_OPTS_INIT;
	stock.name = "update_stock";
	check(bus_on(b, "order.placed", update_stock, &shop, &stock),
	      "register handler");
	check(bus_handle_query(b, "orders.count", order_count, &shop, NULL),
	      "register query");

	printf("send command order.place:\n");
	char *result = NULL;
	check(bus_send(&result, b, "order.place", "{\"item\":\"teapot\"}", NULL),
	      "bus_send");
	printf("  result: %s\n", result);
	bus_free(result);

	printf("publish event order.placed:\n");
	bus_publish_result pr;
	check(bus_publish(&pr, b, "order.placed", "{\"order\":0}", NULL),
	      "bus_publish");
	printf("  %zu handlers ran, %zu failed\n", pr.handlers, pr.failed);

	printf("ask query orders.count:\n");
	check(bus_ask(&result, b, "orders.count", NULL, NULL), "bus_ask");
	printf("  result: %s\n", result);
	bus_free(result);

	printf("send a bad command:\n");
	int rc = bus_send(NULL, b, "order.place", "{\"item\":", NULL);
	printf("  %s: %s\n", bus_error_name(rc), bus_error_last()->message);

	bus_close(b);
	return 0;
}
