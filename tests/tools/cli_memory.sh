#!/bin/sh
# The `bus` tool on memory: every subcommand, errors and exit statuses,
# work --exec (success, failure, timeout), SIGTERM, the metrics endpoint.
# Each scenario is one `bus batch` process, the life of a memory: store.
. "${top_srcdir:-..}/tests/tools/cli_setup.sh"
STORE_URL=memory:
unset BUS_BACKEND_DIR
scenario_admin
scenario_errors
scenario_exec
scenario_sigterm
scenario_stop_signals
scenario_metrics
cli_done
