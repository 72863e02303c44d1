#!/usr/bin/env bash
# Benchmark pg_eventstore against plain SQL on an equivalent table, side by
# side in one run, on a private PostgreSQL 15 cluster.  See test/bench/README.md.
#
#   test/bench/run.sh [--seconds N] [--rounds N] [--quick] [--scenarios 1,2,...]
#
# Environment (options win): BENCH_SECONDS (per pgbench run, default 2),
# BENCH_ROUNDS (default 5), BENCH_SCENARIOS (default 1,2,3,4,5), BENCH_PORT
# (default 55499), BENCH_WORKDIR (the root's work copy, default
# /tmp/pg_eventstore-bench), BENCH_KEEP=1 (keep the cluster directory),
# BENCH_STRICT=1 (also fail when a ratio is below its target), BENCH_PGSS=1
# (preload pg_stat_statements and print where the time went; perturbs the
# figures a little, on both sides), BENCH_TIME_LIMIT (seconds after the
# build before the watchdog stops the run; default 30 x rounds x seconds +
# 240), BENCH_NO_TYPE_INDEX=1 (drop events_type_order_idx before the runs:
# what that index costs the appends).
#
# Exit status: 0 when every call of every run succeeded; 1 when any call
# failed (or a run did not complete); 3 with BENCH_STRICT=1 when a ratio is
# below its target; 2 on a set-up error; 143 when stopped by the watchdog
# or SIGTERM.
set -euo pipefail
START_TIME=$(date +%s)
cd "$(dirname "$0")/../.."
. scripts/common.sh

SECONDS_PER_RUN=${BENCH_SECONDS:-2}
ROUNDS=${BENCH_ROUNDS:-5}
SCENARIOS=${BENCH_SCENARIOS:-1,2,3,4,5,6}
PORT=${BENCH_PORT:-55499}
while [ $# -gt 0 ]; do
	case $1 in
		--seconds|-T) SECONDS_PER_RUN=$2; shift 2 ;;
		--seconds=*) SECONDS_PER_RUN=${1#*=}; shift ;;
		--rounds) ROUNDS=$2; shift 2 ;;
		--rounds=*) ROUNDS=${1#*=}; shift ;;
		--scenarios) SCENARIOS=$2; shift 2 ;;
		--scenarios=*) SCENARIOS=${1#*=}; shift ;;
		--quick) SECONDS_PER_RUN=3; ROUNDS=1; shift ;;
		-h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
		*) echo "unknown option: $1 (try --help)" >&2; exit 2 ;;
	esac
done
for v in "$SECONDS_PER_RUN" "$ROUNDS" "$PORT" "${BENCH_TIME_LIMIT:-1}"; do
	[[ $v =~ ^[1-9][0-9]*$ ]] || { echo "not a positive integer: $v" >&2; exit 2; }
done
[ "$SECONDS_PER_RUN" -le 60 ] && [ "$ROUNDS" -le 10 ] ||
	{ echo "at most 60 seconds per run and 10 rounds, to keep the run bounded" >&2; exit 2; }

# Bounded in time whatever happens: every step has its own timeout, and
# from the end of the build on a watchdog ends the run once it has taken
# half as long again as its pgbench runs plus four minutes (9 minutes with
# the defaults).  The work copy is its own, apart from the test scripts';
# set-up errors exit 2, distinct from failed calls (1); the cluster is
# stopped and removed on every way out.
TIME_LIMIT=${BENCH_TIME_LIMIT:-$((30 * ROUNDS * SECONDS_PER_RUN + 240))}
. test/bench/cluster.sh
bench_prepare_cluster bench "${BENCH_KEEP:-0}" "${BENCH_WORKDIR:-/tmp/pg_eventstore-bench}" "$TIME_LIMIT" ""
# data, unix socket, log and pgbench scripts in the cluster's directory
SCRIPTS=$CLUSTER/scripts
$RUN mkdir -p "$SCRIPTS"
PRELOAD=pg_eventstore
[ "${BENCH_PGSS:-0}" != 1 ] || PRELOAD=pg_eventstore,pg_stat_statements
# The writes are measured in the steady state between two checkpoints,
# after one CHECKPOINT and a warm-up run of each write scenario (right after
# a checkpoint, the first change of each page writes a full-page image, and
# the extension touches more pages: its streams rows).
bench_configure "pg_eventstore benchmark" "$PRELOAD" <<EOF
max_wal_size = 8GB   # over the shared 16GB
# the append path alone: push (a worker's turn per wake-up at commit) is
# measured by notify.sh
pg_eventstore.notify = off
$([ "${BENCH_PGSS:-0}" != 1 ] || echo "pg_stat_statements.track = 'all'")
EOF
bench_start_cluster

psql_run() {
	timeout 300 $RUN psql -X -q -v ON_ERROR_STOP=1 -h "$CLUSTER" -p "$PORT" -d postgres "$@"
}

. test/bench/appends.sh

echo "== creating the extension, the baseline table and the pre-filled data"
{
	bench_fill_sql
	[ "${BENCH_PGSS:-0}" != 1 ] || echo "CREATE EXTENSION pg_stat_statements;"
} | psql_run -o /dev/null

# The read scenarios' positions: the pre-filled events must be a gap-free
# range on each side, so that any position in it is a valid read_all cursor.
read -r ES_LO ES_HI BASE_LO BASE_HI <<<"$(psql_run -At -F ' ' <<'EOF'
SELECT e.lo, e.hi, b.lo, b.hi
FROM (SELECT min(global_position) lo, max(global_position) hi, count(*) n
      FROM eventstore.events WHERE stream_id LIKE 'r-%') e,
     (SELECT min(global_position) lo, max(global_position) hi, count(*) n
      FROM bench.baseline WHERE stream_id LIKE 'r-%') b
WHERE e.n = 200000 AND b.n = 200000
  AND e.hi - e.lo + 1 = e.n AND b.hi - b.lo + 1 = b.n;
EOF
)"
[ -n "${BASE_HI:-}" ] || { echo "the pre-filled events are not 2 x 200,000 gap-free positions" >&2; exit 2; }
# BENCH_NO_TYPE_INDEX=1: the extension's appends without the index of each
# type's events in log order (events_type_order_idx), to measure its cost
if [ "${BENCH_NO_TYPE_INDEX:-0}" = 1 ]; then
	echo "== without events_type_order_idx"
	psql_run -c 'DROP INDEX eventstore.events_type_order_idx'
fi

# --- the pgbench scripts ---------------------------------------------------
# Each pair does the same work; only the way differs.  pgbench runs them
# with -M prepared, so the JSON literals are parsed once, at prepare time,
# on both sides.  Scenarios 1 to 3, the appends, are in appends.sh.
bench_append_scripts

# 4. The 100 events of a random pre-filled stream.
write_script s4_es <<'EOF'
\set s random(1, 2000)
SELECT * FROM eventstore.read_stream('r-' || :s, 0, 100);
EOF
write_script s4_base <<'EOF'
\set s random(1, 2000)
SELECT * FROM bench.baseline WHERE stream_id = 'r-' || :s AND revision >= 0
ORDER BY revision LIMIT 100;
EOF

# 5. A page of 1,000 events after a random position of the pre-filled range
# (every one an existing position, as read_all requires).
write_script s5_es <<EOF
\set p random($ES_LO, $ES_HI - 1000)
SELECT * FROM eventstore.read_all(:p, 1000);
EOF
write_script s5_base <<EOF
\set p random($BASE_LO, $BASE_HI - 1000)
SELECT * FROM bench.baseline WHERE global_position > :p
ORDER BY global_position LIMIT 1000;
EOF

# 6. A processor storing its checkpoint: each client is its own processor
# (new ones each run, :tag) and passes the checkpoint it stored last as the
# expected one, so every store but a run's first is 'stored'.  The baseline
# is a plain UPDATE of one row.
write_script s6_es <<EOF
\set p random($ES_LO, $ES_HI)
SELECT eventstore.store_checkpoint('cp-' || :tag || '-' || :client_id, :p, :prev);
\set prev :p
EOF
write_script s6_base <<EOF
\set p random($BASE_LO, $BASE_HI)
UPDATE bench.checkpoints SET "position" = :p, updated_at = now()
WHERE processor_id = 'cp-' || :client_id AND partition = 'default';
EOF

# --- running ---------------------------------------------------------------

ROWS=()
ANY_FAILED=0
ANY_BELOW=0
TAG=0


# bench_row <scenario number> <label> <clients> <target> <write?> [pgbench args]
# Runs both sides ROUNDS times, interleaved (baseline first in odd rounds,
# the extension first in even ones), and keeps the medians: the tps of each
# side, and the ratio of each round's pair of runs, so that one burst of
# load from elsewhere on the machine does not decide a row.
bench_row() {
	local n=$1 label=$2 clients=$3 target=$4 write=$5 round side order
	local base_failed=0 es_failed=0 base_tps es_tps ratio verdict
	local -a base_runs=() es_runs=() ratios=()
	shift 5
	for ((round = 1; round <= ROUNDS; round++)); do
		order="base es"
		[ $((round % 2)) -eq 1 ] || order="es base"
		for side in $order; do
			TAG=$((TAG + 1))
			pgbench_run "s${n}_$side" "$clients" -D tag="$TAG" "$@"
			printf '   scenario %s, %2d clients, round %d, %-14s %9.1f tps, %d failed\n' \
				"$n" "$clients" "$round" "$([ "$side" = es ] && echo pg_eventstore: || echo baseline:)" \
				"$TPS" "$FAILED"
			if [ "$side" = es ]; then
				es_runs+=("$TPS")
				es_failed=$((es_failed + FAILED))
			else
				base_runs+=("$TPS")
				base_failed=$((base_failed + FAILED))
			fi
		done
		ratios+=("$(awk -v e="${es_runs[-1]}" -v b="${base_runs[-1]}" 'BEGIN { print (b > 0) ? e / b : 0 }')")
	done
	base_tps=$(median "${base_runs[@]}")
	es_tps=$(median "${es_runs[@]}")
	ratio=$(printf '%.2f' "$(median "${ratios[@]}")")
	verdict=$(awk -v r="$ratio" -v t="$target" 'BEGIN { print (r + 0 >= t + 0) ? "ok" : "below target" }')
	[ "$verdict" = ok ] || ANY_BELOW=1
	[ $((base_failed + es_failed)) -eq 0 ] || { ANY_FAILED=1; verdict="FAILED CALLS"; }
	ROWS+=("$(printf '| %s | %d | %.0f | %.0f | %s | >= %.2f | %d / %d | %s |' \
		"$label" "$clients" "$base_tps" "$es_tps" "$ratio" "$target" \
		"$base_failed" "$es_failed" "$verdict")")
}

wanted() { [[ ",$SCENARIOS," == *",$1,"* ]]; }
trap - ERR

echo "== running: $SECONDS_PER_RUN s per pgbench run, $ROUNDS round(s) per side, interleaved"
if [ "${BENCH_PGSS:-0}" = 1 ]; then psql_run -c 'SELECT pg_stat_statements_reset()' >/dev/null; fi
# Reads first, on the freshly vacuumed pre-filled tables; then the writes.
wanted 4 && for c in 1 4; do
	bench_row 4 "4. read_stream, 100 events" "$c" 1.0 0
done
wanted 5 && for c in 1 4; do
	bench_row 5 "5. read_all, pages of 1000" "$c" 1.0 0
done
# The writes' steady state: one checkpoint, then every write scenario once,
# unmeasured, so that the pages they touch have had their full-page image.
psql_run -c CHECKPOINT >/dev/null
for n in 1 2 3 6; do
	wanted "$n" || continue
	for side in base es; do
		TAG=$((TAG + 1))
		pgbench_run "s${n}_$side" 4 -D tag="$TAG" -D prev=0 >/dev/null
	done
done
wanted 1 && for c in 1 4 16; do
	bench_row 1 "1. append_event, 10,000 streams" "$c" 0.90 1
done
wanted 2 && for c in 1 4; do
	bench_row 2 "2. append_to_stream, 100 events" "$c" 0.95 1
done
wanted 3 && bench_row 3 "3. append_event, 10 hot streams" 8 0.80 1
wanted 6 && for c in 1 4; do
	bench_row 6 "6. store_checkpoint" "$c" 0.80 1 -D prev=0
done

if [ "${BENCH_PGSS:-0}" = 1 ]; then
	echo "== pg_stat_statements: top statements by total time"
	psql_run -P pager=off -c "SELECT round(total_exec_time::numeric, 0) AS total_ms,
		calls, round(mean_exec_time::numeric, 3) AS mean_ms, toplevel,
		left(regexp_replace(query, '\s+', ' ', 'g'), 110) AS query
		FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 25"
fi

# The table, sorted by scenario (the reads ran first).
echo
echo "pg_eventstore vs plain SQL on an equivalent table: tps are medians of $ROUNDS interleaved" \
	"pgbench runs of $SECONDS_PER_RUN s per side; ratio = pg_eventstore / baseline, the median of the rounds' ratios"
echo
echo "| scenario | clients | baseline tps | pg_eventstore tps | ratio | target | failed calls (baseline / pg_eventstore) | verdict |"
echo "|---|---:|---:|---:|---:|---:|---:|---|"
[ ${#ROWS[@]} -eq 0 ] || printf '%s\n' "${ROWS[@]}" | sort -t'|' -k2,2 -s
echo
ELAPSED=$(($(date +%s) - START_TIME))
echo "$(bench_machine); $SECONDS_PER_RUN s per pgbench run, $ROUNDS round(s) per side; total run time ${ELAPSED} s"

status=0
if [ "$ANY_FAILED" -ne 0 ]; then
	echo "FAILED: some calls failed (see above)" >&2
	status=1
elif [ "$ANY_BELOW" -ne 0 ]; then
	echo "note: a ratio is below its target" >&2
	[ "${BENCH_STRICT:-0}" != 1 ] || status=3
fi
exit $status
