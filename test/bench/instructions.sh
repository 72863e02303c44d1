#!/usr/bin/env bash
# Instructions per call of run.sh's append and read scenarios (1, 2, 4 and
# 5), pg_eventstore against its baseline, counted by callgrind in one
# single-user session of a private cluster, and the functions they go to.
# See test/bench/README.md.
#
#   test/bench/instructions.sh
#
# Environment: INSTR_PORT (default 55493), INSTR_WORKDIR (the root's work
# copy, default /tmp/pg_eventstore-instructions), INSTR_TOP (functions
# listed per scenario, default 15), INSTR_KEEP=1 (keep the cluster
# directory and the callgrind files), INSTR_TIME_LIMIT (seconds after the
# build, default 1800).
#
# Exit status: 0 when every count was made; 1 when a callgrind run failed
# or raised an error; 2 on a set-up error.
set -euo pipefail
START_TIME=$(date +%s)
cd "$(dirname "$0")/../.."
. scripts/common.sh

PORT=${INSTR_PORT:-55493}
TOP=${INSTR_TOP:-15}
for v in "$PORT" "$TOP" "${INSTR_TIME_LIMIT:-1}"; do
	[[ $v =~ ^[1-9][0-9]*$ ]] || { echo "not a positive integer: $v" >&2; exit 2; }
done
command -v valgrind >/dev/null ||
	{ echo "instructions.sh needs valgrind (Debian package valgrind)" >&2; exit 2; }

. test/bench/cluster.sh
bench_prepare_cluster instructions "${INSTR_KEEP:-0}" \
	"${INSTR_WORKDIR:-/tmp/pg_eventstore-instructions}" "${INSTR_TIME_LIMIT:-1800}" ""
bench_configure "pg_eventstore instruction counts" pg_eventstore <<EOF
autovacuum = off
EOF
bench_start_cluster

psql_run() {
	timeout 300 $RUN psql -X -q -v ON_ERROR_STOP=1 -h "$CLUSTER" -p "$PORT" -d postgres "$@"
}
. test/bench/appends.sh

echo "== creating the extension, the baseline table and the pre-filled data"
bench_fill_sql | psql_run -o /dev/null
# each side's first pre-filled position, as run.sh finds them
read -r ES_LO BASE_LO <<<"$(psql_run -At -F ' ' -c "
SELECT (SELECT min(global_position) FROM eventstore.events WHERE stream_id LIKE 'r-%'),
       (SELECT min(global_position) FROM bench.baseline WHERE stream_id LIKE 'r-%')")"
$RUN pg_ctl stop -D "$DATA" -m fast -w -t 60 >/dev/null
STARTED=

# The statements of run.sh's pgbench scripts, prepared once and executed k
# times on streams (positions) in a fixed order.  The reads count a column
# that is in no index, metadata, rather than print their rows: single-user
# mode's printing costs tens of times a protocol client's (the output
# functions, the same on both sides, are left out), and a bare count(*)
# would let the baseline answer from its index alone.
cg_statements() {
	local case=$1 k=$2 i
	case $case in
		append_es) echo "PREPARE p(text) AS SELECT eventstore.append_event(\$1, 'ItemAdded', '$EVENT_DATA', '$EVENT_META');" ;;
		append_base) echo "PREPARE p(text) AS INSERT INTO bench.baseline (stream_id, revision, event_type, data, metadata) VALUES (\$1, nextval('bench.revision_seq'), 'ItemAdded', '$EVENT_DATA', '$EVENT_META');" ;;
		batch_es) echo "PREPARE p(text) AS SELECT eventstore.append_to_stream(\$1, '$BATCH100');" ;;
		batch_base) echo "PREPARE p(text) AS INSERT INTO bench.baseline (stream_id, revision, event_id, event_type, data, metadata) SELECT \$1, b.base * 100 + i, (b.id_prefix || lpad(to_hex(i), 4, '0'))::uuid, 'ItemAdded', '$EVENT_DATA', '$EVENT_META' FROM (SELECT nextval('bench.batch_seq') AS base, left(eventstore.uuid_v7()::text, 32) AS id_prefix) b, generate_series(0, 99) i;" ;;
		stream_es) echo "PREPARE p(text) AS SELECT count(metadata) FROM eventstore.read_stream(\$1, 0, 100);" ;;
		stream_base) echo "PREPARE p(text) AS SELECT count(metadata) FROM (SELECT * FROM bench.baseline WHERE stream_id = \$1 AND revision >= 0 ORDER BY revision LIMIT 100) x;" ;;
		all_es) echo "PREPARE p(bigint) AS SELECT count(metadata) FROM eventstore.read_all(\$1, 1000);" ;;
		all_base) echo "PREPARE p(bigint) AS SELECT count(metadata) FROM (SELECT * FROM bench.baseline WHERE global_position > \$1 ORDER BY global_position LIMIT 1000) x;" ;;
	esac
	for ((i = 0; i < k; i++)); do
		case $case in
			append_*) echo "EXECUTE p('s1-$(((i * 7919 + k) % 10000 + 1))');" ;;
			batch_*) echo "EXECUTE p('s2-$(((i * 7919 + k) % 10000 + 1))');" ;;
			stream_*) echo "EXECUTE p('r-$(((i * 7919 + k) % 2000 + 1))');" ;;
			all_es) echo "EXECUTE p($((ES_LO + (i * 7919 + k) % 190000)));" ;;
			all_base) echo "EXECUTE p($((BASE_LO + (i * 7919 + k) % 190000)));" ;;
		esac
	done
}
# Exclusive instructions per call of each function, its share of the call,
# from the runs of K1 and K2 executions (Debian's postgres has symbols for
# its exported functions only: its static ones show as addresses).
cg_self_per_call() {
	local case=$1 k1=$2 k2=$3 per=$4 total=$5
	LC_ALL=C join -a2 -e0 -o 0,1.2,2.2 \
		<(callgrind_annotate --threshold=100 --auto=no "$OUT/cg-$case-$k1.out" 2>/dev/null | cg_names) \
		<(callgrind_annotate --threshold=100 --auto=no "$OUT/cg-$case-$k2.out" 2>/dev/null | cg_names) |
		awk -v k=$((k2 - k1)) -v p="$per" -v t="$total" '$1 != "PROGRAM" { n = ($3 - $2) / k / p; if (n > 0) printf "%.0f %.1f %s\n", n, 100 * n / t, $1 }' |
		sort -k1,1nr | awk -v n="$TOP" 'NR <= n'
}
cg_names() {
	sed -n 's/^ *\([0-9,]*\) ([ 0-9.]*%) *\([^ ]*\) .*/\1 \2/p' |
		awk '{ gsub(/,/, "", $1); f = $2; sub(/.*:/, "", f); if (!(f in seen)) { seen[f] = 1; print f, $1 } }' |
		LC_ALL=C sort -k1,1
}

echo "== counting instructions with callgrind (the cluster stopped, single-user mode)"
declare -A COUNT=()
ANY_FAILED=0
ROWS=()
for spec in "append 200 1200 1" "batch 20 120 100" "stream 100 600 1" "all 20 120 1"; do
	read -r shape k1 k2 per <<<"$spec"
	for kind in base es; do
		cg_statements "${shape}_$kind" "$k1" >"$OUT/cg-${shape}_$kind-$k1.sql"
		cg_statements "${shape}_$kind" "$k2" >"$OUT/cg-${shape}_$kind-$k2.sql"
		a=$(cg_run "${shape}_$kind" "$k1") && b=$(cg_run "${shape}_$kind" "$k2") ||
			{ ANY_FAILED=1; continue; }
		COUNT[$shape:$kind]=$(awk -v a="$a" -v b="$b" -v k="$((k2 - k1))" -v p="$per" 'BEGIN { printf "%.0f", (b - a) / k / p }')
		echo "   $shape $kind: ${COUNT[$shape:$kind]} instructions per call"
	done
done

label() {
	case $1 in
		append) echo "1. append_event (per event)" ;;
		batch) echo "2. append_to_stream, 100 events (per event)" ;;
		stream) echo "4. read_stream, 100 events (per page)" ;;
		all) echo "5. read_all, pages of 1000 (per page)" ;;
	esac
}
echo
echo "Instructions per call (callgrind, one single-user session; (count(K2) - count(K1)) / (K2 - K1))"
echo
echo "| scenario | baseline | pg_eventstore | baseline / pg_eventstore |"
echo "|---|---:|---:|---:|"
for shape in append batch stream all; do
	[ -n "${COUNT[$shape:base]:-}" ] && [ -n "${COUNT[$shape:es]:-}" ] || continue
	awk -v l="$(label $shape)" -v b="${COUNT[$shape:base]}" -v e="${COUNT[$shape:es]}" \
		'BEGIN { printf "| %s | %d | %d | %.2f |\n", l, b, e, b / e }'
done
for spec in "append 200 1200 1" "batch 20 120 100" "stream 100 600 1" "all 20 120 1"; do
	read -r shape k1 k2 per <<<"$spec"
	[ -n "${COUNT[$shape:es]:-}" ] || continue
	echo
	echo "Where pg_eventstore's instructions go, $(label "$shape"): the top $TOP functions by their own instructions"
	echo
	echo "| function | instructions | share |"
	echo "|---|---:|---:|"
	cg_self_per_call "${shape}_es" "$k1" "$k2" "$per" "${COUNT[$shape:es]}" |
		while read -r n share f; do echo "| $f | $n | $share% |"; done
done
echo
echo "$(bench_machine); total run time $(($(date +%s) - START_TIME)) s"
[ "$ANY_FAILED" -eq 0 ] || { echo "FAILED: some callgrind runs failed (see above)" >&2; exit 1; }
exit 0
