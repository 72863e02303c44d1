#!/usr/bin/env bash
# Benchmark projections on one log, in one run, on a private PostgreSQL 15
# cluster; prints a markdown table.  See test/bench/README.md.
#
#   test/bench/projections.sh [--quick]
#
#   (a) the set-based limit: INSERT ... SELECT ... GROUP BY stream_id over the
#       whole log into an empty read model
#   (b) run_projection over the whole log, a per-event PL/pgSQL upsert handler
#   (c) the same with a batch handler (one set-based upsert per batch), for
#       each pg_eventstore.batch_size in PROJ_BATCH_SIZES
#   (d) a client-side projector (python3 + psycopg 3): read_all pages of 100,
#       one upsert round trip per event, store_checkpoint in the page's
#       transaction; over a prefix of the log
#   (e) single-event appends (pgbench) with and without an inline no-op
#       projection on the appended type, in alternating rounds
#   (f) a rebuild with backfill: rebuild_projection, then run_projection to
#       active, of a projection whose backfill statement is (a)'s query over
#       eventstore.backfill_events() (its types the log's one type, as (c);
#       and every type)
# Every read model is checked against the set-based answer.
#
# Environment: PROJ_EVENTS (log size, default 1000000), PROJ_STREAMS (10000),
# PROJ_LOAD_BATCH (events per append_to_stream call of the bulk load, 10),
# PROJ_SET_ROUNDS (runs of (a), median kept, 3), PROJ_BATCH_SIZE (batch_size
# of (b), 1000), PROJ_BATCH_SIZES (of (c), 1000,10000,100000),
# PROJ_CLIENT_EVENTS (prefix (d) projects, 100000), PROJ_APPEND_CLIENTS (4),
# PROJ_APPEND_SECONDS (per pgbench run, 5), PROJ_APPEND_ROUNDS (rounds of
# both states, 6), PROJ_APPEND_SYNC (synchronous_commit of the appends, off),
# PROJ_PORT (5491), PROJ_WORKDIR (the root's work copy,
# /tmp/pg_eventstore-projbench), PROJ_KEEP=1 (keep the cluster directory),
# PROJ_STRICT=1 (exit 3 when a target is missed), PROJ_TIME_LIMIT (seconds
# after the build before a watchdog stops the run, 1500), PROJ_PYTHON
# (/usr/bin/python3), PROJ_ONLY (the scenarios to run besides (a), of
# b,c,d,e,f; all of them by default).  --quick: 200,000 events, 20,000 for (d), 3 rounds of
# 3 s for (e).
#
# Exit status: 0 when every read model matched; 1 when one did not or a run
# failed; 3 with PROJ_STRICT=1 when a target is missed; 2 on a set-up
# error; 143 when stopped by the watchdog or SIGTERM.
set -euo pipefail
START_TIME=$(date +%s)
cd "$(dirname "$0")/../.."
. scripts/common.sh

if [ "${1:-}" = --quick ]; then
	: "${PROJ_EVENTS:=200000}" "${PROJ_CLIENT_EVENTS:=20000}"
	: "${PROJ_APPEND_SECONDS:=3}" "${PROJ_APPEND_ROUNDS:=3}" "${PROJ_SET_ROUNDS:=1}"
	shift
fi
case ${1:-} in
	'') ;;
	-h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
	*) echo "unknown option: $1 (try --help)" >&2; exit 2 ;;
esac

EVENTS=${PROJ_EVENTS:-1000000}
STREAMS=${PROJ_STREAMS:-10000}
LOAD_BATCH=${PROJ_LOAD_BATCH:-10}
SET_ROUNDS=${PROJ_SET_ROUNDS:-3}
BATCH_SIZE_B=${PROJ_BATCH_SIZE:-1000}
BATCH_SIZES=${PROJ_BATCH_SIZES:-1000,10000,100000}
CLIENT_EVENTS=${PROJ_CLIENT_EVENTS:-100000}
CHUNK=${PROJ_CHUNK:-100000}
APPEND_CLIENTS=${PROJ_APPEND_CLIENTS:-4}
APPEND_SECONDS=${PROJ_APPEND_SECONDS:-3}
APPEND_ROUNDS=${PROJ_APPEND_ROUNDS:-10}
LOOP_APPENDS=${PROJ_LOOP_APPENDS:-20000}
LOOP_ROUNDS=${PROJ_LOOP_ROUNDS:-10}
APPEND_SYNC=${PROJ_APPEND_SYNC:-off}
PORT=${PROJ_PORT:-5491}
PYTHON=${PROJ_PYTHON:-/usr/bin/python3}
TIME_LIMIT=${PROJ_TIME_LIMIT:-1500}
PAGE=100
ONLY=${PROJ_ONLY:-b,c,d,e,f}
want() { [[ ",$ONLY," == *",$1,"* ]]; }

for v in "$EVENTS" "$STREAMS" "$LOAD_BATCH" "$SET_ROUNDS" "$BATCH_SIZE_B" "$CLIENT_EVENTS" "$CHUNK" \
	"$APPEND_CLIENTS" "$APPEND_SECONDS" "$APPEND_ROUNDS" "$LOOP_APPENDS" "$LOOP_ROUNDS" "$PORT" "$TIME_LIMIT" ${BATCH_SIZES//,/ }; do
	[[ $v =~ ^[1-9][0-9]*$ ]] || { echo "not a positive integer: $v" >&2; exit 2; }
done
PER_STREAM=$((EVENTS / STREAMS))
[ $((PER_STREAM * STREAMS)) -eq "$EVENTS" ] && [ $((PER_STREAM % LOAD_BATCH)) -eq 0 ] ||
	{ echo "PROJ_EVENTS must be PROJ_STREAMS x a multiple of PROJ_LOAD_BATCH" >&2; exit 2; }
[ "$CLIENT_EVENTS" -le "$EVENTS" ] && [ $((CLIENT_EVENTS % PAGE)) -eq 0 ] ||
	{ echo "PROJ_CLIENT_EVENTS must be a multiple of $PAGE, at most PROJ_EVENTS" >&2; exit 2; }
[[ $APPEND_SYNC =~ ^(on|off)$ ]] || { echo "PROJ_APPEND_SYNC is on or off" >&2; exit 2; }

. test/bench/cluster.sh
bench_prepare_cluster projbench "${PROJ_KEEP:-0}" "${PROJ_WORKDIR:-/tmp/pg_eventstore-projbench}" "$TIME_LIMIT" "$PYTHON"
# As test/bench/run.sh: durable commits (fsync and synchronous_commit on),
# checkpoints kept out of the measurements.
bench_configure "pg_eventstore projections benchmark" pg_eventstore <<EOF
work_mem = 64MB   # over the shared 16MB
# Explicit VACUUMs only: an autovacuum of the log or of a read model would
# land in the middle of some measurement.
autovacuum = off
# No background workers: run_projection alone applies the projections, so
# what is timed is its work (a worker would take batches of a rebuilding
# projection as soon as it is created).
pg_eventstore.databases = ''
EOF
bench_start_cluster

psql_run() {
	timeout 900 $RUN psql -X -q -v ON_ERROR_STOP=1 -h "$CLUSTER" -p "$PORT" -d postgres "$@"
}
psql_value() { psql_run -At "$@"; }

echo "== creating the extension and the read models"
psql_run -o /dev/null <<'EOF'
CREATE EXTENSION pg_eventstore;
CREATE SCHEMA bench;
-- One read model per scenario, the same shape: per stream, the number of
-- Deposited events and the sum of their amounts.
CREATE TABLE bench.rm_a (stream_id text PRIMARY KEY, events bigint NOT NULL,
						 amount numeric NOT NULL);
CREATE TABLE bench.rm_b (LIKE bench.rm_a INCLUDING ALL);
CREATE TABLE bench.rm_c (LIKE bench.rm_a INCLUDING ALL);
CREATE TABLE bench.rm_d (LIKE bench.rm_a INCLUDING ALL);
CREATE TABLE bench.rm_f (LIKE bench.rm_a INCLUDING ALL);
CREATE TABLE bench.rm_g (LIKE bench.rm_a INCLUDING ALL);

-- (b) one event at a time: one upsert per event.
CREATE FUNCTION bench.apply_one(e eventstore.events) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO bench.rm_b AS r (stream_id, events, amount)
	VALUES (e.stream_id, 1, (e.data->>'amount')::numeric)
	ON CONFLICT (stream_id) DO UPDATE
	SET events = r.events + 1, amount = r.amount + excluded.amount;
END
$$;

-- (c) a batch at a time: one set-based upsert per batch.
CREATE FUNCTION bench.apply_batch(es eventstore.events[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO bench.rm_c AS r (stream_id, events, amount)
	SELECT e.stream_id, count(*), sum((e.data->>'amount')::numeric)
	FROM unnest(es) e
	GROUP BY e.stream_id
	ON CONFLICT (stream_id) DO UPDATE
	SET events = r.events + excluded.events, amount = r.amount + excluded.amount;
END
$$;

-- (f) the batch handler of (c), for what follows a backfill: on rm_f, rm_g.
CREATE FUNCTION bench.apply_batch_to(rm regclass, es eventstore.events[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE format('INSERT INTO %s AS r (stream_id, events, amount)'
				   ' SELECT e.stream_id, count(*), sum((e.data->>''amount'')::numeric)'
				   ' FROM unnest($1) e GROUP BY e.stream_id'
				   ' ON CONFLICT (stream_id) DO UPDATE'
				   ' SET events = r.events + excluded.events, amount = r.amount + excluded.amount', rm)
	USING es;
END
$$;
CREATE FUNCTION bench.apply_f(es eventstore.events[]) RETURNS void
LANGUAGE sql AS $$ SELECT bench.apply_batch_to('bench.rm_f', es) $$;
CREATE FUNCTION bench.apply_g(es eventstore.events[]) RETURNS void
LANGUAGE sql AS $$ SELECT bench.apply_batch_to('bench.rm_g', es) $$;

-- (e) an inline projection that does nothing.
CREATE FUNCTION bench.noop(e eventstore.events) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	NULL;
END
$$;

-- A read model equal to the set-based one: no stream missing, extra or off.
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

# --- the log -------------------------------------------------------------
# PROJ_EVENTS events of type Deposited, {"amount": <0.00 .. 999.99>}, over
# PROJ_STREAMS streams: in rounds, each round appending PROJ_LOAD_BATCH
# events to every stream (append_to_stream, one call per stream), so that a
# stream's events are spread over the log as in real life.  Each round is
# split among one psql session per core.
bench_load_deposits "$STREAMS" "$PER_STREAM" "$LOAD_BATCH"
read -r N_EVENTS N_STREAMS LOG_MB <<<"$(psql_value -F ' ' -c "
	SELECT (SELECT count(*) FROM eventstore.events), (SELECT count(*) FROM eventstore.streams),
		   pg_total_relation_size('eventstore.events') / 1048576")"
[ "$N_EVENTS" -eq "$EVENTS" ] && [ "$N_STREAMS" -eq "$STREAMS" ] ||
	{ echo "the log has $N_EVENTS events over $N_STREAMS streams" >&2; exit 2; }
echo "   loaded in $LOAD_SECONDS s ($(awk -v n="$EVENTS" -v s="$LOAD_SECONDS" 'BEGIN { printf "%.0f", n / s }') events/s); eventstore.events with its indexes: $LOG_MB MB"

trap - ERR
ANY_FAILED=0
ROWS=()
declare -A RATE
RATE[b]=0 RATE[b2]=0 RATE[d]=0
B_TARGET=ok E_TARGET=ok L_TARGET=ok L_CPU_TARGET=ok F_TARGET=ok

# timed <sql ...>: run the statements in one session (autocommit: each its
# own transaction, commit included) and print the seconds they took, then
# the value of the last query when it sets :result (\gset).
timed() {
	psql_value -v ON_ERROR_STOP=1 <<EOF
\set result ''
SELECT extract(epoch FROM clock_timestamp()) AS t0 \gset
$*
SELECT round((extract(epoch FROM clock_timestamp()) - :t0)::numeric, 3) || ' ' || :'result';
EOF
}

# check <read model> <expected>: sets VERDICT; a difference fails the
# benchmark.
check() {
	local diff
	diff=$(psql_value -c "SELECT bench.differences('$1', '$2')") || diff=error
	if [ "$diff" = 0 ]; then
		VERDICT=ok
	else
		echo "   $1 differs from $2 on $diff stream(s)" >&2
		ANY_FAILED=1
		VERDICT=WRONG
	fi
}

rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", (s > 0) ? n / s : 0 }'; }
fmt() { sed ':a;s/\B[0-9]\{3\}\>/,&/;ta' <<<"$1"; }

median() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
		END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
			  print (m == int(m) && m > 100) ? m : sprintf("%.3f", m) }'
}

# --- (a) the set-based limit -----------------------------------------------
# With the default settings (PostgreSQL may scan in parallel), and in one
# process (max_parallel_workers_per_gather = 0), as run_projection works.
set_based() {
	local label=$1 setting=$2 i secs plan
	local -a runs=()
	echo "== (a) set-based, $label: INSERT ... SELECT ... GROUP BY stream_id, $SET_ROUNDS run(s)"
	for ((i = 1; i <= SET_ROUNDS; i++)); do
		psql_run -c 'TRUNCATE bench.rm_a' -c CHECKPOINT
		read -r secs _ <<<"$(timed "$setting
INSERT INTO bench.rm_a
SELECT stream_id, count(*), sum((data->>'amount')::numeric)
FROM eventstore.events GROUP BY stream_id;")"
		echo "   run $i: $secs s, $(rate "$EVENTS" "$secs") events/s"
		runs+=("$secs")
	done
	plan=$(psql_value -c "$setting" -c "EXPLAIN SELECT stream_id, count(*), sum((data->>'amount')::numeric)
		FROM eventstore.events GROUP BY stream_id" | sed -n 's/.*Workers Planned: \([0-9]*\).*/parallel, workers planned: \1/p')
	A_SECS=$(median "${runs[@]}")
	A_RATE=$(rate "$EVENTS" "$A_SECS")
	ROWS+=("| (a) set-based \`INSERT ... SELECT ... GROUP BY stream_id\`, $label (${plan:-one process}; median of $SET_ROUNDS) | $(fmt "$EVENTS") | $A_SECS | $(fmt "$A_RATE") | the limit | reference |")
}
set_based "default settings" ""
RATE[a]=$A_RATE
set_based "max_parallel_workers_per_gather = 0" "SET max_parallel_workers_per_gather = 0;"
RATE[a1]=$A_RATE

if want b; then
# --- (b) per-event handler -----------------------------------------------
echo "== (b) run_projection, per-event PL/pgSQL upsert, batch_size $BATCH_SIZE_B"
psql_run -c "SELECT eventstore.create_projection('per_event', 'bench.apply_one', ARRAY['Deposited'])" \
	-c CHECKPOINT >/dev/null
read -r secs applied <<<"$(timed "SET pg_eventstore.batch_size = $BATCH_SIZE_B;
SELECT eventstore.run_projection('per_event') AS result \gset")"
check bench.rm_b bench.rm_a; verdict=$VERDICT
[ "$applied" = "$EVENTS" ] || { echo "   run_projection applied $applied events, not $EVENTS" >&2; verdict=WRONG; ANY_FAILED=1; }
RATE[b]=$(rate "$EVENTS" "$secs")
echo "   $secs s, ${RATE[b]} events/s, read model $verdict"
B_SECS=$secs
B_VERDICT=$verdict

# (b) again, in calls of run_projection(max_events => PROJ_CHUNK), each its
# own transaction (as a worker commits each batch): the read model's rows
# do not pile up versions of one open transaction.
echo "== (b) again in calls of max_events $CHUNK, one transaction each"
psql_run -c "SELECT eventstore.rebuild_projection('per_event')" -c 'TRUNCATE bench.rm_b' \
	-c 'VACUUM bench.rm_b' -c CHECKPOINT >/dev/null
calls=$(( (EVENTS + CHUNK - 1) / CHUNK + 1 ))
read -r secs applied <<<"$(timed "SET pg_eventstore.batch_size = $BATCH_SIZE_B;
SELECT 0 AS result \gset
$(for ((k = 0; k < calls; k++)); do
	echo "SELECT :result + eventstore.run_projection('per_event', NULL, $CHUNK) AS result \gset"
done)")"
check bench.rm_b bench.rm_a; verdict=$VERDICT
[ "$applied" = "$EVENTS" ] || { echo "   run_projection applied $applied events, not $EVENTS" >&2; verdict=WRONG; ANY_FAILED=1; }
RATE[b2]=$(rate "$EVENTS" "$secs")
echo "   $secs s, ${RATE[b2]} events/s, read model $verdict"
B2_SECS=$secs
B2_VERDICT=$verdict

fi

C_ROWS=()
C_NEEDED=
if want c; then
# --- (c) batch handler, several batch sizes --------------------------------
psql_run -c "SELECT eventstore.create_projection('batched', 'bench.apply_batch', ARRAY['Deposited'],
	on_reset => 'TRUNCATE bench.rm_c')" >/dev/null
C_BEST=0
for bs in ${BATCH_SIZES//,/ }; do
	echo "== (c) run_projection, batch handler, batch_size $bs"
	psql_run -c "SELECT eventstore.rebuild_projection('batched')" -c CHECKPOINT >/dev/null
	read -r secs applied <<<"$(timed "SET pg_eventstore.batch_size = $bs;
SELECT eventstore.run_projection('batched') AS result \gset")"
	check bench.rm_c bench.rm_a; verdict=$VERDICT
	[ "$applied" = "$EVENTS" ] || { echo "   run_projection applied $applied events, not $EVENTS" >&2; verdict=WRONG; ANY_FAILED=1; }
	r=$(rate "$EVENTS" "$secs")
	echo "   $secs s, $r events/s, read model $verdict"
	ratio=$(awk -v x="$r" -v a="${RATE[a]}" 'BEGIN { printf "%.2f", x / a }')
	ratio1=$(awk -v x="$r" -v a="${RATE[a1]}" 'BEGIN { printf "%.2f", x / a }')
	target=$(awk -v x="$ratio" 'BEGIN { print (x >= 0.5) ? "ok" : "below target" }')
	[ "$r" -le "$C_BEST" ] || C_BEST=$r
	[ -n "$C_NEEDED" ] || [ "$target" != ok ] || C_NEEDED=$bs
	C_ROWS+=("| (c) \`run_projection\`, batch handler (\`unnest\` + one upsert), batch_size $(fmt "$bs") | $(fmt "$EVENTS") | $secs | $(fmt "$r") | $ratio x (a); $ratio1 x (a) in one process | >= 0.5 x (a): $target; read model $verdict |")
done
RATE[c]=$C_BEST

fi

if want d; then
# --- (d) client-side projector ---------------------------------------------
echo "== (d) client-side projector (python3 + psycopg $("$PYTHON" -c 'import psycopg; print(psycopg.__version__)')), first $CLIENT_EVENTS events"
psql_run -c CHECKPOINT >/dev/null
D_OUT=$(timeout 900 $RUN "$PYTHON" "$WORKDIR/test/bench/client_projector.py" --host "$CLUSTER" \
	--port "$PORT" --events "$CLIENT_EVENTS" --page "$PAGE") || D_OUT="0 0 0"
read -r d_applied d_secs _ <<<"$D_OUT"
# its answer: the set-based one over the same prefix of the log, in log order
psql_run -o /dev/null <<EOF
CREATE TABLE bench.rm_d_expected (LIKE bench.rm_a INCLUDING ALL);
INSERT INTO bench.rm_d_expected
SELECT stream_id, count(*), sum((data->>'amount')::numeric)
FROM eventstore.read_all(NULL, $CLIENT_EVENTS) GROUP BY stream_id;
EOF
check bench.rm_d bench.rm_d_expected; verdict=$VERDICT
[ "$d_applied" = "$CLIENT_EVENTS" ] || { echo "   the client projector applied $d_applied events, not $CLIENT_EVENTS" >&2; verdict=WRONG; ANY_FAILED=1; }
RATE[d]=$(rate "$d_applied" "$d_secs")
echo "   $d_secs s, ${RATE[d]} events/s, read model $verdict"

fi
if want b; then
B_RATIO=$(awk -v b="${RATE[b]}" -v d="${RATE[d]}" 'BEGIN { printf "%.1f", (d > 0) ? b / d : 0 }')
B_TARGET=$(awk -v x="$B_RATIO" 'BEGIN { print (x >= 3) ? "ok" : "below target" }')
ROWS+=("| (b) \`run_projection\`, per-event PL/pgSQL upsert, batch_size $(fmt "$BATCH_SIZE_B") | $(fmt "$EVENTS") | $B_SECS | $(fmt "${RATE[b]}") | $B_RATIO x (d) | >= 3 x (d): $B_TARGET; read model $B_VERDICT |")
B2_RATIO=$(awk -v b="${RATE[b2]}" -v d="${RATE[d]}" 'BEGIN { printf "%.1f", (d > 0) ? b / d : 0 }')
ROWS+=("| (b) the same in $calls calls of \`run_projection(max_events => $(fmt "$CHUNK"))\`, each its own transaction | $(fmt "$EVENTS") | $B2_SECS | $(fmt "${RATE[b2]}") | $B2_RATIO x (d) | read model $B2_VERDICT |")
fi
ROWS+=("${C_ROWS[@]}")
if want d; then
ROWS+=("| (d) client projector: \`read_all\` pages of $PAGE, one upsert round trip per event, \`store_checkpoint\` per page (python3, psycopg) | $(fmt "$d_applied") (a prefix) | $d_secs | $(fmt "${RATE[d]}") | 1 | read model $verdict |")

fi

# --- (f) a rebuild with backfill ----------------------------------------
# The batch handler of (c) behind a backfill statement that is (a)'s query
# over eventstore.backfill_events(): a rebuild runs on_reset and the
# statement, then the handler has nothing left.  Timed from
# rebuild_projection to active (one run_projection), median of
# PROJ_SET_ROUNDS; once with the projection's types the log's one type
# (ARRAY['Deposited'], as (b) and (c): backfill_events() filters by type),
# once taking every type.
backfill_rebuild() {
	local name=$1 types=$2 rm=$3 handler=$4 label=$5 i secs applied status ratio ratio1 target verdict
	local -a runs=()
	echo "== (f) rebuild with backfill, $label, $SET_ROUNDS run(s)"
	psql_run -o /dev/null -c "SELECT eventstore.create_projection('$name', '$handler', $types,
		on_reset => 'TRUNCATE $rm', backfill => \$b\$INSERT INTO $rm
		SELECT stream_id, count(*), sum((data->>'amount')::numeric)
		FROM eventstore.backfill_events() GROUP BY stream_id\$b\$)"
	for ((i = 1; i <= SET_ROUNDS; i++)); do
		psql_run -c "SELECT eventstore.rebuild_projection('$name')" -c CHECKPOINT >/dev/null
		read -r secs applied <<<"$(timed "SELECT eventstore.run_projection('$name') AS result \gset")"
		echo "   run $i: $secs s, $(rate "$EVENTS" "$secs") events/s"
		runs+=("$secs")
	done
	check "$rm" bench.rm_a; verdict=$VERDICT
	status=$(psql_value -c "SELECT status || ' ' || phase FROM eventstore.projection_status WHERE name = '$name'")
	[ "$status" = "active live" ] || { echo "   $name is $status, not active" >&2; verdict=WRONG; ANY_FAILED=1; }
	secs=$(median "${runs[@]}")
	F_RATE=$(rate "$EVENTS" "$secs")
	ratio=$(awk -v x="$F_RATE" -v a="${RATE[a]}" 'BEGIN { printf "%.2f", x / a }')
	ratio1=$(awk -v x="$F_RATE" -v a="${RATE[a1]}" 'BEGIN { printf "%.2f", x / a }')
	target=$(awk -v x="$ratio" 'BEGIN { print (x >= 0.8) ? "ok" : "below target" }')
	[ "$target" = ok ] || F_TARGET="below target"
	ROWS+=("| (f) \`rebuild_projection\` + \`run_projection\` to active, \`backfill\` = (a)'s query over \`backfill_events()\`, $label (median of $SET_ROUNDS) | $(fmt "$EVENTS") | $secs | $(fmt "$F_RATE") | $ratio x (a); $ratio1 x (a) in one process | >= 0.8 x (a): $target; read model $verdict, $status |")
}
if want f; then
	# where (f)'s time goes: (a)'s query reading the log in log order (the
	# order backfill_events() guarantees: the log-order index), and in log
	# order filtered by type, with nothing of pg_eventstore in between
	for variant in "log order" "log order, event_type = 'Deposited'"; do
		filter=
		[ "$variant" = "log order" ] || filter="AND event_type = ANY (ARRAY['Deposited'])"
		runs=()
		echo "== (f) reference: (a)'s query over the log in $variant, $SET_ROUNDS run(s)"
		for ((i = 1; i <= SET_ROUNDS; i++)); do
			psql_run -c 'TRUNCATE bench.rm_g' -c CHECKPOINT
			read -r secs _ <<<"$(timed "INSERT INTO bench.rm_g
SELECT stream_id, count(*), sum((data->>'amount')::numeric)
FROM (SELECT * FROM eventstore.events WHERE transaction_id < '18446744073709551615' $filter
	  ORDER BY transaction_id, global_position) e GROUP BY stream_id;")"
			echo "   run $i: $secs s, $(rate "$EVENTS" "$secs") events/s"
			runs+=("$secs")
		done
		secs=$(median "${runs[@]}")
		r=$(rate "$EVENTS" "$secs")
		ROWS+=("| (f) reference: (a)'s query over the log read in $variant (as \`backfill_events()\` reads it), by hand (median of $SET_ROUNDS) | $(fmt "$EVENTS") | $secs | $(fmt "$r") | $(awk -v x="$r" -v a="${RATE[a]}" 'BEGIN { printf "%.2f", x / a }') x (a) | where (f)'s time goes |")
	done
	psql_run -c 'TRUNCATE bench.rm_g' >/dev/null
	backfill_rebuild backfilled "ARRAY['Deposited']" bench.rm_f bench.apply_f "event_types ARRAY['Deposited']"
	backfill_rebuild backfilled_all NULL bench.rm_g bench.apply_g "every event type"
fi

if want e; then
# --- (e) inline coordination cost ------------------------------------------
# Single-event appends to random existing streams, with and without an
# inline no-op projection on the appended type, in alternating rounds.  The
# no-op projection (on type Pinged) stays registered all along; a round
# "with" appends Pinged events, a round "without" appends Noted events,
# which no projection takes (the async projections above take Deposited
# only, so neither kind wakes a worker).  Registering and dropping the
# projection between rounds instead would replay the log into it each time.
#  1. pgbench, PROJ_APPEND_CLIENTS clients, one append per transaction;
#  2. a server-side loop (a procedure committing after each append, one
#     session): no client round trips, less noise; the same per-append work.
echo "== (e) appends: $APPEND_CLIENTS clients, $APPEND_ROUNDS rounds of ${APPEND_SECONDS} s per state, synchronous_commit = $APPEND_SYNC"
psql_run -o /dev/null <<EOF
SELECT eventstore.create_projection('noop', 'bench.noop', ARRAY['Pinged'], 'inline');
SELECT eventstore.run_projection('noop');
CREATE PROCEDURE bench.append_loop(n integer, type text, INOUT seconds float8 DEFAULT NULL)
LANGUAGE plpgsql AS \$\$
DECLARE
	t0 timestamptz := clock_timestamp();
BEGIN
	FOR i IN 1 .. n LOOP
		PERFORM eventstore.append_event('acct-' || (1 + (i * 7919) % $STREAMS), type,
										jsonb_build_object('amount', (i % 100000) * 0.01));
		COMMIT;
	END LOOP;
	seconds := extract(epoch FROM clock_timestamp() - t0);
END
\$\$;
EOF
[ "$(psql_value -c "SELECT status || ' ' || mode FROM eventstore.projections WHERE name = 'noop'")" = "active inline" ] ||
	{ echo "   the no-op projection is not active" >&2; ANY_FAILED=1; }
SCRIPT=$OUT/append.sql
$RUN tee "$SCRIPT" >/dev/null <<EOF
\set s random(1, $STREAMS)
\set a random(0, 99999)
SELECT eventstore.append_event('acct-' || :s, :type, jsonb_build_object('amount', :a * 0.01));
EOF
RUN_NO=0
append_run() {
	local out rc=0
	RUN_NO=$((RUN_NO + 1))
	out=$OUT/append-$RUN_NO-$1.txt
	timeout $((APPEND_SECONDS + 60)) $RUN env PGOPTIONS="-c synchronous_commit=$APPEND_SYNC" \
		pgbench -n -M prepared -T "$APPEND_SECONDS" -c "$APPEND_CLIENTS" -j 2 \
		-h "$CLUSTER" -p "$PORT" -f "$SCRIPT" -D type="$2" postgres >"$out" 2>&1 || rc=$?
	TPS=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$out")
	if [ "$rc" -ne 0 ] || [ -z "$TPS" ] || grep -q 'aborted in command' "$out"; then
		echo "   pgbench failed (exit status $rc): $out" >&2
		tail -5 "$out" | sed 's/^/   | /' >&2
		ANY_FAILED=1
		TPS=0
	fi
}
us() { awk -v t="$1" 'BEGIN { printf "%.1f", (t > 0) ? 1e6 / t : 0 }'; }
spread() { printf '%s\n' "$@" | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.1f .. %.1f", lo, hi }'; }
psql_run -c CHECKPOINT >/dev/null
append_run warmup Noted
append_run warmup Pinged
without=() with=() diffs=()
for ((round = 1; round <= APPEND_ROUNDS; round++)); do
	order="without with"
	[ $((round % 2)) -eq 1 ] || order="with without"
	for state in $order; do
		if [ "$state" = with ]; then append_run with Pinged; with+=("$TPS")
		else append_run without Noted; without+=("$TPS"); fi
		printf '   round %2d, %-8s %8.1f tps, %6.1f µs per append\n' "$round" "$state:" "$TPS" "$(us "$TPS")"
	done
	diffs+=("$(awk -v w="${with[-1]}" -v o="${without[-1]}" 'BEGIN { printf "%.2f", (w > 0 && o > 0) ? 1e6 / w - 1e6 / o : 0 }')")
done
E_WITHOUT=$(median "${without[@]}")
E_WITH=$(median "${with[@]}")
E_DIFF=$(median "${diffs[@]}")
E_SPREAD=$(spread "${diffs[@]}")
E_TARGET=$(awk -v x="$E_DIFF" 'BEGIN { print (x < 5) ? "ok" : "below target" }')

echo "== (e) server-side loop: $LOOP_ROUNDS rounds of $LOOP_APPENDS appends per state, one session"
timeout 900 $RUN "$PYTHON" "$WORKDIR/test/bench/append_loop.py" --host "$CLUSTER" --port "$PORT" \
	--appends "$LOOP_APPENDS" --rounds "$LOOP_ROUNDS" --synchronous-commit "$APPEND_SYNC" \
	>"$OUT/append_loop.txt" || { echo "   the server-side loop failed" >&2; ANY_FAILED=1; }
# per round: the with - without difference, in µs per append, wall and CPU
per_append() { awk -v n="$LOOP_APPENDS" -v c="$1" -v s="$2" '$2 == s { printf "%.2f\n", $c * 1e6 / n }' "$OUT/append_loop.txt"; }
loop_diffs() {
	awk -v n="$LOOP_APPENDS" -v c="$1" '{ v[$1, $2] = $c; r[$1] = 1 }
		END { for (k in r) if ((k, "with") in v && (k, "without") in v)
			printf "%.2f\n", (v[k, "with"] - v[k, "without"]) * 1e6 / n }' "$OUT/append_loop.txt"
}
awk -v n="$LOOP_APPENDS" '{ printf "   round %2d, %-8s %6.1f µs per append, %6.1f µs CPU\n", $1, $2 ":", $3 * 1e6 / n, $4 * 1e6 / n }' \
	"$OUT/append_loop.txt"
L_WITHOUT=$(median $(per_append 3 without))
L_WITH=$(median $(per_append 3 with))
L_CPU_WITHOUT=$(median $(per_append 4 without))
L_CPU_WITH=$(median $(per_append 4 with))
mapfile -t ldiffs < <(loop_diffs 3)
mapfile -t lcdiffs < <(loop_diffs 4)
[ ${#ldiffs[@]} -gt 0 ] || { ldiffs=(0); lcdiffs=(0); L_WITHOUT=1; L_WITH=1; L_CPU_WITHOUT=0; L_CPU_WITH=0; ANY_FAILED=1; }
L_DIFF=$(median "${ldiffs[@]}")
L_SPREAD=$(spread "${ldiffs[@]}")
L_CPU_DIFF=$(median "${lcdiffs[@]}")
L_CPU_SPREAD=$(spread "${lcdiffs[@]}")
L_TARGET=$(awk -v x="$L_DIFF" 'BEGIN { print (x < 5) ? "ok" : "below target" }')
L_CPU_TARGET=$(awk -v x="$L_CPU_DIFF" 'BEGIN { print (x < 5) ? "ok" : "below target" }')

PINGED=$(psql_value -c "SELECT count(*) FROM eventstore.events WHERE event_type = 'Pinged'")
SKIPS=$(psql_value -c "SELECT count(*) FROM eventstore.projection_skips")
[ "$SKIPS" = 0 ] || { echo "   $SKIPS skip rows recorded: an append did not apply the active no-op projection" >&2; ANY_FAILED=1; }

fi

# --- the table ----------------------------------------------------------
echo
echo "Projections on one log of $(fmt "$EVENTS") events over $(fmt "$STREAMS") streams ($LOG_MB MB with indexes; loaded in $LOAD_SECONDS s);" \
	"read model: per stream, count and sum of amounts."
echo
echo "| scenario | events | seconds | events/s | ratio | target, check |"
echo "|---|---:|---:|---:|---:|---|"
printf '%s\n' "${ROWS[@]}"
if want e; then
echo
echo "| (e) single-event \`append_event\`, synchronous_commit $APPEND_SYNC | appends/s without | with inline no-op | µs per append without | with | difference, µs: median (spread) | target |"
echo "|---|---:|---:|---:|---:|---:|---|"
printf '| pgbench, %d clients, %d alternating rounds of %d s per state | %.0f | %.0f | %s | %s | %.1f (%s) | < 5 µs: %s |\n' \
	"$APPEND_CLIENTS" "$APPEND_ROUNDS" "$APPEND_SECONDS" "$E_WITHOUT" "$E_WITH" \
	"$(us "$E_WITHOUT")" "$(us "$E_WITH")" "$E_DIFF" "$E_SPREAD" "$E_TARGET"
printf '| server-side loop (a procedure committing each append), one session, %d alternating rounds of %s appends per state: wall time | %.0f | %.0f | %.1f | %.1f | %.1f (%s) | < 5 µs: %s |\n' \
	"$LOOP_ROUNDS" "$(fmt "$LOOP_APPENDS")" "$(awk -v u="$L_WITHOUT" 'BEGIN { print 1e6 / u }')" \
	"$(awk -v u="$L_WITH" 'BEGIN { print 1e6 / u }')" "$L_WITHOUT" "$L_WITH" "$L_DIFF" "$L_SPREAD" "$L_TARGET"
printf '| the same loop: CPU time of its server process | | | %.1f | %.1f | %.1f (%s) | < 5 µs: %s |\n' \
	"$L_CPU_WITHOUT" "$L_CPU_WITH" "$L_CPU_DIFF" "$L_CPU_SPREAD" "$L_CPU_TARGET"
fi
echo
if ! want c; then
	:
elif [ -n "$C_NEEDED" ]; then
	echo "(c) reaches 0.5 x (a) from batch_size $(fmt "$C_NEEDED") (of ${BATCH_SIZES//,/, } tried)."
else
	echo "(c) does not reach 0.5 x (a) at any batch_size tried (${BATCH_SIZES//,/, })."
fi
ELAPSED=$(($(date +%s) - START_TIME))
echo "$(bench_machine); ${PINGED:-no} events appended in (e), ${SKIPS:-0} skips; total run time ${ELAPSED} s"

status=0
if [ "$ANY_FAILED" -ne 0 ]; then
	echo "FAILED: a read model was wrong or a run failed (see above)" >&2
	status=1
elif [[ "$B_TARGET $E_TARGET $L_TARGET $L_CPU_TARGET $F_TARGET" == *"below target"* ]] ||
	{ want c && [ -z "$C_NEEDED" ]; }; then
	echo "note: a target is missed" >&2
	[ "${PROJ_STRICT:-0}" != 1 ] || status=3
fi
exit $status
