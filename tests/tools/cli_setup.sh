# Common set-up of the `bus` tool tests (sourced): paths, a scratch
# directory removed at exit, and the helpers.
top_builddir_abs=$(cd "${top_builddir:-..}" && pwd)
top_srcdir_abs=$(cd "${top_srcdir:-..}" && pwd)
BUS=$top_builddir_abs/tools/bus
PROMCHECK=$top_builddir_abs/tests/tools/promcheck
TMP=$(mktemp -d "${TMPDIR:-/tmp}/bus-cli.XXXXXX") || exit 99
RUN_ID=$$
trap 'rm -rf "$TMP"' EXIT
trap 'exit 1' INT TERM
. "$top_srcdir_abs/tests/tools/cli_lib.sh"
. "$top_srcdir_abs/tests/tools/cli_cases.sh"
. "$top_srcdir_abs/tests/tools/cli_stop.sh"
# The password of the made-up URLs of scenario_errors.
add_secret "s3cr3t"
for f in "$BUS" "$PROMCHECK"; do
	[ -x "$f" ] || { echo "$f is not built"; exit 99; }
done
command -v curl >/dev/null 2>&1 || { echo "curl is not installed"; exit 99; }

# url_password URL: the password of a URL, percent-decoded.
url_password() {
	printf '%s\n' "$1" | sed -n 's|^[a-z0-9]*://[^:/@]*:\([^@]*\)@.*|\1|p' |
		awk '{
			out = ""; hex = "0123456789abcdef"
			for (i = 1; i <= length($0); i++) {
				c = substr($0, i, 1)
				if (c == "%" && i + 2 <= length($0)) {
					h = tolower(substr($0, i + 1, 2))
					out = out sprintf("%c", (index(hex, substr(h, 1, 1)) - 1) * 16 + index(hex, substr(h, 2, 1)) - 1)
					i += 2
				} else out = out c
			}
			print out
		}'
}
