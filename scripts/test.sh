#!/usr/bin/env bash
# Set everything up on a Debian 12 machine and run every test of
# pg_eventstore: pg_regress (exact output and pgTAP plans), isolation specs
# and TAP tests (crashes and restarts), each on temporary PostgreSQL
# instances with the library preloaded.
# Works as root (PostgreSQL then runs as "postgres") and as a normal user
# with sudo.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh

install_dependencies
prepare_workdir test
cd "$WORKDIR"

# The build under test: warnings are errors and assertions are on.  That
# works against a server built without them (Debian's): Assert() calls the
# server's ExceptionalCondition, which every build has, and no struct the
# extension uses changes with USE_ASSERT_CHECKING.
build_and_install COPT='-Werror -DUSE_ASSERT_CHECKING'

echo "== running the tests"
status=0
$RUN make -s installcheck >installcheck.log 2>&1 || status=$?
cat installcheck.log

for f in regression.diffs output_iso/regression.diffs; do
	if [ -s "$f" ]; then
		echo "== $f"
		cat "$f"
	fi
done
# pg_regress and pg_isolation_regress print "test name ... ok", prove
# prints "test/t/name.pl .. ok"
passed=$(grep -cE '\.\.\. +ok|^test/t/[^ ]+\.pl \.+ ok' installcheck.log || true)
failed=$(grep -cE '\.\.\. +(FAILED|failed)|diff command failed|^test/t/[^ ]+\.pl \.+ (Dubious|Failed)' installcheck.log || true)
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
	echo "make installcheck failed (exit $status) outside any single test"
	failed=1
fi
echo "${passed} passed, ${failed} failed"
[ "$status" -eq 0 ] && [ "$failed" -eq 0 ]
