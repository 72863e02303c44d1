/*
 * test/fuzz/event_batch_fuzz.c
 *		A libFuzzer target for the event-batch parser (log/event_batch.c)
 *		and the name check (log/names.c), run inside a single-user
 *		PostgreSQL backend by scripts/fuzz.sh.
 *
 * The parser takes a jsonb datum, which only PostgreSQL's jsonb input makes,
 * so the target runs in a real backend: a library of its own (this file, the
 * two parser files, compiled with coverage instrumentation, trapping
 * UndefinedBehaviorSanitizer checks and assertions,
 * and libFuzzer's driver) that fuzz_event_batch(args text[]) hands to
 * LLVMFuzzerRunDriver.  Nothing is installed: the function is created from
 * the library's path in a throw-away data directory.
 *
 * Each input is one of:
 * - 'N' followed by a name: checked as a stream id (RequireMeaningfulName),
 *   when it is valid in the database encoding and holds no NUL byte, as a
 *   text argument would be;
 * - anything else: JSON text given to jsonb_in and, when it is jsonb, to
 *   EventBatchFromJsonb as append_to_stream's events argument, from a
 *   copy that ends where an inaccessible page begins (a read past the
 *   datum's end is a SIGSEGV, which libFuzzer reports).
 * An ERROR (bad JSON, a refused batch) is an expected outcome: caught and
 * flushed.  A crash, a sanitizer report, a failed Assert or a batch that
 * breaks what the parser promises (checked below) is a finding: libFuzzer
 * stops and writes the input to crash-<sha1>.
 */
#include "postgres.h"

#include <sys/mman.h>
#include <unistd.h>

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "log/log.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(fuzz_event_batch);

extern int	LLVMFuzzerRunDriver(int *argc, char ***argv,
								int (*callback) (const uint8_t *data, size_t size));

static MemoryContext fuzz_context;

/*
 * A copy of a jsonb datum whose last byte (rounded up to 4, the datum's
 * alignment) is followed by a page no one may read; *map and *maplen are
 * what to munmap.
 */
static Jsonb *
GuardedCopy(Jsonb *jb, void **map, size_t *maplen)
{
	size_t		page = (size_t) sysconf(_SC_PAGESIZE);
	size_t		len = TYPEALIGN(4, VARSIZE(jb));
	size_t		data_pages = (len + page - 1) / page;
	char	   *base;

	*maplen = (data_pages + 1) * page;
	base = mmap(NULL, *maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED || mprotect(base + data_pages * page, page, PROT_NONE) != 0)
		abort();
	*map = base;
	base += data_pages * page - len;
	memcpy(base, jb, VARSIZE(jb));
	return (Jsonb *) base;
}

/* What a parsed batch promises its caller (AppendBatch). */
static void
CheckBatch(EventBatch *batch, Jsonb *events)
{
	bool		any = false,
				all = true;

	if (batch->count != (int) JB_ROOT_COUNT(events) || batch->count < 1)
		abort();
	for (int i = 0; i < batch->count; i++)
	{
		EventInput *e = &batch->events[i];

		if (e->type == NULL || VARSIZE_ANY_EXHDR(e->type) == 0 ||
			VARSIZE_ANY_EXHDR(e->type) > 1000 ||
			e->data == NULL || e->metadata == NULL ||
			!JB_ROOT_IS_OBJECT(e->metadata) || JB_ROOT_IS_SCALAR(e->metadata))
			abort();
		any |= e->id_given;
		all &= e->id_given;
		for (int j = 0; j < i; j++)
			if (e->id_given && batch->events[j].id_given &&
				memcmp(&e->id, &batch->events[j].id, sizeof(pg_uuid_t)) == 0)
				abort();
	}
	if (batch->any_id_given != any || batch->all_ids_given != all)
		abort();
}

/* One input: see the top. */
static int
FuzzOne(const uint8_t *data, size_t size)
{
	MemoryContext old = MemoryContextSwitchTo(fuzz_context);

	PG_TRY();
	{
		if (size > 0 && data[0] == 'N')
		{
			const char *name = (const char *) data + 1;
			int			len = (int) size - 1;

			if (memchr(name, '\0', len) == NULL &&
				pg_verifymbstr(name, len, true))
				RequireMeaningfulName(name, len, "stream_id", -1);
		}
		else
		{
			char	   *text = pnstrdup((const char *) data, size);
			Jsonb	   *parsed;
			Jsonb	   *copy;
			void	   *map;
			size_t		maplen;

			if (pg_verifymbstr(text, strlen(text), true))
			{
				parsed = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
															CStringGetDatum(text)));
				copy = GuardedCopy(parsed, &map, &maplen);
				PG_TRY();
				{
					CheckBatch(EventBatchFromJsonb(copy), copy);
				}
				PG_FINALLY();
				{
					munmap(map, maplen);
				}
				PG_END_TRY();
			}
		}
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(fuzz_context);
		FlushErrorState();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	MemoryContextReset(fuzz_context);
	return 0;
}

/*
 * SQL: fuzz_event_batch(args text[]): run libFuzzer with these arguments
 * (corpus directories, -max_total_time=N, ...).  libFuzzer ends the process
 * when it is done, with 0 when it found nothing.
 */
Datum
fuzz_event_batch(PG_FUNCTION_ARGS)
{
	ArrayType  *args = PG_GETARG_ARRAYTYPE_P(0);
	Datum	   *elems;
	int			nelems;
	int			argc;
	char	  **argv;

	deconstruct_array(args, TEXTOID, -1, false, TYPALIGN_INT, &elems, NULL, &nelems);
	argc = nelems + 1;
	argv = palloc(sizeof(char *) * (argc + 1));
	argv[0] = "fuzz_event_batch";
	for (int i = 0; i < nelems; i++)
		argv[i + 1] = TextDatumGetCString(elems[i]);
	argv[argc] = NULL;

	fuzz_context = AllocSetContextCreate(TopMemoryContext, "fuzz input",
										 ALLOCSET_DEFAULT_SIZES);
	PG_RETURN_INT32(LLVMFuzzerRunDriver(&argc, &argv, FuzzOne));
}
