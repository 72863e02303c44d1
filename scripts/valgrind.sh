#!/usr/bin/env bash
# Run the pg_regress suite (test/sql, expected/) against a private cluster
# whose every process runs under valgrind's memcheck, and report the errors
# (invalid reads and writes, uses of uninitialised values, definite leaks)
# whose stack passes through pg_eventstore's code.  Slow (about 11 minutes
# for the whole suite on two busy cores), so not part of scripts/test.sh:
#
#   scripts/valgrind.sh [TEST...]     (default: every test/sql/*.sql)
#
# Exits 0 when the suite passes and no error is in our code.  Installs
# valgrind (Debian) when missing; builds with assertions on, as the test
# command does.  VALGRIND_PORT (default 56850) is the cluster's port;
# PG_EVENTSTORE_PG_CONFIG and PG_EVENTSTORE_WORKDIR as for scripts/test.sh.
# The logs stay in $WORKDIR/valgrind/ (one file per process) for a look.
#
# PostgreSQL's own memory contexts hand out pieces of large malloc'd
# blocks, and Debian's server is not built with USE_VALGRIND, so a read past
# a palloc'd chunk inside its block is not seen; what memcheck does see is a
# read or write outside any malloc'd block, a decision on uninitialised
# bytes, and memory malloc'd and lost (our code mallocs nothing itself).
# test/valgrind.supp silences what PostgreSQL does on purpose (padding
# bytes written to files and sockets, CRCs over them).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh

install_dependencies valgrind
prepare_workdir valgrind
cd "$WORKDIR"
build_and_install COPT='-Werror -DUSE_ASSERT_CHECKING'

port=${VALGRIND_PORT:-56850}
dir=$WORKDIR/valgrind
data=$dir/data
$RUN mkdir -p "$dir"
$RUN rm -rf "$data" "$dir"/vg.*.log
socket=$(mktemp -d "${TMPDIR:-/tmp}/pg_eventstore-valgrind.XXXXXX")
chmod 777 "$socket"

started=
finish() {
	if [ -n "$started" ]; then
		$RUN pg_ctl stop -D "$data" -m fast -w -t 600 >/dev/null 2>&1 ||
			$RUN pg_ctl stop -D "$data" -m immediate -w >/dev/null 2>&1 || true
	fi
	rm -rf "$socket"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ $# -gt 0 ]; then tests=("$@"); else
	tests=()
	for f in test/sql/*.sql; do tests+=("$(basename "$f" .sql)"); done
fi

echo "== a cluster under valgrind (port $port)"
$RUN initdb -D "$data" -A trust --no-sync --no-locale -E UTF8 >"$dir/initdb.log"
{
	echo "listen_addresses = ''"
	echo "unix_socket_directories = '$socket'"
	echo "port = $port"
	cat test/pg_eventstore.conf
	# valgrind makes every process ~30 times slower: no timeouts of its own
	echo "max_connections = 20"
	echo "checkpoint_timeout = 1h"
	echo "max_wal_size = 4GB"
	echo "fsync = off"
} >>"$data/postgresql.conf"
# pg_ctl starts the postmaster through "valgrind postgres"; every backend
# and worker it forks runs under valgrind too (--trace-children).
cat >"$dir/postgres-valgrind" <<EOF
#!/bin/sh
exec valgrind --quiet --trace-children=yes --track-origins=yes \\
	--error-limit=no --num-callers=30 --read-inline-info=yes \\
	--fullpath-after=$WORKDIR/ --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite \\
	--suppressions=$WORKDIR/test/valgrind.supp \\
	--log-file=$dir/vg.%p.log \\
	$PG_BINDIR/postgres "\$@"
EOF
chmod a+rx "$dir/postgres-valgrind"
started=1
$RUN pg_ctl start -D "$data" -l "$dir/server.log" -w -t 600 -p "$dir/postgres-valgrind" >/dev/null

echo "== pg_regress under valgrind: ${tests[*]}"
begin=$(date +%s)
status=0
$RUN "$(dirname "$(pg_config --pgxs)")/../test/regress/pg_regress" \
	--inputdir=test --bindir="$PG_BINDIR" --host="$socket" --port="$port" \
	--dbname=contrib_regression "${tests[@]}" >"$dir/regress.log" 2>&1 || status=$?
cat "$dir/regress.log"
$RUN pg_ctl stop -D "$data" -m fast -w -t 600 >/dev/null
started=
took=$(($(date +%s) - begin))

# Each error record of a log: from its "==PID== <kind>" line to the blank
# "==PID== " line after its stack.  It is ours when the innermost frame
# outside valgrind and the C library (malloc, memcpy, strdup, the dynamic
# loader) is in pg_eventstore; one that only passes through our code (a
# hook calling PostgreSQL) is counted apart.
python3 - "$dir" "$took" "$status" <<'EOF'
import glob, re, sys
d, took, status = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
logs = sorted(glob.glob(d + '/vg.*.log'))
kinds = re.compile(r'(Invalid|Conditional|Use of uninit|Syscall param|Mismatched|'
                   r'Source and destination|Argument|'
                   r'\d[\d,]* bytes in [\d,]+ blocks are definitely)')
libc = re.compile(r'vgpreload|\((string|stdlib|elf|sysdeps|malloc|libio|stdio-common|'
                  r'posix|misc|nptl)/|\(in /usr/lib/x86_64-linux-gnu/|\(in /lib')
mine = re.compile(r'pg_eventstore\.so|\(src/[\w/]+\.c:\d+\)')
total, ours, through = 0, [], 0
for path in logs:
    record = []
    for line in open(path, errors='replace'):
        body = re.sub(r'^==\d+== ?', '', line.rstrip('\n'))
        if body == '':
            if record:
                total += 1
                frames = [l for l in record[1:] if re.match(r'\s*(at|by) 0x', l)]
                inner = next((f for f in frames if not libc.search(f)), '')
                if mine.search(inner):
                    ours.append((path, record))
                elif any(mine.search(f) for f in frames):
                    through += 1
                record = []
            continue
        if record or kinds.match(body):
            record.append(body)
print(f'== valgrind: {len(logs)} processes, {took} s, pg_regress exit {status}, '
      f'{total} error records, {len(ours)} in pg_eventstore, '
      f'{through} more only passing through it (PostgreSQL\'s, reached from a hook)')
for path, record in ours:
    print(f'-- {path}')
    print('\n'.join(record))
sys.exit(1 if ours or status else 0)
EOF
