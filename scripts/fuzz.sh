#!/usr/bin/env bash
# Fuzz the event-batch parser (src/log/event_batch.c: the jsonb batch given
# to append_to_stream) and the stream id / event type check
# (src/log/names.c) with libFuzzer, for a bounded time:
#
#   scripts/fuzz.sh [SECONDS]     (default 120; FUZZ_SECONDS too)
#
# The target, test/fuzz/event_batch_fuzz.c, is built with clang
# (-fsanitize=fuzzer-no-link and trapping -fsanitize=undefined, assertions
# on) into a library of its own together with the two parser files, and run
# inside a single-user PostgreSQL backend (jsonb_in makes its inputs) on a
# throw-away data directory; each batch is parsed from a copy followed by an
# inaccessible page, so a read past its end is a crash.  (AddressSanitizer
# would need its runtime preloaded into postgres, which then hangs at start
# here.)  Nothing is installed into PostgreSQL.  Starts from the seeds
# in test/fuzz/event_batch_corpus with the dictionary
# test/fuzz/event_batch.dict; the corpus it grows and any crash-* input stay
# in $WORKDIR/fuzz/.  Exits 0 when libFuzzer found nothing.
# PG_EVENTSTORE_PG_CONFIG and PG_EVENTSTORE_WORKDIR as for scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh

seconds=${1:-${FUZZ_SECONDS:-120}}
install_dependencies clang
prepare_workdir fuzz
cd "$WORKDIR"

dir=$WORKDIR/fuzz
$RUN rm -rf "$dir"
$RUN mkdir -p "$dir/corpus"
$RUN cp test/fuzz/event_batch_corpus/* "$dir/corpus/"

echo "== building the fuzz target"
rt=$(dirname "$(clang -print-file-name=libclang_rt.fuzzer_no_main-x86_64.a)")
# (-Wno-ignored-attributes: the server was built with gcc, whose gnu_printf
# format attribute clang does not know)
cflags=(-g -O1 -fPIC -DUSE_ASSERT_CHECKING -Wall -Werror -Wno-unused-command-line-argument -Wno-ignored-attributes
	-fsanitize=fuzzer-no-link,undefined -fsanitize-trap=undefined -fno-sanitize=alignment
	-I src -I "$(pg_config --includedir-server)")
for f in test/fuzz/event_batch_fuzz.c src/log/event_batch.c src/log/names.c; do
	$RUN clang "${cflags[@]}" -c "$f" -o "$dir/$(basename "$f" .c).o"
done
$RUN clang -shared -fsanitize=fuzzer-no-link,undefined -fsanitize-trap=undefined \
	-o "$dir/event_batch_fuzz.so" "$dir"/*.o \
	-Wl,--whole-archive "$rt/libclang_rt.fuzzer_no_main-x86_64.a" -Wl,--no-whole-archive \
	-lstdc++ -lm

echo "== a throw-away data directory"
$RUN initdb -D "$dir/data" -A trust --no-sync --no-locale -E UTF8 >"$dir/initdb.log"

echo "== fuzzing for $seconds s"
status=0
# libFuzzer prints its progress on stderr and ends the backend itself
printf '%s\n' \
	"CREATE FUNCTION fuzz_event_batch(text[]) RETURNS integer LANGUAGE c AS '$dir/event_batch_fuzz.so', 'fuzz_event_batch';" \
	"SELECT fuzz_event_batch(ARRAY['-max_total_time=$seconds', '-timeout=10', '-max_len=4096', '-print_final_stats=1', '-dict=$WORKDIR/test/fuzz/event_batch.dict', '-artifact_prefix=$dir/', '$dir/corpus']);" |
	(cd "$dir" && $RUN postgres --single -D "$dir/data" -F -c shared_preload_libraries= -c max_stack_depth=2MB postgres) \
	>"$dir/fuzz.log" 2>&1 || status=$?
grep -E '^#[0-9]+ +(INITED|DONE)|^Done |^stat::number_of_executed_units|^stat::peak_rss|==ERROR|SUMMARY|deadly signal|Test unit written' "$dir/fuzz.log" || true
crashes=$(find "$dir" -maxdepth 1 -name 'crash-*' -o -maxdepth 1 -name 'timeout-*' -o -maxdepth 1 -name 'oom-*' | sort)
echo "== corpus: $(find "$dir/corpus" -type f | wc -l) inputs"
if [ -n "$crashes" ] || [ "$status" -ne 0 ]; then
	echo "== libFuzzer found something (exit $status); the log: $dir/fuzz.log"
	for c in $crashes; do
		echo "-- $c"
		od -c "$c" | head -20
	done
	exit 1
fi
echo "== no crash, sanitizer report or broken promise in $seconds s"
