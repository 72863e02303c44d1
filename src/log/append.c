/*
 * log/append.c
 *		append_to_stream and append_event: optimistic concurrency on one
 *		stream's row, idempotent retries, and the insert of the batch.
 *
 * Appends to one stream serialize on that stream's row in
 * eventstore.streams, and on nothing else.  The expected revision is checked
 * while that row is locked and before any global position is taken, so a
 * losing writer burns no position.  A batch carrying ids of its own is
 * compared with the log after the lock is taken, so a retry racing with its
 * original waits for it and then succeeds as a retry.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "core/args.h"
#include "core/catalog.h"
#include "core/errors.h"
#include "core/kept_plans.h"
#include "fmgr.h"
#include "funcapi.h"
#include "log/event_rows.h"
#include "log/log.h"
#include "log/log_writer.h"
#include "projections/projections.h"
#include "schemas/schemas.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"
#include "worker/worker.h"

PG_FUNCTION_INFO_V1(eventstore_append_to_stream);
PG_FUNCTION_INFO_V1(eventstore_append_event);

/* The outcome of an append, as eventstore.append_result. */
typedef struct AppendResult
{
	int64		last_revision;
	int64		first_position;
	int64		last_position;
	FullTransactionId xid;
} AppendResult;

/* expected_revision values with a meaning of their own */
#define ES_EXPECT_NO_STREAM		(-1)
#define ES_EXPECT_STREAM_EXISTS	(-2)

/* What the caller expects of the stream before the append. */
typedef struct Expectation
{
	bool		any;			/* expected_revision was NULL */
	int64		revision;		/* otherwise: -1, -2 or n >= 0 */
} Expectation;

static SPIPlanPtr create_stream_plan;
static SPIPlanPtr find_ids_plan;

static SPIPlanPtr create_stream_0_2_plan;	/* into a 0.2.0 table */

static const Oid stream_args[] = {TEXTOID, INT8OID, TIMESTAMPTZOID, XID8OID};

/*
 * Connect to SPI on first use within an append: only creating a stream and
 * looking for a retry's events need it.  *connected belongs to one append
 * (appends nest, from user triggers), which disconnects at its end.
 */
static void
UseSpi(bool *connected)
{
	if (*connected)
		return;
	ConnectSpi();
	*connected = true;
}

/* Render an expected revision for an error detail. */
static const char *
ExpectedText(Expectation expect)
{
	if (expect.revision == ES_EXPECT_NO_STREAM)
		return "-1 (no stream)";
	if (expect.revision == ES_EXPECT_STREAM_EXISTS)
		return "-2 (any existing stream)";
	return psprintf(INT64_FORMAT, expect.revision);
}

/*
 * Raise the conflict error; when the stream does not exist, `actual` is the
 * revision it was (soft) deleted at, or -1 when it never existed.
 */
static void
ReportWrongRevision(text *stream_id, Expectation expect, bool exists,
					int64 actual)
{
	ereport(ERROR,
			(errcode(ERRCODE_ES_WRONG_EXPECTED_REVISION),
			 errmsg("wrong expected revision for stream \"%s\"",
					text_to_cstring(stream_id)),
			 errdetail("Expected revision %s, actual revision %s.",
					   ExpectedText(expect),
					   exists ? psprintf(INT64_FORMAT, actual)
					   : actual >= 0
					   ? psprintf("none (the stream was deleted at revision " INT64_FORMAT ")",
								  actual)
					   : "none (the stream does not exist)"),
			 errhint("Read the stream to decide again, then retry with its current revision.")));
}

/* Raise the error for a stream deleted for good (hard), by `operation`. */
void
ReportStreamDeletedForGood(text *stream_id, const char *operation)
{
	ereport(ERROR,
			(errcode(ERRCODE_ES_STREAM_DELETED),
			 errmsg("stream \"%s\" was deleted for good", text_to_cstring(stream_id)),
			 errdetail("A hard-deleted stream's events are removed and its id is never used again; %s is refused.",
					   operation),
			 errhint("Use another stream id.")));
}

/*
 * Insert the stream's row for a first append of count events; false when
 * another transaction created it first.
 */
static bool
CreateStream(text *stream_id, int count, TimestampTz now, FullTransactionId key,
			 bool keeps_key, bool *spi)
{
	Datum		values[4] = {PointerGetDatum(stream_id), Int64GetDatum(count),
		TimestampTzGetDatum(now), FullTransactionIdGetDatum(key)};
	SPIPlanPtr	plan;

	UseSpi(spi);
	if (keeps_key)
		plan = KeptPlan(&create_stream_plan,
						"INSERT INTO eventstore.streams"
						" (stream_id, revision, created_at, updated_at, transaction_id)"
						" VALUES ($1, $2 - 1, $3, $3, $4)"
						" ON CONFLICT (stream_id) DO NOTHING",
						4, stream_args);
	else
		plan = KeptPlan(&create_stream_0_2_plan,
						"INSERT INTO eventstore.streams"
						" (stream_id, revision, created_at, updated_at)"
						" VALUES ($1, $2 - 1, $3, $3)"
						" ON CONFLICT (stream_id) DO NOTHING",
						3, stream_args);
	return ExecKeptPlan(plan, values, NULL, false, 0) == 1;
}

/*
 * Does revision `first` fit where the caller expected the batch to go?  A
 * stream soft-deleted up to revision `deleted` (-1: never) is new again
 * after it.
 */
static bool
FitsExpectation(Expectation expect, int64 first, int64 deleted)
{
	if (expect.any || expect.revision == ES_EXPECT_STREAM_EXISTS)
		return true;
	if (expect.revision == ES_EXPECT_NO_STREAM)
		return first == 0 || first == deleted + 1;
	return first == expect.revision + 1;
}

/* Raise the error for an id that is stored, but not as this very batch. */
static void
ReportStoredId(pg_uuid_t *id, HeapTuple row, TupleDesc desc)
{
	bool		isnull;
	char	   *id_text = DatumGetCString(DirectFunctionCall1(uuid_out,
															  UUIDPGetDatum(id)));
	char	   *stream = TextDatumGetCString(SPI_getbinval(row, desc, EVENTS_STREAM_ID,
															   &isnull));
	int64		revision = DatumGetInt64(SPI_getbinval(row, desc, EVENTS_REVISION,
													   &isnull));

	ereport(ERROR,
			(errcode(ERRCODE_ES_DUPLICATE_EVENT_ID),
			 errmsg("event id %s is already stored", id_text),
			 errdetail("It is stored at revision %lld of stream \"%s\".",
					   (long long) revision, stream),
			 errhint("A retry must resend the original batch unchanged to the same stream; a new event needs a new id.")));
}

/* Is the text datum equal to text t, byte for byte? */
static bool
TextEquals(Datum d, text *t)
{
	text	   *dt = DatumGetTextPP(d);

	return VARSIZE_ANY_EXHDR(dt) == VARSIZE_ANY_EXHDR(t) &&
		memcmp(VARDATA_ANY(dt), VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t)) == 0;
}

/* Are two jsonb datums equal as JSON values? */
static bool
JsonbEquals(Datum d, Jsonb *j)
{
	return compareJsonbContainers(&DatumGetJsonbP(d)->root, &j->root) == 0;
}

/*
 * With the stream row locked, look for the batch's ids in the log.  Returns
 * true, with *result filled from the stored events, when the batch is a
 * retry: every event stored, in this stream, contiguously from where the
 * caller expected, by one transaction, with the same type, data and
 * metadata.  Returns false when none of the ids is stored, and raises
 * SE002 otherwise.  The stored events come back in (stream, revision) order,
 * so a retry lines up with the batch event for event.
 */
static bool
FindRetry(text *stream_id, EventBatch *batch, Expectation expect,
		  int64 deleted, AppendResult *result, bool *spi)
{
	Datum	   *ids = palloc(sizeof(Datum) * batch->count);
	int			nids = 0;
	Datum		values[1];
	Oid			argtypes[1] = {UUIDARRAYOID};
	TupleDesc	desc;
	HeapTuple  *rows;
	bool		isnull;
	int64		first_revision;

	UseSpi(spi);
	for (int i = 0; i < batch->count; i++)
		if (batch->events[i].id_given)
			ids[nids++] = UUIDPGetDatum(&batch->events[i].id);
	values[0] = PointerGetDatum(construct_array(ids, nids, UUIDOID, UUID_LEN,
												false, TYPALIGN_CHAR));
	ExecKeptPlan(KeptPlan(&find_ids_plan,
						  "SELECT * FROM eventstore.events"
						  " WHERE event_id = ANY ($1)"
						  " ORDER BY stream_id, revision",
						  1, argtypes),
				 values, NULL, false, 0);
	if (SPI_processed == 0)
		return false;

	desc = SPI_tuptable->tupdesc;
	rows = SPI_tuptable->vals;
	if (SPI_processed != (uint64) batch->count)
	{
		/* some of the batch is stored and some is not */
		ReportStoredId(DatumGetUUIDP(SPI_getbinval(rows[0], desc, EVENTS_EVENT_ID,
												   &isnull)),
					   rows[0], desc);
	}

	first_revision = DatumGetInt64(SPI_getbinval(rows[0], desc, EVENTS_REVISION,
												 &isnull));
	result->first_position = DatumGetInt64(SPI_getbinval(rows[0], desc,
														 EVENTS_GLOBAL_POSITION,
														 &isnull));
	result->xid = DatumGetFullTransactionId(SPI_getbinval(rows[0], desc,
														  EVENTS_TRANSACTION_ID,
														  &isnull));
	for (int i = 0; i < batch->count; i++)
	{
		EventInput *event = &batch->events[i];
		HeapTuple	row = rows[i];

		if (memcmp(DatumGetUUIDP(SPI_getbinval(row, desc, EVENTS_EVENT_ID, &isnull)),
				   &event->id, sizeof(pg_uuid_t)) != 0 ||
			!TextEquals(SPI_getbinval(row, desc, EVENTS_STREAM_ID, &isnull), stream_id) ||
			DatumGetInt64(SPI_getbinval(row, desc, EVENTS_REVISION, &isnull)) !=
			first_revision + i ||
			!FullTransactionIdEquals(DatumGetFullTransactionId(SPI_getbinval(row, desc,
																			 EVENTS_TRANSACTION_ID,
																			 &isnull)),
									 result->xid) ||
			!TextEquals(SPI_getbinval(row, desc, EVENTS_EVENT_TYPE, &isnull), event->type) ||
			!JsonbEquals(SPI_getbinval(row, desc, EVENTS_DATA, &isnull), event->data) ||
			!JsonbEquals(SPI_getbinval(row, desc, EVENTS_METADATA, &isnull), event->metadata) ||
			!FitsExpectation(expect, first_revision, deleted))
			ReportStoredId(DatumGetUUIDP(SPI_getbinval(row, desc, EVENTS_EVENT_ID, &isnull)),
						   row, desc);
	}
	result->last_position = DatumGetInt64(SPI_getbinval(rows[batch->count - 1],
														desc, EVENTS_GLOBAL_POSITION,
														&isnull));
	result->last_revision = first_revision + batch->count - 1;
	return true;
}

static bool StreamRevisionMatches(Expectation expect, int64 current,
								  StreamDeletion deletion);

/* Does the existing stream's revision match the expectation? */
static bool
MatchesExistingStream(Expectation expect, int64 current)
{
	return expect.any || expect.revision == ES_EXPECT_STREAM_EXISTS ||
		expect.revision == current;
}

/*
 * Check an expected revision (`any`: NULL) against a locked stream at
 * revision `current`, raising SE001 when it does not match.  A stream that
 * reads as deleted (soft) is no stream: only -1 and NULL match it, and an
 * append re-creates it.  Also delete_stream's check.
 */
void
CheckLockedStreamRevision(text *stream_id, bool any, int64 expected,
						  int64 current, StreamDeletion deletion)
{
	Expectation expect = {any, expected};

	if (!StreamRevisionMatches(expect, current, deletion))
		ReportWrongRevision(stream_id, expect, !deletion.deleted, current);
}

/*
 * Does the expectation match a stream at revision `current` with that
 * tombstone?  A stream that reads as deleted (soft) is no stream: only -1
 * and NULL match it.
 */
static bool
StreamRevisionMatches(Expectation expect, int64 current, StreamDeletion deletion)
{
	if (deletion.deleted)
		return expect.any || expect.revision == ES_EXPECT_NO_STREAM;
	return MatchesExistingStream(expect, current);
}

/* What creating a new stream's row needs to know (LockAndCheckStream). */
typedef struct NewStream
{
	text	   *stream_id;
	EventBatch *batch;
	Expectation expect;
	TimestampTz now;
	AppendResult *result;
	bool	   *spi;
	FullTransactionId key;		/* its first events' key */
	bool		keeps_key;		/* the row has a column for it */
} NewStream;

/*
 * The stream does not exist: none of the batch's ids can be a retry, and
 * only an expectation of no stream (or none) fits.  Returns whether the
 * row was created; false when a concurrent first append created it first.
 */
static bool
CreateNewStream(void *arg)
{
	NewStream  *ns = (NewStream *) arg;

	if (ns->batch->any_id_given &&
		FindRetry(ns->stream_id, ns->batch, ns->expect, -1, ns->result, ns->spi))
		elog(ERROR, "events of a batch are stored but their stream is not");
	if (!ns->expect.any && ns->expect.revision != ES_EXPECT_NO_STREAM)
		ReportWrongRevision(ns->stream_id, ns->expect, false, -1);
	return CreateStream(ns->stream_id, ns->batch->count, ns->now, ns->key,
						ns->keeps_key, ns->spi);
}

/*
 * Lock or create the stream and check the expectation.  Returns the revision
 * of the batch's first event, with *key the log key its events take (the
 * writer's own key plus `offset`, raised to the stream's previous key,
 * which the locked row keeps), or -1 with *result filled when the batch is
 * a retry of one already stored.
 *
 * A batch of generated ids, which cannot be a retry, takes the stream's row
 * as an UPDATE would: the version found is checked and then updated, which
 * locks it, with no lock of its own before (LogWriterLockStream's `find`).
 * Nothing is decided for good before that update succeeded: a mismatch is
 * checked again on the locked row (a transaction that held it may have
 * ended since), and a row changed before the update is locked and checked
 * again.  So the check is still made on the newest version, held until
 * commit, and before any position is taken.
 */
static int64
LockAndCheckStream(LogWriter *writer, text *stream_id, EventBatch *batch,
				   Expectation expect, TimestampTz now, int64 offset,
				   FullTransactionId *key, AppendResult *result, bool *spi)
{
	NewStream	ns = {stream_id, batch, expect, now, result, spi,
	OwnLogKey(offset), LogWriterKeepsStreamKeys(writer)};
	int64		current;
	FullTransactionId previous;
	/* a retry is compared with the log under the stream's lock */
	bool		find = !batch->any_id_given;

	for (;;)
	{
		bool		found_only;
		StreamDeletion deletion;

		*key = ns.key;
		if (!LogWriterLockStream(writer, stream_id, &current, CreateNewStream,
								 &ns, find, &found_only))
			return 0;
		deletion = LogWriterStreamDeletion(writer);
		/* a retry of events deleted for good is no retry: they are gone */
		if (deletion.hard)
			ReportStreamDeletedForGood(stream_id, "an append to it");
		if (batch->any_id_given &&
			FindRetry(stream_id, batch, expect, deletion.revision, result, spi))
			return -1;
		if (!StreamRevisionMatches(expect, current, deletion))
		{
			/* decided on a row found without its lock: lock it, decide again */
			if (found_only)
			{
				find = false;
				continue;
			}
			CheckLockedStreamRevision(stream_id, expect.any, expect.revision,
									  current, deletion);
		}
		previous = LogWriterStreamKey(writer);
		if (!FullTransactionIdIsValid(previous))
			previous = StreamEventKey(LogWriterEvents(writer), stream_id, current);
		*key = KeyAfter(*key, previous);
		if (LogWriterAdvanceStream(writer, current + batch->count, *key, now))
			return current + 1;
		/* changed since it was found: lock it and decide again */
		find = false;
	}
}

/*
 * Append a validated batch and return the append_result datum; `operation`
 * names the SQL function in errors.
 */
static Datum
AppendBatch(FunctionCallInfo fcinfo, const char *operation, text *stream_id,
			EventBatch *batch, Expectation expect)
{
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	AppendResult result;
	LogWriter  *writer;
	bool		spi_connected = false;
	EventRows  *inline_rows = NULL;
	MemoryContext call_context = CurrentMemoryContext;
	TupleDesc	desc;
	Datum		values[5];
	bool		nulls[5] = {false};
	int64		first_revision;
	int64		offset;
	FullTransactionId key;

	if (!expect.any && expect.revision < ES_EXPECT_STREAM_EXISTS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("expected_revision must be NULL, -1, -2 or a revision >= 0"),
				 errdetail("Got " INT64_FORMAT ".", expect.revision),
				 errhint("NULL appends at any revision, -1 requires a new stream, -2 an existing one.")));
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "append_result is not a composite type");

	if (!batch->all_ids_given)
	{
		pg_uuid_t  *ids = palloc(sizeof(pg_uuid_t) * batch->count);
		int			next = 0;

		GenerateUuidV7(ids, batch->count);
		for (int i = 0; i < batch->count; i++)
			if (!batch->events[i].id_given)
				batch->events[i].id = ids[next++];
	}

	writer = LogWriterOpen(operation);
	RefuseAppendOnSubscriber(LogWriterEvents(writer));
	/* every event matches its type's schema before anything is written */
	CheckBatchSchemas(batch);
	/* before any stream is locked: see LogOffsetForWrite */
	offset = LogOffsetForWrite(false);
	first_revision = LockAndCheckStream(writer, stream_id, batch, expect, now,
										offset, &key, &result, &spi_connected);
	if (first_revision >= 0)
	{
		result.xid = key;
		if (PrepareProjectionsForAppend(batch))
		{
			/* not in SPI's memory: the rows outlive our connection */
			MemoryContext old = MemoryContextSwitchTo(call_context);

			inline_rows = EventRowsCreate(batch->count);
			MemoryContextSwitchTo(old);
		}
		for (int i = 0; i < batch->count; i++)
		{
			int64		position = LogWriterInsertEvent(writer, result.xid,
														stream_id,
														first_revision + i,
														&batch->events[i], now,
														inline_rows);

			if (i == 0)
				result.first_position = position;
			result.last_position = position;
		}
		result.last_revision = first_revision + batch->count - 1;
		CountAppend(batch->count);
	}
	/* disconnect first: AFTER triggers fired on close run outside our SPI */
	if (spi_connected)
		SPI_finish();
	LogWriterClose(writer);
	/* a retry's events were applied when they were first appended */
	if (inline_rows != NULL)
		ApplyInlineProjections(inline_rows);

	values[0] = PointerGetDatum(stream_id);
	values[1] = Int64GetDatum(result.last_revision);
	values[2] = Int64GetDatum(result.first_position);
	values[3] = Int64GetDatum(result.last_position);
	values[4] = FullTransactionIdGetDatum(result.xid);
	return HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls));
}

/* The expected_revision argument at argno. */
static Expectation
GetExpectation(FunctionCallInfo fcinfo, int argno)
{
	Expectation expect;

	expect.any = PG_ARGISNULL(argno);
	expect.revision = expect.any ? 0 : PG_GETARG_INT64(argno);
	return expect;
}

/* SQL: append_to_stream(stream_id, events jsonb, expected_revision) */
Datum
eventstore_append_to_stream(PG_FUNCTION_ARGS)
{
	text	   *stream_id = RequireStreamId(fcinfo, 0);
	EventBatch *batch;

	RequireMeaningfulName(VARDATA_ANY(stream_id), VARSIZE_ANY_EXHDR(stream_id),
						  "stream_id", -1);
	RequireArgNotNull(fcinfo, 1, "events", "Pass a JSON array of event objects.");
	batch = EventBatchFromJsonb(PG_GETARG_JSONB_P(1));
	PG_RETURN_DATUM(AppendBatch(fcinfo, "append_to_stream", stream_id, batch,
								GetExpectation(fcinfo, 2)));
}

/*
 * SQL: append_event(stream_id, event_type, data, metadata,
 *					 expected_revision, event_id)
 */
Datum
eventstore_append_event(PG_FUNCTION_ARGS)
{
	text	   *stream_id = RequireStreamId(fcinfo, 0);
	Jsonb	   *data;
	EventBatch *batch;

	RequireMeaningfulName(VARDATA_ANY(stream_id), VARSIZE_ANY_EXHDR(stream_id),
						  "stream_id", -1);
	RequireArgNotNull(fcinfo, 1, "event_type",
					  "Pass the event's type, for example 'ItemAdded'.");
	data = PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2);
	if (data == NULL)
		data = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")));
	batch = EventBatchFromOne(PG_GETARG_TEXT_PP(1), data,
							  PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P(3),
							  PG_ARGISNULL(5) ? NULL : PG_GETARG_UUID_P(5));
	PG_RETURN_DATUM(AppendBatch(fcinfo, "append_event", stream_id, batch,
								GetExpectation(fcinfo, 4)));
}
