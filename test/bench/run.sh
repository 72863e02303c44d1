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
# 240).
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

# Set-up errors exit 2, distinct from failed calls (1).
trap 'echo "== set-up failed (line $LINENO)" >&2; exit 2' ERR

# On the way out, whatever happens: stop the cluster, remove its directory.
STARTED=
CLUSTER=
WATCHDOG=
cleanup() {
	local rc=$?
	trap - ERR EXIT INT TERM
	[ -z "$WATCHDOG" ] || kill "$WATCHDOG" 2>/dev/null || true
	if [ -n "$STARTED" ]; then
		echo "== stopping the cluster"
		timeout 90 $RUN pg_ctl stop -D "$DATA" -m fast -w -t 60 >/dev/null 2>&1 ||
			timeout 30 $RUN pg_ctl stop -D "$DATA" -m immediate -w -t 20 >/dev/null 2>&1 || true
	fi
	if [ -z "$CLUSTER" ]; then
		:
	elif [ "${BENCH_KEEP:-0}" = 1 ]; then
		echo "== kept $CLUSTER"
	else
		rm -rf "$CLUSTER"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Which pg_eventstore is measured: the checkout's commit, and whether its
# sources differ from it.
REVISION=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -z "$(git status --porcelain -- src sql Makefile pg_eventstore.control 2>/dev/null)" ] ||
	REVISION="$REVISION with local changes"

install_dependencies
# A copy of its own, apart from the test scripts' copy.
export PG_EVENTSTORE_WORKDIR=${BENCH_WORKDIR:-/tmp/pg_eventstore-bench}
prepare_workdir bench
cd "$WORKDIR"

build_and_install

# Bounded in time whatever happens: every step has its own timeout, and
# from here on a watchdog ends the run once it has taken half as long again
# as its pgbench runs plus four minutes (9 minutes with the defaults; the
# cluster is stopped on the way out).
TIME_LIMIT=${BENCH_TIME_LIMIT:-$((30 * ROUNDS * SECONDS_PER_RUN + 240))}
(
	trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
	sleep "$TIME_LIMIT" & sleeper=$!
	wait "$sleeper" && echo "== time limit of $TIME_LIMIT s reached, stopping" >&2 && kill -TERM $$
) &
WATCHDOG=$!

# The private cluster: data, unix socket, log and pgbench scripts in one
# directory that the server's user owns.  No TCP listener at all.
CLUSTER=$(mktemp -d "${TMPDIR:-/tmp}/pg_eventstore-bench-cluster.XXXXXX")
[ "$(id -u)" -ne 0 ] || chown postgres: "$CLUSTER"
chmod 700 "$CLUSTER"
DATA=$CLUSTER/data
LOG=$CLUSTER/server.log
SCRIPTS=$CLUSTER/scripts
OUT=$CLUSTER/out

echo "== starting a private PostgreSQL $PG_MAJOR cluster in $CLUSTER"
$RUN mkdir -p "$SCRIPTS" "$OUT"
$RUN initdb -D "$DATA" -A trust --encoding=UTF8 --locale=C >/dev/null
PRELOAD=pg_eventstore
[ "${BENCH_PGSS:-0}" != 1 ] || PRELOAD=pg_eventstore,pg_stat_statements
# For 2 cores and 24 GiB.  fsync and synchronous_commit stay at their
# defaults: every commit is durable, as in production.  The checkpoint
# settings keep checkpoints out of the runs: the writes are measured in the
# steady state between two checkpoints, after one CHECKPOINT and a warm-up
# run of each write scenario (right after a checkpoint, the first change of
# each page writes a full-page image, and the extension touches more pages:
# its streams rows).
$RUN tee -a "$DATA/postgresql.conf" >/dev/null <<EOF

# pg_eventstore benchmark
listen_addresses = ''
port = $PORT
unix_socket_directories = '$CLUSTER'
max_connections = 100
shared_preload_libraries = '$PRELOAD'
shared_buffers = 1GB
effective_cache_size = 16GB
work_mem = 16MB
maintenance_work_mem = 512MB
wal_buffers = 16MB
max_wal_size = 8GB
min_wal_size = 1GB
checkpoint_timeout = 30min
checkpoint_completion_target = 0.9
random_page_cost = 1.1
effective_io_concurrency = 200
log_line_prefix = '%m [%p] '
log_checkpoints = off
EOF
if [ "${BENCH_PGSS:-0}" = 1 ]; then
	echo "pg_stat_statements.track = 'all'" | $RUN tee -a "$DATA/postgresql.conf" >/dev/null
fi
$RUN pg_ctl start -D "$DATA" -l "$LOG" -w -t 60 >/dev/null
STARTED=1

psql_run() {
	timeout 300 $RUN psql -X -q -v ON_ERROR_STOP=1 -h "$CLUSTER" -p "$PORT" -d postgres "$@"
}

# The payloads, the same on both sides.
EVENT_DATA='{"sku": "A1", "qty": 2, "price": 1999}'
EVENT_META='{"correlation_id": "4f1c2a9e-6b7d-4c3e-9a51-0d2e8f7b6c10"}'
EVENT_JSON="{\"type\": \"ItemAdded\", \"data\": $EVENT_DATA, \"metadata\": $EVENT_META}"
batch_literal() {
	local n=$1 s="[" i
	for ((i = 0; i < n; i++)); do
		[ "$i" -eq 0 ] || s+=", "
		s+=$EVENT_JSON
	done
	printf '%s]' "$s"
}
BATCH10=$(batch_literal 10)
BATCH100=$(batch_literal 100)

echo "== creating the extension, the baseline table and the pre-filled data"
psql_run -o /dev/null <<EOF
CREATE EXTENSION pg_eventstore;
$([ "${BENCH_PGSS:-0}" != 1 ] || echo "CREATE EXTENSION pg_stat_statements;")

CREATE SCHEMA bench;
-- The baseline: the columns and unique keys of eventstore.events, filled by
-- plain INSERTs, with nothing else to do: the physical limit.  event_id is
-- time-ordered like the extension's own ids (a random v4 id would make the
-- baseline's unique index slower and flatter the extension).  Its position
-- sequence has the same cache (1) as eventstore.global_position_seq.
CREATE TABLE bench.baseline (
	global_position	bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	transaction_id	xid8 NOT NULL DEFAULT pg_current_xact_id(),
	stream_id		text NOT NULL,
	revision		bigint NOT NULL,
	event_id		uuid NOT NULL UNIQUE DEFAULT eventstore.uuid_v7(),
	event_type		text NOT NULL,
	data			jsonb NOT NULL,
	metadata		jsonb NOT NULL,
	created_at		timestamptz NOT NULL DEFAULT now(),
	UNIQUE (stream_id, revision)
);
-- A plain INSERT has no stream row to read its revision from.  Single-event
-- baseline inserts take theirs from a sequence: unique across all streams,
-- so unique within each stream, and increasing within a stream like real
-- revisions, so the (stream_id, revision) index sees the same insertion
-- pattern (random stream, then that stream's right edge).  Batches take one
-- number per batch and add the event's place in the batch.
CREATE SEQUENCE bench.revision_seq START 1000000;
CREATE SEQUENCE bench.batch_seq START 1000;

-- Scenarios 4 and 5 read 2,000 streams of 100 events, 200,000 events in all,
-- written in 10 transactions of 10 events per stream so that a stream's
-- events are spread over the table as in real life.  Same order, same
-- payloads, same revisions in the baseline.
$(for r in $(seq 0 9); do
	echo "SELECT count(eventstore.append_to_stream('r-' || s, '$BATCH10')) FROM generate_series(1, 2000) s;"
	echo "INSERT INTO bench.baseline (stream_id, revision, event_type, data, metadata)"
	echo "  SELECT 'r-' || s, $r * 10 + e.ord - 1, e.ev->>'type', e.ev->'data', e.ev->'metadata'"
	echo "  FROM generate_series(1, 2000) s, jsonb_array_elements('$BATCH10') WITH ORDINALITY AS e(ev, ord)"
	echo "  ORDER BY s, e.ord;"
done)

-- Scenarios 1 and 2 append to 10,000 existing streams each: steady state,
-- not stream creation.
SELECT count(eventstore.append_event(p || s, 'ItemAdded', '$EVENT_DATA', '$EVENT_META'))
FROM unnest(ARRAY['s1-', 's2-']) p, generate_series(1, 10000) s;
INSERT INTO bench.baseline (stream_id, revision, event_type, data, metadata)
SELECT p || s, 0, 'ItemAdded', '$EVENT_DATA', '$EVENT_META'
FROM unnest(ARRAY['s1-', 's2-']) p, generate_series(1, 10000) s;

-- Scenario 6: one checkpoint row per client on the baseline side (the
-- extension creates its own on a processor's first store).
CREATE TABLE bench.checkpoints (
	processor_id	text NOT NULL,
	partition		text NOT NULL,
	"position"		bigint,
	updated_at		timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (processor_id, partition)
) WITH (fillfactor = 25);
INSERT INTO bench.checkpoints (processor_id, partition, "position")
SELECT 'cp-' || c, 'default', 0 FROM generate_series(0, 15) c;

VACUUM (ANALYZE) eventstore.events, eventstore.streams, bench.baseline;
CHECKPOINT;
EOF

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

# --- the pgbench scripts ---------------------------------------------------
# Each pair does the same work; only the way differs.  pgbench runs them
# with -M prepared, so the JSON literals are parsed once, at prepare time,
# on both sides.
write_script() { $RUN tee "$SCRIPTS/$1.sql" >/dev/null; }

# 1. One event to a random one of 10,000 streams, any revision.
write_script s1_es <<EOF
\set s random(1, 10000)
SELECT eventstore.append_event('s1-' || :s, 'ItemAdded', '$EVENT_DATA', '$EVENT_META');
EOF
write_script s1_base <<EOF
\set s random(1, 10000)
INSERT INTO bench.baseline (stream_id, revision, event_type, data, metadata)
VALUES ('s1-' || :s, nextval('bench.revision_seq'), 'ItemAdded', '$EVENT_DATA', '$EVENT_META');
EOF

# 2. A batch of 100 events.  The extension gets them as a prebuilt JSON
# array (parsed once, at prepare time), which it validates and unpacks: that
# is part of what is measured.  The baseline inserts the same 100 rows built
# by generate_series from the same constants, the cheapest way there is
# (unpacking the array with jsonb_array_elements would cost it about 5%
# more).  Its ids are time-ordered too, made from one uuid_v7() per batch
# plus the row's number, as the extension draws its random bits once per
# batch (uuid_v7() on each row would cost the baseline about 10%).
write_script s2_es <<EOF
\set s random(1, 10000)
SELECT eventstore.append_to_stream('s2-' || :s, '$BATCH100');
EOF
write_script s2_base <<EOF
\set s random(1, 10000)
INSERT INTO bench.baseline (stream_id, revision, event_id, event_type, data, metadata)
SELECT 's2-' || :s, b.base * 100 + i, (b.id_prefix || lpad(to_hex(i), 4, '0'))::uuid,
       'ItemAdded', '$EVENT_DATA', '$EVENT_META'
FROM (SELECT nextval('bench.batch_seq') AS base,
             left(eventstore.uuid_v7()::text, 32) AS id_prefix) b,
     generate_series(0, 99) i;
EOF

# 3. Eight clients on 10 hot streams, new ones each run (:tag), so that
# concurrent first appends race to create them too.  Every call must
# succeed.  The baseline writes the same 10 stream ids.
write_script s3_es <<EOF
\set s random(1, 10)
SELECT eventstore.append_event('hot-' || :tag || '-' || :s, 'ItemAdded', '$EVENT_DATA', '$EVENT_META');
EOF
write_script s3_base <<EOF
\set s random(1, 10)
INSERT INTO bench.baseline (stream_id, revision, event_type, data, metadata)
VALUES ('hot-' || :tag || '-' || :s, nextval('bench.revision_seq'), 'ItemAdded', '$EVENT_DATA', '$EVENT_META');
EOF

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
# One pgbench run; sets TPS and FAILED.  A call failed when pgbench counts
# a failed transaction, when it aborts a client on an error, or when the
# server logged an ERROR meanwhile: the largest of these counts.
RUN_NO=0
pgbench_run() {
	local name=$1 clients=$2 jobs out offset failed aborted logged rc=0
	shift 2
	RUN_NO=$((RUN_NO + 1))
	out=$OUT/$RUN_NO-$name-c$clients.txt
	jobs=$((clients < 2 ? clients : 2))
	offset=$(stat -c %s "$LOG")
	timeout $((SECONDS_PER_RUN + 60)) $RUN pgbench -n -M prepared -T "$SECONDS_PER_RUN" \
		-c "$clients" -j "$jobs" -h "$CLUSTER" -p "$PORT" -f "$SCRIPTS/$name.sql" "$@" \
		postgres >"$out" 2>&1 || rc=$?
	TPS=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$out")
	failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$out")
	aborted=$(grep -c 'aborted in command' "$out" || true)
	logged=$(tail -c +$((offset + 1)) "$LOG" | grep -c ' ERROR: ' || true)
	FAILED=$(( ${failed:-0} + aborted ))
	[ "$logged" -le "$FAILED" ] || FAILED=$logged
	if [ "$rc" -ne 0 ] || [ -z "$TPS" ] ||
		! grep -q '^number of transactions actually processed' "$out"; then
		echo "   pgbench did not complete (exit status $rc): $out" >&2
		sed 's/^/   | /' "$out" | tail -5 >&2
		TPS=${TPS:-0}
		[ "$FAILED" -gt 0 ] || FAILED=1
	fi
	if [ "$FAILED" -gt 0 ]; then
		echo "   $FAILED failed call(s); first errors:" >&2
		{ grep -h 'ERROR' "$out"; tail -c +$((offset + 1)) "$LOG" | grep ' ERROR: '; } |
			head -3 | sed 's/^/   | /' >&2
	fi
}

ROWS=()
ANY_FAILED=0
ANY_BELOW=0
TAG=0

# The median of its arguments.
median() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
		END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

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
echo "pg_eventstore $REVISION; PostgreSQL $($RUN postgres --version | awk '{ print $3 }'), $(nproc) cores," \
	"$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo);" \
	"$SECONDS_PER_RUN s per pgbench run, $ROUNDS round(s) per side; total run time ${ELAPSED} s"

status=0
if [ "$ANY_FAILED" -ne 0 ]; then
	echo "FAILED: some calls failed (see above)" >&2
	status=1
elif [ "$ANY_BELOW" -ne 0 ]; then
	echo "note: a ratio is below its target" >&2
	[ "${BENCH_STRICT:-0}" != 1 ] || status=3
fi
exit $status
