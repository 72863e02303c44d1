#!/usr/bin/env bash
# Benchmark parallel replays (create_projection's parallel => n) on one log,
# in one run, on a private PostgreSQL 15 cluster; prints a markdown table.
# See test/bench/README.md.
#
#   test/bench/parallel.sh [--quick]
#
#   (g) the replay from the start of a per-event PL/pgSQL upsert handler
#       (the read model of projections.sh's (b)) with parallel => 2 against
#       parallel => 1, to `active`:
#       - driven by the background workers (pg_eventstore.max_workers = 2):
#         the time from rebuild_projection to activation, as the registry
#         records them (rebuild_started_at, caught_up_at);
#       - driven by run_projection: parallel => 1 in one session, parallel
#         => 2 in two sessions at once (each takes a partition; a last call
#         joins them if neither could), each session calling
#         run_projection(max_events => PAR_CHUNK) in transactions of their
#         own until a call finds nothing to do.
#       In alternating rounds; the median of each is kept.
# Every read model is checked against the set-based answer.
#
# Environment: PAR_EVENTS (log size, default 1000000), PAR_STREAMS (10000),
# PAR_LOAD_BATCH (events per append_to_stream call of the bulk load, 10),
# PAR_ROUNDS (rounds of each, 2), PAR_BATCH_SIZE (pg_eventstore.batch_size,
# 1000), PAR_CHUNK (max_events of the run_projection calls, 100000), PAR_PORT (5496), PAR_WORKDIR (the root's work copy,
# /tmp/pg_eventstore-parbench), PAR_KEEP=1 (keep the cluster directory),
# PAR_STRICT=1 (exit 3 when the target is missed), PAR_TIME_LIMIT (seconds
# after the build before a watchdog stops the run, 3000).  --quick: 200,000
# events, 1 round.
#
# Exit status: 0 when every read model matched; 1 when one did not or a run
# failed; 3 with PAR_STRICT=1 when the target is missed; 2 on a set-up
# error; 143 when stopped by the watchdog or SIGTERM.
set -euo pipefail
START_TIME=$(date +%s)
cd "$(dirname "$0")/../.."
. scripts/common.sh

if [ "${1:-}" = --quick ]; then
	: "${PAR_EVENTS:=200000}" "${PAR_ROUNDS:=1}"
	shift
fi
case ${1:-} in
	'') ;;
	-h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
	*) echo "unknown option: $1 (try --help)" >&2; exit 2 ;;
esac

EVENTS=${PAR_EVENTS:-1000000}
STREAMS=${PAR_STREAMS:-10000}
LOAD_BATCH=${PAR_LOAD_BATCH:-10}
ROUNDS=${PAR_ROUNDS:-2}
BATCH_SIZE=${PAR_BATCH_SIZE:-1000}
CHUNK=${PAR_CHUNK:-100000}
PORT=${PAR_PORT:-5496}
TIME_LIMIT=${PAR_TIME_LIMIT:-3000}

for v in "$EVENTS" "$STREAMS" "$LOAD_BATCH" "$ROUNDS" "$BATCH_SIZE" "$CHUNK" "$PORT" "$TIME_LIMIT"; do
	[[ $v =~ ^[1-9][0-9]*$ ]] || { echo "not a positive integer: $v" >&2; exit 2; }
done
PER_STREAM=$((EVENTS / STREAMS))
[ $((PER_STREAM * STREAMS)) -eq "$EVENTS" ] && [ $((PER_STREAM % LOAD_BATCH)) -eq 0 ] ||
	{ echo "PAR_EVENTS must be PAR_STREAMS x a multiple of PAR_LOAD_BATCH" >&2; exit 2; }

. test/bench/cluster.sh
bench_prepare_cluster parbench "${PAR_KEEP:-0}" "${PAR_WORKDIR:-/tmp/pg_eventstore-parbench}" "$TIME_LIMIT" ""
bench_configure "pg_eventstore parallel replay benchmark" pg_eventstore <<EOF
work_mem = 64MB
autovacuum = off   # explicit VACUUMs only, between the measurements
# two workers: one per core; they are idle but for the replays timed
pg_eventstore.databases = 'postgres'
pg_eventstore.max_workers = 2
pg_eventstore.batch_size = $BATCH_SIZE
pg_eventstore.poll_interval = '100ms'
EOF
bench_start_cluster

psql_run() {
	timeout 1800 $RUN psql -X -q -v ON_ERROR_STOP=1 -h "$CLUSTER" -p "$PORT" -d postgres "$@"
}
psql_value() { psql_run -At "$@"; }

echo "== creating the extension and the read models"
psql_run -o /dev/null <<'EOF'
CREATE EXTENSION pg_eventstore;
CREATE SCHEMA bench;
-- per stream, the number of Deposited events and the sum of their amounts
CREATE TABLE bench.rm_a (stream_id text PRIMARY KEY, events bigint NOT NULL,
						 amount numeric NOT NULL);
CREATE TABLE bench.rm_1 (LIKE bench.rm_a INCLUDING ALL);
CREATE TABLE bench.rm_2 (LIKE bench.rm_a INCLUDING ALL);
-- one upsert per event, as projections.sh's (b): the same for both
DO $do$
BEGIN
	FOR n IN 1 .. 2 LOOP
		EXECUTE format($f$
			CREATE FUNCTION bench.apply_%s(e eventstore.events) RETURNS void
			LANGUAGE plpgsql AS $b$
			BEGIN
				INSERT INTO bench.rm_%s AS r (stream_id, events, amount)
				VALUES (e.stream_id, 1, (e.data->>'amount')::numeric)
				ON CONFLICT (stream_id) DO UPDATE
				SET events = r.events + 1, amount = r.amount + excluded.amount;
			END $b$$f$, n, n);
	END LOOP;
END $do$;
CREATE FUNCTION bench.differences(rm regclass, expected regclass) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
	n bigint;
BEGIN
	EXECUTE format('SELECT count(*) FROM %s x FULL JOIN %s y USING (stream_id)'
				   ' WHERE x.events IS DISTINCT FROM y.events'
				   ' OR x.amount IS DISTINCT FROM y.amount', rm, expected)
	INTO n;
	RETURN n;
END
$$;
EOF

bench_load_deposits "$STREAMS" "$PER_STREAM" "$LOAD_BATCH"
psql_run -o /dev/null -c "INSERT INTO bench.rm_a SELECT stream_id, count(*), sum((data->>'amount')::numeric)
	FROM eventstore.events GROUP BY stream_id"
N_EVENTS=$(psql_value -c 'SELECT count(*) FROM eventstore.events')
[ "$N_EVENTS" -eq "$EVENTS" ] || { echo "the log has $N_EVENTS events" >&2; exit 2; }
echo "   loaded in $LOAD_SECONDS s"

trap - ERR
ANY_FAILED=0
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", (s > 0) ? n / s : 0 }'; }
fmt() { sed ':a;s/\B[0-9]\{3\}\>/,&/;ta' <<<"$1"; }
median() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
		END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.2f\n", m }'
}
check() {
	local diff
	diff=$(psql_value -c "SELECT bench.differences('$1', 'bench.rm_a')") || diff=error
	if [ "$diff" != 0 ]; then
		echo "   $1 differs from the set-based answer on $diff stream(s)" >&2
		ANY_FAILED=1
		return 1
	fi
}
# prepare <n>: empty and vacuum the read model of parallel => n before its
# replay.
prepare() {
	local n=$1
	psql_run -o /dev/null -c "TRUNCATE bench.rm_$n" -c "VACUUM bench.rm_$n" -c CHECKPOINT
}
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# --- (g) driven by the workers ---------------------------------------------
# A projection created over the log starts rebuilding at once: each is
# created in its first round and rebuilt in the next ones.
declare -A W_SECS R_SECS
worker_round() {
	local n=$1 secs
	prepare "$n"
	if [ "$(psql_value -c "SELECT count(*) FROM eventstore.projections WHERE name = 'p$n'")" = 0 ]; then
		psql_run -o /dev/null -c "SELECT eventstore.create_projection('p$n', 'bench.apply_$n', ARRAY['Deposited'],
			on_reset => 'TRUNCATE bench.rm_$n', parallel => $n)"
	else
		psql_run -o /dev/null -c "SELECT eventstore.rebuild_projection('p$n')"
	fi
	until [ "$(psql_value -c "SELECT status FROM eventstore.projections WHERE name = 'p$n'")" = active ]; do
		sleep 0.5
	done
	secs=$(psql_value -c "SELECT round(extract(epoch FROM caught_up_at - rebuild_started_at)::numeric, 2)
		FROM eventstore.projections WHERE name = 'p$n'")
	check "bench.rm_$n" || secs=0
	echo "   parallel => $n, workers: $secs s ($(rate "$EVENTS" "$secs") events/s; load average $(loadavg))"
	W_SECS[$n]="${W_SECS[$n]:-} $secs"
}
# --- (g) driven by run_projection --------------------------------------------
# The workers would share the work: they serve no database while these
# rounds run (pg_eventstore.databases = '', a reload).
session_round() {
	local n=$1 t0 t1 k pids=()
	prepare "$n"
	psql_run -o /dev/null -c "SELECT eventstore.rebuild_projection('p$n')"
	t0=$EPOCHREALTIME
	for ((k = 0; k < n; k++)); do
		psql_run -o /dev/null -v chunk="$CHUNK" <<EOF &
SET pg_eventstore.batch_size = $BATCH_SIZE;
CREATE PROCEDURE pg_temp.replay(name text, chunk bigint)
LANGUAGE plpgsql AS \$\$
BEGIN
	-- calls of max_events => chunk, each its own transaction, until one
	-- finds nothing left to do
	WHILE eventstore.run_projection(name, NULL, chunk) > 0 LOOP
		COMMIT;
	END LOOP;
END \$\$;
CALL pg_temp.replay('p$n', :chunk);
EOF
		pids+=($!)
	done
	for k in "${pids[@]}"; do wait "$k" || ANY_FAILED=1; done
	# the join, when both sessions finished before seeing the other done
	psql_run -o /dev/null -c "SELECT eventstore.run_projection('p$n')"
	t1=$EPOCHREALTIME
	secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
	[ "$(psql_value -c "SELECT status FROM eventstore.projections WHERE name = 'p$n'")" = active ] ||
		{ echo "   p$n is not active after run_projection" >&2; ANY_FAILED=1; }
	check "bench.rm_$n" || secs=0
	echo "   parallel => $n, $n session(s) of run_projection(max_events => $CHUNK) calls: $secs s ($(rate "$EVENTS" "$secs") events/s; load average $(loadavg))"
	R_SECS[$n]="${R_SECS[$n]:-} $secs"
}

echo "== (g) replays driven by the workers, $ROUNDS round(s); load average $(loadavg)"
for ((round = 1; round <= ROUNDS; round++)); do
	if [ $((round % 2)) -eq 1 ]; then worker_round 1; worker_round 2
	else worker_round 2; worker_round 1; fi
done
psql_run -o /dev/null -c "ALTER SYSTEM SET pg_eventstore.databases = ''" -c 'SELECT pg_reload_conf()'
sleep 2
[ "$(psql_value -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_eventstore worker'")" = 0 ] ||
	{ echo "   the workers did not stop" >&2; ANY_FAILED=1; }
echo "== (g) replays driven by run_projection, $ROUNDS round(s)"
for ((round = 1; round <= ROUNDS; round++)); do
	if [ $((round % 2)) -eq 1 ]; then session_round 1; session_round 2
	else session_round 2; session_round 1; fi
done

# shellcheck disable=SC2086
W1=$(median ${W_SECS[1]}) W2=$(median ${W_SECS[2]}) S1=$(median ${R_SECS[1]}) S2=$(median ${R_SECS[2]})
speedup() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }'; }
WX=$(speedup "$W1" "$W2")
SX=$(speedup "$S1" "$S2")
verdict() { awk -v x="$1" 'BEGIN { print (x >= 1.6) ? "ok" : "below target" }'; }

echo
echo "Parallel replays on one log of $(fmt "$EVENTS") events over $(fmt "$STREAMS") streams; read model: per stream, count and sum of amounts (a per-event PL/pgSQL upsert); batch_size $(fmt "$BATCH_SIZE"); medians of $ROUNDS round(s)."
echo
echo "| (g) replay from the start, to \`active\` | parallel => 1: s | events/s | parallel => 2: s | events/s | speed-up | target |"
echo "|---|---:|---:|---:|---:|---:|---|"
printf '| the workers (max_workers = 2) | %s | %s | %s | %s | %s x | >= 1.6 x: %s |\n' \
	"$W1" "$(fmt "$(rate "$EVENTS" "$W1")")" "$W2" "$(fmt "$(rate "$EVENTS" "$W2")")" "$WX" "$(verdict "$WX")"
printf '| `run_projection(max_events => %s)` calls, each its own transaction: 1 session against 2 at once | %s | %s | %s | %s | %s x | >= 1.6 x: %s |\n' \
	"$(fmt "$CHUNK")" "$S1" "$(fmt "$(rate "$EVENTS" "$S1")")" "$S2" "$(fmt "$(rate "$EVENTS" "$S2")")" "$SX" "$(verdict "$SX")"
echo
ELAPSED=$(($(date +%s) - START_TIME))
echo "$(bench_machine); load average at the end $(loadavg); total run time ${ELAPSED} s"

status=0
if [ "$ANY_FAILED" -ne 0 ]; then
	echo "FAILED: a read model was wrong or a run failed (see above)" >&2
	status=1
elif [[ "$(verdict "$WX") $(verdict "$SX")" == *"below target"* ]]; then
	echo "note: the target is missed" >&2
	[ "${PAR_STRICT:-0}" != 1 ] || status=3
fi
exit $status
