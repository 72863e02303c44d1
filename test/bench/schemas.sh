#!/usr/bin/env bash
# Benchmark the event schema check on the append path, in one run, on a
# private PostgreSQL 15 cluster; prints a markdown table.  See
# test/bench/README.md.
#
#   test/bench/schemas.sh [--quick]
#
# Two scenarios, each measured on three event types with the same 10-field
# data: "Plain", with no registered schema; "Typed", whose schema gives
# each field its type, all of them required and no other allowed; and
# "Checked", whose schema checks every field (required,
# additionalProperties false, types, bounds, a pattern, an enum, lengths,
# formats uuid and date-time, an array's items).  append_event of one event, and append_to_stream of 100, to a
# random one of 10,000 existing streams per type; pgbench -n -M prepared,
# one client, the sides interleaved in each round; median tps and server
# CPU per call kept.  The cost of the check: the CPU per call with it over
# the CPU without, less 1 (and the same from tps, which the machine's other
# load moves more).  synchronous_commit is off (the
# check is CPU work; flush waits would drown it), so the appends are faster
# than run.sh's durable ones and the check a larger part of them.
#
# Then, the cluster stopped, the same appends in a single-user session under
# callgrind give the instructions per event of the append, of the check
# and of the validator (when valgrind is installed).
#
# Environment: SCHEMAS_SECONDS (per pgbench run, 5), SCHEMAS_ROUNDS (5),
# SCHEMAS_PORT (5494), SCHEMAS_WORKDIR (the root's work copy,
# /tmp/pg_eventstore-schemasbench), SCHEMAS_KEEP=1 (keep the cluster
# directory), SCHEMAS_CALLGRIND (1: count instructions, when valgrind is
# installed; 0: not), SCHEMAS_TIME_LIMIT (seconds after the build before a
# watchdog stops the run, 900).  --quick: 2-second runs, 3 rounds.
#
# Exit status: 0 when every call succeeded; 1 when one failed; 2 on a set-up
# error; 143 when stopped by the watchdog or SIGTERM.
set -euo pipefail
START_TIME=$(date +%s)
cd "$(dirname "$0")/../.."
. scripts/common.sh

if [ "${1:-}" = --quick ]; then
	: "${SCHEMAS_SECONDS:=2}" "${SCHEMAS_ROUNDS:=3}"
	shift
fi
case ${1:-} in
	'') ;;
	-h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
	*) echo "unknown option: $1 (try --help)" >&2; exit 2 ;;
esac

SECONDS_PER_RUN=${SCHEMAS_SECONDS:-5}
ROUNDS=${SCHEMAS_ROUNDS:-5}
PORT=${SCHEMAS_PORT:-5494}
TIME_LIMIT=${SCHEMAS_TIME_LIMIT:-900}
for v in "$SECONDS_PER_RUN" "$ROUNDS" "$PORT" "$TIME_LIMIT"; do
	[[ $v =~ ^[1-9][0-9]*$ ]] || { echo "not a positive integer: $v" >&2; exit 2; }
done

. test/bench/cluster.sh
bench_prepare_cluster schemasbench "${SCHEMAS_KEEP:-0}" "${SCHEMAS_WORKDIR:-/tmp/pg_eventstore-schemasbench}" "$TIME_LIMIT" ""
# synchronous_commit off: the check is CPU work, and waiting for each
# commit's flush (milliseconds here, varying with the other work on the
# disk) would hide it in the noise
bench_configure "pg_eventstore event schema benchmark" pg_eventstore <<EOF
autovacuum = off
pg_eventstore.databases = ''
synchronous_commit = off
EOF
bench_start_cluster

psql_run() {
	timeout 900 $RUN psql -X -q -v ON_ERROR_STOP=1 -h "$CLUSTER" -p "$PORT" -d postgres "$@"
}

echo "== setting up: the schema, 10,000 streams of each type"
psql_run -o /dev/null <<'EOF'
CREATE EXTENSION pg_eventstore;
CREATE SCHEMA bench;
-- the data of every event, folded into a constant when pgbench prepares
CREATE FUNCTION bench.payload() RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
	SELECT '{"order_id": "0190e3a0-7c1d-7000-8000-000000000001", "sku": "AB123",
			 "qty": 2, "price": 1999.99, "currency": "EUR",
			 "placed_at": "2026-12-01T14:05:00.123Z", "customer": "customer-42",
			 "gift": false, "note": "leave it at the door, please",
			 "tags": ["express", "fragile"]}'::jsonb
$$;
CREATE FUNCTION bench.batch(t text) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
	SELECT jsonb_agg(jsonb_build_object('type', t, 'data', bench.payload()))
	FROM generate_series(1, 100)
$$;
SELECT eventstore.register_event_schema('Checked', 1, '{
	"type": "object",
	"required": ["order_id", "sku", "qty", "price", "currency", "placed_at",
				 "customer", "gift", "note", "tags"],
	"additionalProperties": false,
	"properties": {
		"order_id": {"type": "string", "format": "uuid"},
		"sku": {"type": "string", "pattern": "^[A-Z]{2}[0-9]+$"},
		"qty": {"type": "integer", "minimum": 1, "maximum": 1000},
		"price": {"type": "number", "minimum": 0},
		"currency": {"enum": ["EUR", "USD", "GBP"]},
		"placed_at": {"type": "string", "format": "date-time"},
		"customer": {"type": "string", "minLength": 1, "maxLength": 64},
		"gift": {"type": "boolean"},
		"note": {"type": "string", "maxLength": 500},
		"tags": {"type": "array", "items": {"type": "string", "maxLength": 20}}}}');
SELECT eventstore.register_event_schema('Typed', 1, '{
	"type": "object",
	"required": ["order_id", "sku", "qty", "price", "currency", "placed_at",
				 "customer", "gift", "note", "tags"],
	"additionalProperties": false,
	"properties": {
		"order_id": {"type": "string"}, "sku": {"type": "string"},
		"qty": {"type": "integer"}, "price": {"type": "number"},
		"currency": {"type": "string"}, "placed_at": {"type": "string"},
		"customer": {"type": "string"}, "gift": {"type": "boolean"},
		"note": {"type": "string"}, "tags": {"type": "array"}}}');
SELECT count(eventstore.append_event(t || '-' || s, t, bench.payload()))
FROM unnest(ARRAY['Plain', 'Typed', 'Checked']) t, generate_series(1, 10000) s;
SELECT count(eventstore.append_to_stream('b' || t || '-' || s, bench.batch(t)))
FROM unnest(ARRAY['Plain', 'Typed', 'Checked']) t, generate_series(1, 10000) s;
EOF
psql_run -o /dev/null -c 'VACUUM (ANALYZE)' -c CHECKPOINT

TYPES=(Plain Typed Checked)
for t in "${TYPES[@]}"; do
	cat >"$OUT/single_$t.sql" <<EOF
\set s random(1, 10000)
SELECT eventstore.append_event('$t-' || :s, '$t', bench.payload());
EOF
	cat >"$OUT/batch_$t.sql" <<EOF
\set s random(1, 10000)
SELECT eventstore.append_to_stream('b$t-' || :s, bench.batch('$t'));
EOF
done
[ "$(id -u)" -ne 0 ] || chown -R postgres: "$OUT"

trap - ERR
ANY_FAILED=0

# run <script>: "tps cpu" of one pgbench run: its rate, and the server
# CPU per call in microseconds (cluster.sh's reaped_cpu: less stretched by
# the machine's other load than wall time); "0 0" when a call failed.
run() {
	local out pm children cpu0 calls
	pm=$(postmaster_pid)
	children=$(ps --ppid "$pm" --no-headers | wc -l)
	cpu0=$(reaped_cpu "$pm")
	out=$(timeout $((SECONDS_PER_RUN + 120)) $RUN pgbench -n -M prepared -c 1 -T "$SECONDS_PER_RUN" \
		-h "$CLUSTER" -p "$PORT" -f "$1" postgres 2>&1) || { echo "$out" >&2; ANY_FAILED=1; echo 0 0; return; }
	grep -q 'number of failed transactions: 0\b' <<<"$out" || ! grep -q 'number of failed transactions' <<<"$out" ||
		{ echo "$out" >&2; ANY_FAILED=1; }
	wait_reaped "$pm" "$children"
	calls=$(awk '/number of transactions actually processed/ { print $NF }' <<<"$out")
	awk -v a="$cpu0" -v b="$(reaped_cpu "$pm")" -v n="${calls:-0}" \
		'/^tps = / { printf "%.1f %.1f\n", $3, (n > 0) ? (b - a) * 1e6 / n : 0 }' <<<"$out"
}
median() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
		END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
			  printf "%.1f\n", m }'
}

# the cost of a checked type against Plain: "| label | ... |" from the
# medians of tps and CPU per call
cost_row() {
	awk -v l="$1" -v p="$2" -v c="$3" -v pc="$4" -v cc="$5" -v n="$6" 'BEGIN {
		printf "| %s | %.0f | %.0f | %.0f | %.0f | %.1f | %.1f%% | %.1f%% |", l, p, c, pc, cc,
			   (cc - pc) / n, 100 * (cc - pc) / pc, 100 * (1 - c / p) }'
}
ROWS=()
for scenario in single batch; do
	declare -A tps=() cpu=()
	order=("${TYPES[@]}")
	echo "== $scenario: $ROUNDS round(s) of $SECONDS_PER_RUN s per type"
	for ((r = 1; r <= ROUNDS; r++)); do
		line="   round $r:"
		for t in "${order[@]}"; do
			read -r a b <<<"$(run "$OUT/${scenario}_$t.sql")"
			tps[$t]="${tps[$t]:-} $a" cpu[$t]="${cpu[$t]:-} $b"
			line="$line $t $a tps ($b us CPU per call),"
		done
		order=("${order[@]:1}" "${order[0]}")
		echo "${line%,}"
	done
	events=1 what="\`append_event\`, 1 event"
	[ "$scenario" = single ] || events=100 what="\`append_to_stream\`, 100 events"
	# shellcheck disable=SC2086 # the lists are words
	for t in Typed Checked; do
		ROWS+=("$(cost_row "$what, $t" "$(median ${tps[Plain]})" "$(median ${tps[$t]})" \
			"$(median ${cpu[Plain]})" "$(median ${cpu[$t]})" "$events")")
	done
	unset tps cpu
done

# Instructions, apart from the machine's noise (as compare.sh counts them,
# with cluster.sh's cg_run): the cluster stopped, one single-user session
# under callgrind executes each statement K1 and K2 times, and the
# difference per event of the inclusive counts of AppendBatch (the whole
# append, in the extension), CheckBatchSchemas (the schema check, lock and
# cache included) and ValidateJsonb (the validator) is kept.
CG_ROWS=()
if [ "${SCHEMAS_CALLGRIND:-1}" = 1 ] && command -v valgrind >/dev/null; then
	echo "== counting instructions per event with callgrind (the cluster stopped, single-user mode)"
	$RUN pg_ctl stop -D "$DATA" -m fast -w -t 60 >/dev/null
	STARTED=
	cg_statements() {
		local shape=$1 t=$2 k=$3 i
		if [ "$shape" = single ]; then
			echo "PREPARE p(text) AS SELECT eventstore.append_event('$t-' || \$1, '$t', bench.payload());"
		else
			echo "PREPARE p(text) AS SELECT eventstore.append_to_stream('b$t-' || \$1, bench.batch('$t'));"
		fi
		for ((i = 0; i < k; i++)); do
			echo "EXECUTE p('$(((i * 7919 + k) % 10000 + 1))');"
		done
	}
	# value <function> <file of "function count" lines>
	value() { awk -v f="$1" '$1 == f { print $2; found = 1 } END { if (!found) print 0 }' "$2"; }
	for spec in "single 200 1200 1" "batch 10 60 100"; do
		read -r shape k1 k2 per <<<"$spec"
		for t in "${TYPES[@]}"; do
			for k in "$k1" "$k2"; do
				cg_statements "$shape" "$t" "$k" >"$OUT/cg-${shape}_$t-$k.sql"
				cg_run "${shape}_$t" "$k" >/dev/null || ANY_FAILED=1
			done
			cg_per_event "${shape}_$t" "$k1" "$k2" "$per" >"$OUT/cg-${shape}_$t.per-event"
		done
		what="\`append_event\`, 1 event"
		[ "$shape" = single ] || what="\`append_to_stream\`, 100 events"
		plain=$OUT/cg-${shape}_Plain.per-event
		for t in Typed Checked; do
			checked=$OUT/cg-${shape}_$t.per-event
			CG_ROWS+=("$(awk -v l="$what, $t" -v ap="$(value AppendBatch "$plain")" -v ac="$(value AppendBatch "$checked")" \
				-v cp="$(value CheckBatchSchemas "$plain")" -v cc="$(value CheckBatchSchemas "$checked")" \
				-v vc="$(value ValidateJsonb "$checked")" 'BEGIN {
				printf "| %s | %d | %d | %d | %d | %d | %.1f%% |", l, ap, ac, cp, cc, vc, (ap > 0) ? 100 * (ac - ap) / ap : 0 }')")
		done
	done
fi

echo
echo "Appends of a 10-field event without a registered schema (Plain) and with one (Typed: types and required; Checked: every field checked); one client, pgbench -M prepared, synchronous_commit off," \
	"median of $ROUNDS interleaved rounds of $SECONDS_PER_RUN s; cost = the server CPU per call with the check / without - 1 (and 1 - tps with / without); target: at most 10%."
echo
echo "| append, type | tps, no schema | tps, with a schema | us CPU per call, no schema | with a schema | us CPU per event checked | cost of the check (CPU) | (tps) |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${ROWS[@]}"
if [ ${#CG_ROWS[@]} -gt 0 ]; then
	echo
	echo "Instructions per event (callgrind, one single-user session; inclusive counts of the extension's functions):"
	echo
	echo "| append, type | append (\`AppendBatch\`), no schema | with a schema | the check (\`CheckBatchSchemas\`), no schema | with a schema | of which the validator (\`ValidateJsonb\`) | cost of the check |"
	echo "|---|---:|---:|---:|---:|---:|---:|"
	printf '%s\n' "${CG_ROWS[@]}"
fi
echo
ELAPSED=$(($(date +%s) - START_TIME))
echo "$(bench_machine); total run time ${ELAPSED} s"
if [ "$ANY_FAILED" -ne 0 ]; then
	echo "FAILED: a call failed (see above)" >&2
	exit 1
fi
exit 0
