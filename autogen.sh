#!/bin/sh
# Generates ./configure from configure.ac (a clean clone has none).
set -e
cd "$(dirname "$0")"
mkdir -p m4 build-aux
autoreconf --install --force
