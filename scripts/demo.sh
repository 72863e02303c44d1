#!/usr/bin/env bash
# Set everything up on a Debian 12 machine and run the pg_eventstore demo: a
# private PostgreSQL cluster inside the checkout (tmp/demo) with the library
# preloaded and its background worker on, a shopping-cart workload appended
# by several concurrent clients, projections kept inline and by the worker
# (with a blue/green version and a rebuild under load, their status printed
# while they run), a new version checked, promoted behind a stable view
# and rolled back, a handler's side effect done once through rebuilds, and
# the streams and the global log shown.
#
#   scripts/demo.sh          set up, (re)start the cluster, run the demo
#   scripts/demo.sh stop     stop the demo cluster
#
# Works as root (PostgreSQL then runs as "postgres") and as a normal user
# with sudo.  DEMO_PORT (default 5488), DEMO_CLIENTS (4), DEMO_SECONDS (12).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh

PORT=${DEMO_PORT:-5488}
CLIENTS=${DEMO_CLIENTS:-4}
SECONDS_TO_RUN=${DEMO_SECONDS:-12}
CHECKOUT=$(pwd)

install_dependencies

# The cluster lives in tmp/demo inside the checkout.  As root it belongs to
# "postgres"; if that user cannot reach the checkout (say, under /root), the
# cluster goes to /tmp/pg_eventstore-demo instead.
if [ "$(id -u)" -eq 0 ]; then
	DEMO_DIR=$CHECKOUT/tmp/demo
	if ! runuser -u postgres -- test -x "$CHECKOUT"; then
		DEMO_DIR=/tmp/pg_eventstore-demo
		echo "== postgres cannot reach $CHECKOUT: the demo cluster goes to $DEMO_DIR"
	fi
	mkdir -p "$DEMO_DIR"
	chown postgres: "$DEMO_DIR"
	PSQL_AS="runuser -u postgres -- "
	# from the cluster's directory: postgres may not be able to enter ours
	run() { (cd "$DEMO_DIR" && runuser -u postgres -- env PATH="$PATH" "$@"); }
else
	DEMO_DIR=$CHECKOUT/tmp/demo
	mkdir -p "$DEMO_DIR"
	PSQL_AS=""
	run() { "$@"; }
fi
DATA=$DEMO_DIR/data
# SQL files are read by this shell and sent on standard input, for the same
# reason.
psql_demo() { run psql -X -q -P pager=off -h "$DEMO_DIR" -p "$PORT" -d postgres -v ON_ERROR_STOP=1 "$@"; }

stop_cluster() {
	if [ -f "$DATA/postmaster.pid" ]; then
		run pg_ctl -D "$DATA" -m fast -w stop >/dev/null || true
	fi
}

if [ "${1:-}" = "stop" ]; then
	stop_cluster
	echo "demo cluster stopped"
	exit 0
fi

echo "== building and installing pg_eventstore"
make -s PG_CONFIG="$PG_CONFIG" >/dev/null
as_root env PATH="$PATH" make -s install PG_CONFIG="$PG_CONFIG" >/dev/null

echo "== starting a private cluster in $DATA (port $PORT)"
stop_cluster
rm -rf "$DATA"
run initdb -D "$DATA" -A trust >/dev/null
cat >>"$DATA/postgresql.conf" <<CONF
# pg_eventstore demo
listen_addresses = ''
port = $PORT
unix_socket_directories = '$DEMO_DIR'
shared_preload_libraries = 'pg_eventstore'
pg_eventstore.databases = 'postgres'
pg_eventstore.rebuild_throttle = 4000   # events/s, so the rebuilds show progress
CONF
run pg_ctl -D "$DATA" -l "$DEMO_DIR/server.log" -w start >/dev/null

psql_demo -c "CREATE EXTENSION pg_eventstore"
psql_demo <demo/workload.sql
psql_demo <demo/monitor.sql
psql_demo <demo/projections.sql
psql_void() { psql_demo -o /dev/null "$@"; }

# The progress line: a sample a second (kept for the report's plots), also
# printed while $DEMO_DIR/monitor.quiet does not exist.
rm -f "$DEMO_DIR/monitor.stop" "$DEMO_DIR/monitor.quiet"
(
	while [ ! -e "$DEMO_DIR/monitor.stop" ]; do
		line=$(psql_demo -At -c "SELECT demo.sample()" 2>/dev/null || true)
		[ -e "$DEMO_DIR/monitor.quiet" ] || [ -z "$line" ] || echo "$line"
		sleep 1
	done
) &
monitor=$!
stop_monitor() {
	touch "$DEMO_DIR/monitor.stop"
	wait "$monitor" || true
}
trap 'touch "$DEMO_DIR/monitor.stop"' EXIT

echo "== $CLIENTS clients handle shopping-cart commands for $SECONDS_TO_RUN s; a line a second shows"
echo "   the events appended, the append rate and every projection behind the head"
echo "SELECT demo.handle_command((1 + floor(random() * 3000))::int);" >"$DEMO_DIR/command.sql"
chmod a+r "$DEMO_DIR/command.sql"
psql_void -c "SELECT demo.mark('workload started')"
run pgbench -n -h "$DEMO_DIR" -p "$PORT" -c "$CLIENTS" -j 2 -T "$SECONDS_TO_RUN" \
	-f "$DEMO_DIR/command.sql" postgres >"$DEMO_DIR/pgbench.out" 2>&1 &
workload=$!
third=$((SECONDS_TO_RUN / 3))
sleep "$third"
echo "== blue/green: sku-sales version 2 builds from the start while version 1 serves"
psql_void -c "SELECT eventstore.create_projection('sku-sales', 'demo.apply_sku_sales_v2',
	ARRAY['ItemAdded', 'ItemRemoved'], version => 2,
	on_reset => 'TRUNCATE demo.sku_sales_v2')" -c "SELECT demo.mark('sku-sales v2 created')"
echo "== rebuilding the inline cart-summary and checkout-mails under load: appends record skips meanwhile"
psql_void -c "SELECT eventstore.rebuild_projection('cart-summary')" \
	-c "SELECT eventstore.rebuild_projection('checkout-mails')" \
	-c "SELECT demo.mark('cart-summary and checkout-mails rebuilt')"
wait "$workload"
psql_void -c "SELECT demo.mark('workload ended')"
commands=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$DEMO_DIR/pgbench.out")
echo "== the workload stopped after ${commands:-0} commands; the projections catch up"

# Wait (up to 60 s) until the query $1 returns t.
wait_until() {
	for _ in $(seq 1 120); do
		[ "$(psql_demo -At -c "$1")" = t ] && return 0
		sleep 0.5
	done
	echo "== gave up waiting for: $1" >&2
	return 1
}
all_at_head="SELECT count(*) = 0 FROM eventstore.projection_status
	WHERE status <> 'active' OR lag_events > 0 OR skips_pending > 0"
wait_until "$all_at_head"
sleep 1.2	# one more progress line, at the head
touch "$DEMO_DIR/monitor.quiet"

# A consumer reading the stable view in a loop through every promotion
# below, a connection a read: every read must succeed.
rm -f "$DEMO_DIR/reader.stop"
(
	reads=0 failed=0
	while [ ! -e "$DEMO_DIR/reader.stop" ]; do
		if psql_demo -At -c "SELECT count(*), sum(units) FROM demo.sales" >/dev/null 2>>"$DEMO_DIR/reader.err"; then
			reads=$((reads + 1))
		else
			failed=$((failed + 1))
		fi
	done
	echo "$reads $failed" >"$DEMO_DIR/reader.out"
) &
reader=$!

psql_demo <demo/promotion.sql
echo "== waiting for version 2's rebuild to reach the head"
wait_until "$all_at_head"
psql_demo <demo/promotion_2.sql
echo "== waiting for version 3 to build and promote itself"
wait_until "SELECT eventstore.current_version('sku-sales') = 3"
psql_void -c "SELECT demo.mark('sku-sales v3 promoted itself')"
psql_demo <demo/promotion_3.sql
psql_void -c "SELECT demo.mark('rolled back to sku-sales v2')"

touch "$DEMO_DIR/reader.stop"
wait "$reader"
read -r reads failed <"$DEMO_DIR/reader.out"
echo "== a consumer read demo.sales $reads times during the promotions; $failed of them failed"
[ "$failed" = 0 ] || head -3 "$DEMO_DIR/reader.err"

psql_demo <demo/show.sql
stop_monitor

# The closing report, as text here and as an HTML page with plots.
psql_demo -v clients="$CLIENTS" -v commands="${commands:-0}" -v reads="$reads" \
	-v failed_reads="$failed" <demo/report.sql | tee "$DEMO_DIR/report.txt"
psql_demo -At -c "SELECT demo.report_json()" >"$DEMO_DIR/report.json"
python3 demo/report_html.py "$DEMO_DIR/report.json" "$DEMO_DIR/report.txt" "$DEMO_DIR/report.html"
echo "== the report as an HTML page with plots: $DEMO_DIR/report.html"

cat <<MSG

== the demo cluster is still running; connect with
   ${PSQL_AS}psql -h $DEMO_DIR -p $PORT -d postgres
   and try: SELECT * FROM eventstore.read_stream('cart-7');
== stop it with
   scripts/demo.sh stop
MSG
grep -q '^verdict      PASS' "$DEMO_DIR/report.txt"
