#!/usr/bin/env bash
# Set everything up on a Debian 12 machine and run every test of
# pg_eventstore: pgTAP plans (pg_prove), pg_regress (exact output),
# isolation specs and TAP tests (crashes and restarts), each on temporary
# PostgreSQL instances with the library preloaded.
# Works as root (PostgreSQL then runs as "postgres") and as a normal user
# with sudo.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh

install_dependencies
prepare_workdir test
# META.json against the PGXN Meta Spec and the tree; in a git checkout, the
# PGXN archive of HEAD (make dist), checked the same way and built,
# installed and tested from by test/t/025_dist_upgrade.pl
echo "== checking META.json and the release archive"
python3 scripts/check_meta.py
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	make -s dist DISTDIR="$WORKDIR" >/dev/null
	export PG_EVENTSTORE_DIST
	PG_EVENTSTORE_DIST=$(echo "$WORKDIR"/pg_eventstore-*.zip)
	python3 scripts/check_meta.py "$PG_EVENTSTORE_DIST"
	[ "$(id -u)" -ne 0 ] || chown postgres: "$PG_EVENTSTORE_DIST"
else
	echo "not a git checkout: no archive (make dist needs git)"
fi
cd "$WORKDIR"

# The build under test: warnings are errors and assertions are on.  That
# works against a server built without them (Debian's): Assert() calls the
# server's ExceptionalCondition, which every build has, and no struct the
# extension uses changes with USE_ASSERT_CHECKING.
build_and_install COPT='-Werror -DUSE_ASSERT_CHECKING'

echo "== running the tests"
status=0
$RUN make -s installcheck >installcheck.log 2>&1 || status=$?

# The demo, short: its closing report must say PASS (every read model equals
# the log, every projection active at the head), and its HTML report must
# open in a headless browser with its plots (PG_EVENTSTORE_SKIP_BROWSER=1
# skips that part, which installs chromium).
demo_test() {
	local log=$1 name=$2
	shift 2
	if "$@" >"$log" 2>&1; then
		echo "test demo: $name ... ok" >>installcheck.log
	else
		echo "test demo: $name ... FAILED" >>installcheck.log
		tail -40 "$log" >>installcheck.log
	fi
}
echo "== running the demo, short"
# PG_EVENTSTORE_DEMO_PORT: another port for runs side by side on one machine
demo_port=${PG_EVENTSTORE_DEMO_PORT:-5499}
demo_test demo.log "closing report says PASS" \
	env DEMO_PORT="$demo_port" DEMO_SECONDS=6 scripts/demo.sh
env DEMO_PORT="$demo_port" scripts/demo.sh stop >/dev/null
if [ "${PG_EVENTSTORE_SKIP_BROWSER:-0}" != 1 ]; then
	demo_test demo-browser.log "HTML report in headless chromium" \
		scripts/check_demo_report.sh
fi
cat installcheck.log
for f in regression.diffs output_iso/regression.diffs; do
	if [ -s "$f" ]; then
		echo "== $f"
		cat "$f"
	fi
done
# pg_regress and pg_isolation_regress print "test name ... ok" (or FAILED);
# pg_prove and prove print "test/pgtap/name.sql .. ok" and
# "test/t/name.pl .. ok", and for a file that is not ok anything else after
# the dots, often nothing (the reason follows on the next lines).
prove_file='^test/(pgtap|t)/[^ ]+ \.+'
regress_passed=$(grep -vE "$prove_file" installcheck.log | grep -cE '\.\.\. +ok' || true)
regress_failed=$(grep -vE "$prove_file" installcheck.log |
	grep -cE '\.\.\. +(FAILED|failed)|diff command failed' || true)
prove_passed=$(grep -E "$prove_file" installcheck.log | grep -cE ' \.+ ok$' || true)
prove_failed=$(grep -E "$prove_file" installcheck.log | grep -cvE ' \.+ ok$' || true)
passed=$((regress_passed + prove_passed))
failed=$((regress_failed + prove_failed))
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
	echo "make installcheck failed (exit $status) outside any single test"
	failed=1
fi
echo "${passed} passed, ${failed} failed"
[ "$status" -eq 0 ] && [ "$failed" -eq 0 ]
