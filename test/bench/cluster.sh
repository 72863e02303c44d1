# Shared by test/bench/projections.sh and test/bench/worker.sh: build and
# install the extension from a copy of this checkout, start a watchdog, and
# initialise a private cluster that is stopped and removed on every way out.
# Sourced after scripts/common.sh; the caller appends its settings to
# $DATA/postgresql.conf and then calls bench_start_cluster.

# bench_prepare_cluster NAME KEEP WORKDIR TIME_LIMIT PYTHON
#   NAME      names the work copy and the cluster directory (projbench, ...)
#   KEEP      1: keep the cluster directory at the end
#   WORKDIR   the root's work copy
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

	install_dependencies
	"$python" -c 'import psycopg' 2>/dev/null ||
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
