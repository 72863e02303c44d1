# Shared by test/bench/run.sh, compare.sh, projections.sh, schemas.sh, upcast.sh and
# worker.sh: build and install the extension from a copy of this checkout,
# start a watchdog, and initialise a private cluster that is stopped and removed on every way out.
# Sourced after scripts/common.sh, with PORT set; the caller configures the
# cluster with bench_configure and then calls bench_start_cluster.

# bench_prepare_cluster NAME KEEP WORKDIR TIME_LIMIT PYTHON
#   NAME        names the work copy and the cluster directory (bench, ...)
#   KEEP        1: keep the cluster directory at the end
#   WORKDIR     the root's work copy
#   TIME_LIMIT  seconds from the end of the build until the watchdog stops
#               the run
#   PYTHON      the python3 that must import psycopg; empty: none needed
# Sets REVISION, CLUSTER, DATA, LOG, OUT; leaves the shell in the work copy.
bench_prepare_cluster() {
	local name=$1 time_limit=$4 python=$5
	BENCH_KEEP=$2
	STARTED=
	CLUSTER=
	WATCHDOG=
	trap 'echo "== set-up failed (line $LINENO)" >&2; exit 2' ERR
	trap bench_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM

	REVISION=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
	[ -z "$(git status --porcelain -- src sql Makefile pg_eventstore.control 2>/dev/null)" ] ||
		REVISION="$REVISION with local changes"

	# the benchmarks' own extra: the test command does not need psycopg
	install_dependencies ${python:+python3-psycopg}
	[ -z "$python" ] || "$python" -c 'import psycopg' 2>/dev/null ||
		{ echo "$python cannot import psycopg (Debian package python3-psycopg)" >&2; exit 2; }
	export PG_EVENTSTORE_WORKDIR=$3
	prepare_workdir "$name"
	cd "$WORKDIR"
	build_and_install

	(
		trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
		sleep "$time_limit" & sleeper=$!
		wait "$sleeper" && echo "== time limit of $time_limit s reached, stopping" >&2 && kill -TERM $$
	) &
	WATCHDOG=$!

	CLUSTER=$(mktemp -d "${TMPDIR:-/tmp}/pg_eventstore-$name-cluster.XXXXXX")
	[ "$(id -u)" -ne 0 ] || chown postgres: "$CLUSTER"
	chmod 700 "$CLUSTER"
	DATA=$CLUSTER/data
	LOG=$CLUSTER/server.log
	OUT=$CLUSTER/out

	echo "== starting a private PostgreSQL $PG_MAJOR cluster in $CLUSTER (port $PORT)"
	$RUN mkdir -p "$OUT"
	$RUN initdb -D "$DATA" -A trust --encoding=UTF8 --locale=C >/dev/null
}

# bench_configure TITLE PRELOAD: append to postgresql.conf the settings
# every benchmark shares, then the caller's own from stdin (a later line
# wins over an earlier one).  For 2 cores and 24 GiB; a unix socket in the
# cluster directory and no TCP listener.  fsync and synchronous_commit stay
# at their defaults: every commit is durable, as in production.  The
# checkpoint settings keep checkpoints out of the measurements.
bench_configure() {
	local title=$1 preload=$2
	{
		cat <<EOF

# $title
listen_addresses = ''
port = $PORT
unix_socket_directories = '$CLUSTER'
max_connections = 100
shared_preload_libraries = '$preload'
shared_buffers = 1GB
effective_cache_size = 16GB
work_mem = 16MB
maintenance_work_mem = 512MB
wal_buffers = 16MB
max_wal_size = 16GB
min_wal_size = 1GB
checkpoint_timeout = 30min
checkpoint_completion_target = 0.9
random_page_cost = 1.1
effective_io_concurrency = 200
log_line_prefix = '%m [%p] '
log_checkpoints = off
EOF
		cat
	} | $RUN tee -a "$DATA/postgresql.conf" >/dev/null
}

# What was measured where, for the last line of a report: the revision, the
# server's version, the machine's cores and memory.
bench_machine() {
	echo "pg_eventstore $REVISION; PostgreSQL $($RUN postgres --version | awk '{ print $3 }'), $(nproc) cores," \
		"$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
}

bench_start_cluster() {
	$RUN pg_ctl start -D "$DATA" -l "$LOG" -w -t 60 >/dev/null
	STARTED=1
}

# On the way out, whatever happens: stop the cluster, remove its directory.
bench_cleanup() {
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
	elif [ "$BENCH_KEEP" = 1 ]; then
		echo "== kept $CLUSTER"
	else
		rm -rf "$CLUSTER"
	fi
	exit $rc
}

# The CPU time (user + system, seconds) of the cluster's backends that have
# exited: the postmaster's cutime + cstime, which grow as it reaps them.
# Each pgbench run has its own connections, so the difference over a run,
# once its backends are gone, is what they used: less stretched by the
# machine's other load than wall time, though not free of it.
postmaster_pid() { head -1 "$DATA/postmaster.pid"; }
reaped_cpu() {
	awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f\n", ($14 + $15) / hz }' "/proc/$1/stat"
}
# Wait (up to 10 s) until the postmaster has no more children than before a
# run (its backends have exited and been reaped).
wait_reaped() {
	local pm=$1 before=$2 i
	for ((i = 0; i < 100; i++)); do
		[ "$(ps --ppid "$pm" --no-headers | wc -l)" -gt "$before" ] || return 0
		sleep 0.1
	done
	echo "   backends of $CLUSTER still running 10 s after pgbench" >&2
}

# Callgrind (compare.sh, schemas.sh): the instructions one single-user
# session of the stopped cluster executes, the statements of
# $OUT/cg-<case>-<k>.sql (k executions of a case); leaves the output file
# in $OUT/cg-<case>-<k>.out.
cg_run() {
	local case=$1 k=$2 file=$OUT/cg-$1-$2.out log=$OUT/cg-$1-$2.log
	timeout 1200 $RUN valgrind --tool=callgrind --toggle-collect=proc_exit --collect-atstart=yes \
		--callgrind-out-file="$file" postgres --single -D "$DATA" \
		-c full_page_writes=off postgres \
		<"$OUT/cg-$case-$k.sql" >"$log" 2>&1 ||
		{ echo "   callgrind run $case x $k failed: $log" >&2; tail -5 "$log" >&2; return 1; }
	if grep -q 'ERROR' "$log"; then
		echo "   errors in callgrind run $case x $k:" >&2
		grep -m3 'ERROR' "$log" >&2
		return 1
	fi
	sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$file"
}
# Inclusive instructions of every function in a callgrind file, by name
# ("function count", the first entry of a name; sorted by name).
cg_inclusive() {
	callgrind_annotate --inclusive=yes --threshold=100 --auto=no "$1" 2>/dev/null |
		sed -n 's/^ *\([0-9,]*\) ([ 0-9.]*%) *\([^ ]*\) .*/\1 \2/p' |
		awk '{ gsub(/,/, "", $1); f = $2; sub(/.*:/, "", f); if (f ~ /^[A-Za-z_]/ && !(f in seen)) { seen[f] = 1; print f, $1 } }' |
		LC_ALL=C sort -k1,1
}
# The same per event, from the runs of K1 and K2 executions of a case.
cg_per_event() {
	local case=$1 k1=$2 k2=$3 per=$4
	LC_ALL=C join -a2 -e0 -o 0,1.2,2.2 <(cg_inclusive "$OUT/cg-$case-$k1.out") \
		<(cg_inclusive "$OUT/cg-$case-$k2.out") |
		awk -v k=$((k2 - k1)) -v p="$per" '{ printf "%s %.0f\n", $1, ($3 - $2) / k / p }'
}

# bench_load_deposits STREAMS PER_STREAM LOAD_BATCH: the projection
# benchmark's log (projections.sh, promotion.sh): STREAMS x PER_STREAM
# events of type Deposited, {"amount": <0.00 .. 999.99>}, appended in rounds
# of LOAD_BATCH events to every stream (one append_to_stream a stream), so
# that a stream's events are spread over the log as in real life, each round
# split among up to 4 psql sessions; then VACUUM (ANALYZE) and a
# checkpoint.  With WITHDRAWN (a 4th argument) 1, one event in 100 of each
# stream is a Withdrawn instead (the sparse type of scale.sh), the same
# amounts.  Needs the caller's psql_run; sets LOAD_SECONDS.
bench_load_deposits() {
	local streams=$1 per_stream=$2 load_batch=$3 withdrawn=${4:-0} r k lo hi p pids type
	local rounds=$((per_stream / load_batch)) sessions start
	sessions=$(nproc)
	[ "$sessions" -le 4 ] || sessions=4
	echo "== loading $((streams * per_stream)) events: $streams streams, $rounds round(s) of $load_batch events per stream, $sessions sessions"
	start=$EPOCHREALTIME
	for ((r = 0; r < rounds; r++)); do
		pids=()
		type="'Deposited'"
		[ "$withdrawn" != 1 ] ||
			type="CASE WHEN (s * 7919 + ($r * $load_batch + i) * 104729) % 100 = 0 THEN 'Withdrawn' ELSE 'Deposited' END"
		for ((k = 0; k < sessions; k++)); do
			lo=$((k * streams / sessions + 1))
			hi=$(((k + 1) * streams / sessions))
			psql_run -o /dev/null -c "
	SELECT count(eventstore.append_to_stream('acct-' || s, b.events))
	FROM generate_series($lo, $hi) s
	CROSS JOIN LATERAL (
		SELECT jsonb_agg(jsonb_build_object('type', $type, 'data',
				jsonb_build_object('amount', ((s * 7919 + ($r * $load_batch + i) * 104729) % 100000) * 0.01))
			ORDER BY i) AS events
		FROM generate_series(1, $load_batch) i) b" &
			pids+=($!)
		done
		for p in "${pids[@]}"; do wait "$p"; done
	done
	LOAD_SECONDS=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
	psql_run -o /dev/null -c 'VACUUM (ANALYZE) eventstore.events, eventstore.streams' -c CHECKPOINT
}
