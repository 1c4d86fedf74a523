#!/bin/sh
# A test: migration/postgres.sql must be the steps in migration/postgres/,
# in order, as bus_migrate() applies them (gen-steps.sh embeds the same
# files in postgres.so). To bring it up to date after changing or adding a
# step:
#   cat migration/postgres/*.sql > migration/postgres.sql
set -eu
top=${top_srcdir:-$(dirname "$0")/../..}
if cat "$top"/migration/postgres/[0-9]*.sql | cmp -s - "$top/migration/postgres.sql"
then
	exit 0
fi
echo "migration/postgres.sql is not the concatenation of migration/postgres/*.sql;" >&2
echo "run: cat migration/postgres/*.sql > migration/postgres.sql" >&2
exit 1
