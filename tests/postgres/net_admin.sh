#!/bin/sh
# The store-neutral test mysql/net_admin (tests/mysql/fault.h) against
# PostgreSQL: the server in $BUS_TEST_POSTGRES_URL, the plug-in in
# $BUS_POSTGRES_BACKEND_DIR.
BUS_FAULT_STORE=postgres exec ./mysql/net_admin "$@"
