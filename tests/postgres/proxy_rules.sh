#!/bin/sh
# The fault proxy's rules on PostgreSQL (tests/postgres/proxy_rules.c),
# against the server in $BUS_TEST_POSTGRES_URL.
BUS_FAULT_STORE=postgres exec ./postgres/proxy_rules "$@"
