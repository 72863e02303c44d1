#!/usr/bin/env bash
# Run pgTAP files with pg_prove on a temporary instance of their own, with
# the library preloaded by test/pg_eventstore.conf, as pg_regress
# --temp-instance does for the other tests.  `make installcheck` calls it:
#
#   test/run_pgtap.sh BINDIR DIR FILE...
#
# With no FILE it does nothing.
#
# BINDIR holds PostgreSQL's programs; DIR (emptied first) gets the
# instance's data directory and logs, left there for a look after a failure.
# pg_prove comes from PATH (PG_PROVE overrides it).  The instance listens on
# a socket in a private directory and on no TCP port, so any port number is
# free (PGTAP_PORT overrides the default).  It is stopped on every way out;
# the exit status is pg_prove's.
set -euo pipefail
bindir=$1
dir=$2
shift 2
port=${PGTAP_PORT:-55150}
dbname=pgtap_regression
# none named (make installcheck PGTAP_TESTS= runs the other kinds only)
[ $# -gt 0 ] || exit 0

rm -rf "$dir"
mkdir -p "$dir"
# a socket path is limited to about 100 bytes: not under the build tree
socket=$(mktemp -d "${TMPDIR:-/tmp}/pg_eventstore-pgtap.XXXXXX")
started=
finish() {
	if [ -n "$started" ]; then
		"$bindir/pg_ctl" stop -D "$dir/data" -m fast -w >/dev/null 2>&1 ||
			"$bindir/pg_ctl" stop -D "$dir/data" -m immediate -w >/dev/null 2>&1 || true
	fi
	rm -rf "$socket"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "+++ pgTAP install-check (pg_prove) +++"
if ! "$bindir/initdb" -D "$dir/data" -A trust --no-sync --no-locale -E UTF8 >"$dir/initdb.log" 2>&1; then
	cat "$dir/initdb.log" >&2
	exit 1
fi
{
	echo
	echo "# test/run_pgtap.sh"
	echo "listen_addresses = ''"
	echo "unix_socket_directories = '$socket'"
	echo "port = $port"
	cat test/pg_eventstore.conf
} >>"$dir/data/postgresql.conf"
started=1
if ! "$bindir/pg_ctl" start -D "$dir/data" -l "$dir/server.log" -w >/dev/null; then
	cat "$dir/server.log" >&2
	exit 1
fi
"$bindir/createdb" -h "$socket" -p "$port" "$dbname"
"${PG_PROVE:-pg_prove}" --psql-bin "$bindir/psql" -h "$socket" -p "$port" -d "$dbname" "$@"
