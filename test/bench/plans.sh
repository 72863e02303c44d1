#!/usr/bin/env bash
# Benchmark: do a session's plans stay right as the log grows?  On a
# private PostgreSQL 15 cluster; prints a markdown table.  See
# test/bench/README.md.
#
#   test/bench/plans.sh [--quick]
#
# A session ("stale") makes its first append with an explicit event id,
# its first read_stream and its first read_all page while the log holds
# PLANS_SMALL events; another session then grows the log to PLANS_EVENTS
# events (nothing analyzes it: autovacuum is off for the log, as when the
# analyze threshold has not been reached yet); then the stale session and
# a fresh one time the same statements, in alternating rounds: appends of
# one event with an explicit id, read_stream of a whole stream of 100
# events, read_all pages of 100 from random places.  Ratio = stale / fresh
# (1.00: the stale session's plans are as good).
#
# Environment: PLANS_SMALL (300), PLANS_EVENTS (1,000,000), PLANS_CALLS
# (per statement and round, 200), PLANS_ROUNDS (3), PLANS_PORT (5494),
# PLANS_WORKDIR (the root's work copy, /tmp/pg_eventstore-plansbench),
# PLANS_KEEP=1 (keep the cluster directory), PLANS_TIME_LIMIT (seconds
# after the build, 900), PLANS_PYTHON (/usr/bin/python3).  --quick: a log
# of 200,000 events, 100 calls, 2 rounds.
#
# Exit status: 0 when the run completed; 1 when a call failed; 2 on a
# set-up error; 143 when stopped by the watchdog or SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/common.sh

if [ "${1:-}" = --quick ]; then
	: "${PLANS_EVENTS:=200000}" "${PLANS_CALLS:=100}" "${PLANS_ROUNDS:=2}"
	shift
fi
case ${1:-} in
	'') ;;
	-h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
	*) echo "unknown option: $1 (try --help)" >&2; exit 2 ;;
esac
SMALL=${PLANS_SMALL:-300}
EVENTS=${PLANS_EVENTS:-1000000}
CALLS=${PLANS_CALLS:-200}
ROUNDS=${PLANS_ROUNDS:-3}
PORT=${PLANS_PORT:-5494}
PYTHON=${PLANS_PYTHON:-/usr/bin/python3}
for v in "$SMALL" "$EVENTS" "$CALLS" "$ROUNDS" "$PORT"; do
	[[ $v =~ ^[1-9][0-9]*$ ]] || { echo "not a positive integer: $v" >&2; exit 2; }
done

. test/bench/cluster.sh
bench_prepare_cluster plansbench "${PLANS_KEEP:-0}" "${PLANS_WORKDIR:-/tmp/pg_eventstore-plansbench}" \
	"${PLANS_TIME_LIMIT:-900}" "$PYTHON"
bench_configure "pg_eventstore plans benchmark" pg_eventstore <<EOF
pg_eventstore.databases = ''
EOF
bench_start_cluster
$RUN psql -X -q -v ON_ERROR_STOP=1 -h "$CLUSTER" -p "$PORT" -d postgres <<'SQL'
CREATE EXTENSION pg_eventstore;
ALTER TABLE eventstore.events SET (autovacuum_enabled = off);
ALTER TABLE eventstore.streams SET (autovacuum_enabled = off);
SQL
timeout 1200 $RUN "$PYTHON" "$WORKDIR/test/bench/plans.py" --host "$CLUSTER" --port "$PORT" \
	--small "$SMALL" --events "$EVENTS" --calls "$CALLS" --rounds "$ROUNDS"
echo
echo "($(bench_machine))"
