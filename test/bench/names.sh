#!/usr/bin/env bash
# The cost of refusing stream ids and event types no one means: the CPU time
# of one check (src/log/names.c) of a name it accepts, in nanoseconds, built
# with the server's compiler flags and run 20 million times per name (CPU
# time of this process, so a loaded machine does not inflate it).  An
# append checks its stream id and each event's type once.
#
#   test/bench/names.sh [CALLS]
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/common.sh
install_dependencies
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# shellcheck disable=SC2046
gcc $(pg_config --cflags) -I src -I "$(pg_config --includedir-server)" \
	-o "$out/names" test/bench/names.c src/log/names.c
echo "| name | bytes | ns per check |"
echo "|---|---|---|"
"$out/names" "${1:-20000000}"
