#!/bin/sh
# Runs the server-restart test (the program mysql/fault_restart). It is a
# shell test only so that its log can depend on every other test's log
# (automake refuses that for a program test): restarting the server must
# wait until no other test uses it. Run from the tests build directory.
exec ./mysql/fault_restart "$@"
