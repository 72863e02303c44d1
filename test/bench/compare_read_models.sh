#!/usr/bin/env bash
# Benchmark compare_read_models against the set-based SQL comparison, in one
# run, on a private PostgreSQL 15 cluster; prints a markdown table.  See
# test/bench/README.md.
#
#   test/bench/compare_read_models.sh [--quick]
#
# Two read models of each size, generated directly in the shapes of the
# projection benchmark's (per stream of a 1,000,000-event log over 10,000
# streams: stream_id, events, amount) and of one row per event of such a
# log (stream_id, revision, amount); each original is compared with a
# copy in another physical order (identical), and with a copy with a few
# differences (COMPARE_CHANGED rows changed, one deleted, one duplicated).
# Baseline: SELECT count(*) FROM (TABLE a EXCEPT ALL TABLE b), both ways,
# as planned (HashSetOp) and sorted (enable_hashagg off: Sort + SetOp).
# Every answer is checked against the differences made.
#
# Environment: COMPARE_SMALL (rows of the small read model, 10000),
# COMPARE_LARGE (of the large one, 1000000), COMPARE_CHANGED (rows changed,
# 10), COMPARE_ROUNDS (interleaved runs per side and row, median kept, 3),
# COMPARE_PORT (5493), COMPARE_WORKDIR (the root's work copy,
# /tmp/pg_eventstore-comparebench), COMPARE_KEEP=1 (keep the cluster
# directory), COMPARE_TIME_LIMIT (seconds after the build before a watchdog
# stops the run, 900).  --quick: 100,000 rows for the large read model, one
# round.
#
# Exit status: 0 when every answer was right; 1 when one was not; 2 on a
# set-up error; 143 when stopped by the watchdog or SIGTERM.
set -euo pipefail
START_TIME=$(date +%s)
cd "$(dirname "$0")/../.."
. scripts/common.sh

if [ "${1:-}" = --quick ]; then
	: "${COMPARE_LARGE:=100000}" "${COMPARE_ROUNDS:=1}"
	shift
fi
case ${1:-} in
	'') ;;
	-h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
	*) echo "unknown option: $1 (try --help)" >&2; exit 2 ;;
esac

SMALL=${COMPARE_SMALL:-10000}
LARGE=${COMPARE_LARGE:-1000000}
CHANGED=${COMPARE_CHANGED:-10}
ROUNDS=${COMPARE_ROUNDS:-3}
PORT=${COMPARE_PORT:-5493}
TIME_LIMIT=${COMPARE_TIME_LIMIT:-900}
for v in "$SMALL" "$LARGE" "$CHANGED" "$ROUNDS" "$PORT" "$TIME_LIMIT"; do
	[[ $v =~ ^[1-9][0-9]*$ ]] || { echo "not a positive integer: $v" >&2; exit 2; }
done
[ $((CHANGED + 2)) -le "$SMALL" ] || { echo "COMPARE_CHANGED must be below COMPARE_SMALL - 1" >&2; exit 2; }
# the large read model has 100 rows (events) per stream, as the log does
[ $((LARGE % 100)) -eq 0 ] || { echo "COMPARE_LARGE must be a multiple of 100" >&2; exit 2; }

. test/bench/cluster.sh
bench_prepare_cluster comparebench "${COMPARE_KEEP:-0}" "${COMPARE_WORKDIR:-/tmp/pg_eventstore-comparebench}" "$TIME_LIMIT" ""
bench_configure "pg_eventstore compare_read_models benchmark" pg_eventstore <<EOF
autovacuum = off
pg_eventstore.databases = ''
EOF
bench_start_cluster

psql_run() {
	timeout 900 $RUN psql -X -q -v ON_ERROR_STOP=1 -h "$CLUSTER" -p "$PORT" -d postgres "$@"
}
psql_value() { psql_run -At "$@"; }

# The read models.  rm_<size>_a is the original, _b the same rows in
# another physical order, _c _b with differences: CHANGED rows with another
# amount, one row deleted, two more copies of another row (so only_in_a =
# CHANGED + 1, only_in_b = CHANGED + 2).  Amounts of the form of the
# projection benchmark's: numeric with two decimals.
echo "== building the read models ($(printf "%'d" "$SMALL") and $(printf "%'d" "$LARGE") rows)"
psql_run -o /dev/null <<EOF
CREATE EXTENSION pg_eventstore;
CREATE SCHEMA bench;
CREATE TABLE bench.rm_small_a (stream_id text PRIMARY KEY, events bigint NOT NULL,
							   amount numeric NOT NULL);
INSERT INTO bench.rm_small_a
SELECT 'acct-' || s, 100, ((s::bigint * 7919) % 10000000) * 0.01
FROM generate_series(1, $SMALL) s;
CREATE TABLE bench.rm_large_a (stream_id text NOT NULL, revision bigint NOT NULL,
							   amount numeric NOT NULL, PRIMARY KEY (stream_id, revision));
INSERT INTO bench.rm_large_a
SELECT 'acct-' || (1 + (i - 1) % ($LARGE / 100)), (i - 1) / ($LARGE / 100),
	   ((i::bigint * 104729) % 100000) * 0.01
FROM generate_series(1, $LARGE) i;
EOF
for size in small large; do
	k2=events
	[ "$size" = small ] || k2=revision
	psql_run -o /dev/null <<EOF
CREATE TABLE bench.rm_${size}_b (LIKE bench.rm_${size}_a INCLUDING ALL);
ALTER TABLE bench.rm_${size}_b DROP CONSTRAINT rm_${size}_b_pkey;
INSERT INTO bench.rm_${size}_b SELECT * FROM bench.rm_${size}_a ORDER BY md5(stream_id || amount);
CREATE TABLE bench.rm_${size}_c AS SELECT * FROM bench.rm_${size}_b;
UPDATE bench.rm_${size}_c SET amount = amount + 0.01
WHERE ctid = ANY (ARRAY(SELECT ctid FROM bench.rm_${size}_c ORDER BY stream_id DESC, $k2 DESC LIMIT $CHANGED));
DELETE FROM bench.rm_${size}_c
WHERE ctid = (SELECT ctid FROM bench.rm_${size}_c ORDER BY stream_id, $k2 LIMIT 1);
INSERT INTO bench.rm_${size}_c
SELECT c.* FROM (SELECT * FROM bench.rm_${size}_c ORDER BY stream_id, $k2 LIMIT 1) c, generate_series(1, 2);
EOF
done
psql_run -o /dev/null -c 'VACUUM (ANALYZE)' -c CHECKPOINT
# Everything in shared_buffers before the first round: each scan of a
# round reads cached pages, as the later rounds do.
for t in small_a small_b small_c large_a large_b large_c; do
	psql_run -o /dev/null -c "SELECT count(*) FROM bench.rm_$t"
done
SIZES=$(psql_value -F ' ' -c "SELECT pg_relation_size('bench.rm_small_a') / 1024, pg_relation_size('bench.rm_large_a') / 1048576")
WORK_MEM=$(psql_value -c 'SHOW work_mem')

trap - ERR
ANY_FAILED=0
ROWS=()

# timed <query> [setting]: the seconds one query (one row, one column)
# took in its session, commit included, then its answer.
timed() {
	psql_value <<EOF
${2:-}
SELECT extract(epoch FROM clock_timestamp()) AS t0 \gset
SELECT ($1) AS result \gset
SELECT round((extract(epoch FROM clock_timestamp()) - :t0)::numeric, 3) || ' ' || :'result';
EOF
}

median() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
		END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
			  printf "%.3f\n", m }'
}
fmt() { sed ':a;s/\B[0-9]\{3\}\>/,&/;ta' <<<"$1"; }

# one_row <size> <rows> <b or c> <label>: ROUNDS interleaved runs of each
# way (rotating which goes first), each answer checked.
one_row() {
	local size=$1 rows=$2 other=$3 label=$4 r secs answer expect_c expect_b side
	local -a ours=() hashed=() sorted=() order=(ours hashed sorted)
	local a=bench.rm_${size}_a b=bench.rm_${size}_$other
	local cmp="SELECT concat_ws(' ', rows_a, rows_b, only_in_a, only_in_b, identical)
		FROM eventstore.compare_read_models('$a', '$b')"
	local base="SELECT concat_ws(' ', (SELECT count(*) FROM (TABLE $a EXCEPT ALL TABLE $b) x),
		(SELECT count(*) FROM (TABLE $b EXCEPT ALL TABLE $a) x))"
	local n=$((CHANGED + 1))
	if [ "$other" = b ]; then
		expect_c="$rows $rows 0 0 t"
		expect_b="0 0"
	else
		# c lacks CHANGED + 1 rows of a (changed, deleted) and has
		# CHANGED + 2 of its own (changed, and two more copies of a row)
		expect_c="$rows $((rows + 1)) $n $((n + 1)) f"
		expect_b="$n $((n + 1))"
	fi
	echo "== $label, $(fmt "$rows") rows: $ROUNDS round(s)"
	for ((r = 1; r <= ROUNDS; r++)); do
		for side in "${order[@]}"; do
			case $side in
				ours)
					read -r secs answer <<<"$(timed "$cmp")" || secs=
					[ "$answer" = "$expect_c" ] || { echo "   compare_read_models answered '$answer', expected '$expect_c'" >&2; ANY_FAILED=1; }
					ours+=("${secs:-0}") ;;
				hashed)
					read -r secs answer <<<"$(timed "$base")" || secs=
					[ "$answer" = "$expect_b" ] || { echo "   EXCEPT ALL answered '$answer', expected '$expect_b'" >&2; ANY_FAILED=1; }
					hashed+=("${secs:-0}") ;;
				sorted)
					read -r secs answer <<<"$(timed "$base" "SET enable_hashagg = off;")" || secs=
					[ "$answer" = "$expect_b" ] || { echo "   EXCEPT ALL (sorted) answered '$answer', expected '$expect_b'" >&2; ANY_FAILED=1; }
					sorted+=("${secs:-0}") ;;
			esac
		done
		order=("${order[@]:1}" "${order[0]}")
		echo "   round $r: compare_read_models ${ours[-1]} s, EXCEPT ALL both ways ${hashed[-1]} s, sorted ${sorted[-1]} s"
	done
	local mo mh ms plan_h plan_s
	mo=$(median "${ours[@]}")
	mh=$(median "${hashed[@]}")
	ms=$(median "${sorted[@]}")
	plan_h=$(psql_value -c "EXPLAIN $base" | grep -o -m1 'HashSetOp\|SetOp' || true)
	plan_s=$(psql_value -c "SET enable_hashagg = off" -c "EXPLAIN $base" | grep -o -m1 'HashSetOp\|SetOp' || true)
	ROWS+=("| $(fmt "$rows") rows, $label | $mo | $mh (${plan_h:-?}) | $(ratio "$mh" "$mo") | $ms (${plan_s:-?}) | $(ratio "$ms" "$mo") | \`$expect_c\` |")
}
ratio() { awk -v t="$1" -v o="$2" 'BEGIN { printf "%.1f", (o > 0) ? t / o : 0 }'; }

one_row small "$SMALL" b identical
one_row small "$SMALL" c "$CHANGED rows changed, 1 deleted, 1 duplicated"
one_row large "$LARGE" b identical
one_row large "$LARGE" c "$CHANGED rows changed, 1 deleted, 1 duplicated"

read -r SMALL_KB LARGE_MB <<<"$SIZES"
echo
echo "compare_read_models against \`SELECT count(*) FROM (TABLE a EXCEPT ALL TABLE b)\` both ways, hashed and sorted; seconds, median of $ROUNDS interleaved round(s);" \
	"ratio = the baseline's time / compare_read_models'; work_mem $WORK_MEM; the read models take $SMALL_KB kB and $LARGE_MB MB."
echo
echo "| read models | compare_read_models, s | EXCEPT ALL both ways, s (plan) | ratio | the same sorted (\`enable_hashagg = off\`), s (plan) | ratio | answer (rows_a rows_b only_in_a only_in_b identical) |"
echo "|---|---:|---:|---:|---:|---:|---|"
printf '%s\n' "${ROWS[@]}"
echo
ELAPSED=$(($(date +%s) - START_TIME))
echo "$(bench_machine); total run time ${ELAPSED} s"
if [ "$ANY_FAILED" -ne 0 ]; then
	echo "FAILED: an answer was wrong (see above)" >&2
	exit 1
fi
exit 0
