#!/bin/sh
# A test: migration/mysql.sql must be the steps in migration/mysql/, in
# order, as bus_migrate() applies them (gen-steps.sh embeds the same files
# in mysql.so). To bring it up to date after changing or adding a step:
#   cat migration/mysql/*.sql > migration/mysql.sql
set -eu
top=${top_srcdir:-$(dirname "$0")/../..}
if cat "$top"/migration/mysql/[0-9]*.sql | cmp -s - "$top/migration/mysql.sql"
then
	exit 0
fi
echo "migration/mysql.sql is not the concatenation of migration/mysql/*.sql;" >&2
echo "run: cat migration/mysql/*.sql > migration/mysql.sql" >&2
exit 1
