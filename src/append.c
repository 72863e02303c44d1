/*
 * append.c
 *		append_to_stream and append_event: optimistic concurrency on one
 *		stream's row, idempotent retries, and the insert of the batch.
 *
 * Appends to one stream serialize on that stream's row in
 * eventstore.streams, and on nothing else.  The expected revision is checked
 * while that row is locked and before any global position is taken, so a
 * losing writer burns no position.  Batches without caller-chosen ids take
 * the short path: one UPDATE both checks and advances the stream.  Batches
 * with ids lock the row first, so that a retry racing with its original
 * sees the original once it commits and succeeds as a retry.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "pg_eventstore.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

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

/* What the caller expects of the stream before the append. */
typedef struct Expectation
{
	bool		any;			/* expected_revision was NULL */
	int64		revision;		/* otherwise: -1, -2 or n >= 0 */
} Expectation;

static SPIPlanPtr advance_any_plan;
static SPIPlanPtr advance_expected_plan;
static SPIPlanPtr create_stream_plan;
static SPIPlanPtr lock_stream_plan;
static SPIPlanPtr set_revision_plan;
static SPIPlanPtr current_revision_plan;
static SPIPlanPtr find_ids_plan;
static SPIPlanPtr insert_one_plan;
static SPIPlanPtr insert_many_plan;

static const Oid stream_args[] = {TEXTOID, INT8OID, TIMESTAMPTZOID, INT8OID};

/* Retries of "create the stream row" lost to a concurrent creator. */
#define MAX_CREATE_RACES 10

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

/* Raise the conflict error; actual < 0 means the stream does not exist. */
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
					   : "none (the stream does not exist)"),
			 errhint("Read the stream to decide again, then retry with its current revision.")));
}

/* The committed revision of a stream, for an error report. */
static bool
CurrentRevision(text *stream_id, int64 *revision)
{
	Datum		values[1] = {PointerGetDatum(stream_id)};
	SPIPlanPtr	plan = KeptPlan(&current_revision_plan,
								"SELECT revision FROM eventstore.streams"
								" WHERE stream_id = $1",
								1, stream_args);

	ExecKeptPlan(plan, values, NULL, false, 1);
	return GetInt64Result(1, revision);
}

/*
 * Insert the stream's row for a first append of count events; false when
 * another transaction created it first.
 */
static bool
CreateStream(text *stream_id, int count, TimestampTz now)
{
	Datum		values[3] = {PointerGetDatum(stream_id), Int64GetDatum(count),
	TimestampTzGetDatum(now)};
	SPIPlanPtr	plan = KeptPlan(&create_stream_plan,
								"INSERT INTO eventstore.streams"
								" (stream_id, revision, created_at, updated_at)"
								" VALUES ($1, $2 - 1, $3, $3)"
								" ON CONFLICT (stream_id) DO NOTHING",
								3, stream_args);

	return ExecKeptPlan(plan, values, NULL, false, 0) == 1;
}

/*
 * The short path, for batches whose ids we generated: check and advance the
 * stream in one statement.  Returns the revision of the batch's first event.
 */
static int64
AdvanceStream(text *stream_id, int count, Expectation expect, TimestampTz now)
{
	Datum		values[4] = {PointerGetDatum(stream_id), Int64GetDatum(count),
	TimestampTzGetDatum(now), Int64GetDatum(expect.revision)};
	int64		last;
	int64		actual;

	for (int attempt = 0; attempt < MAX_CREATE_RACES; attempt++)
	{
		if (expect.any || expect.revision == ES_EXPECT_STREAM_EXISTS)
		{
			/* READ COMMITTED re-checks the row after waiting for its locker */
			ExecKeptPlan(KeptPlan(&advance_any_plan,
								  "UPDATE eventstore.streams"
								  " SET revision = revision + $2, updated_at = $3"
								  " WHERE stream_id = $1 RETURNING revision",
								  3, stream_args),
						 values, NULL, false, 0);
			if (GetInt64Result(1, &last))
				return last - count + 1;
			if (!expect.any)
				ReportWrongRevision(stream_id, expect, false, 0);
		}
		else if (expect.revision >= 0)
		{
			ExecKeptPlan(KeptPlan(&advance_expected_plan,
								  "UPDATE eventstore.streams"
								  " SET revision = revision + $2, updated_at = $3"
								  " WHERE stream_id = $1 AND revision = $4"
								  " RETURNING revision",
								  4, stream_args),
						 values, NULL, false, 0);
			if (GetInt64Result(1, &last))
				return last - count + 1;
			if (CurrentRevision(stream_id, &actual))
				ReportWrongRevision(stream_id, expect, true, actual);
			ReportWrongRevision(stream_id, expect, false, 0);
		}

		/* no stream yet, and NULL or -1 allows creating it */
		if (CreateStream(stream_id, count, now))
			return 0;
		if (expect.revision == ES_EXPECT_NO_STREAM && !expect.any)
		{
			if (CurrentRevision(stream_id, &actual))
				ReportWrongRevision(stream_id, expect, true, actual);
			ReportWrongRevision(stream_id, expect, false, 0);
		}
		/* a concurrent first append created the stream: advance it instead */
	}
	elog(ERROR, "stream \"%s\" could not be created or advanced",
		 text_to_cstring(stream_id));
	return 0;					/* keep the compiler quiet */
}

/* Lock the stream's row; false when the stream does not exist. */
static bool
LockStream(text *stream_id, int64 *revision)
{
	Datum		values[1] = {PointerGetDatum(stream_id)};

	ExecKeptPlan(KeptPlan(&lock_stream_plan,
						  "SELECT revision FROM eventstore.streams"
						  " WHERE stream_id = $1 FOR UPDATE",
						  1, stream_args),
				 values, NULL, false, 1);
	return GetInt64Result(1, revision);
}

/* Does revision `first` fit where the caller expected the batch to go? */
static bool
FitsExpectation(Expectation expect, int64 first)
{
	if (expect.any || expect.revision == ES_EXPECT_STREAM_EXISTS)
		return true;
	if (expect.revision == ES_EXPECT_NO_STREAM)
		return first == 0;
	return first == expect.revision + 1;
}

/* Raise the error for an id that is stored, but not as this very batch. */
static void
ReportStoredId(pg_uuid_t *id, HeapTuple row, TupleDesc desc)
{
	bool		isnull;
	char	   *id_text = DatumGetCString(DirectFunctionCall1(uuid_out,
															  UUIDPGetDatum(id)));
	char	   *stream = TextDatumGetCString(SPI_getbinval(row, desc, 2, &isnull));
	int64		revision = DatumGetInt64(SPI_getbinval(row, desc, 3, &isnull));

	ereport(ERROR,
			(errcode(ERRCODE_ES_DUPLICATE_EVENT_ID),
			 errmsg("event id %s is already stored", id_text),
			 errdetail("It is stored at revision %lld of stream \"%s\".",
					   (long long) revision, stream),
			 errhint("A retry must resend the original batch unchanged to the same stream; a new event needs a new id.")));
}

/*
 * With the stream row locked, look for the batch's ids in the log.  Returns
 * true, with *result filled from the stored events, when the batch is a
 * retry of one already appended whole at this place in this stream; false
 * when none of the ids is stored; raises an error otherwise.
 */
static bool
FindRetry(text *stream_id, EventBatch *batch, Expectation expect,
		  AppendResult *result)
{
	Datum	   *ids = palloc(sizeof(Datum) * batch->count);
	int			nids = 0;
	Datum		values[1];
	Oid			argtypes[1] = {UUIDARRAYOID};
	TupleDesc	desc;
	int64		first_revision = 0;

	for (int i = 0; i < batch->count; i++)
		if (batch->events[i].id_given)
			ids[nids++] = UUIDPGetDatum(&batch->events[i].id);
	values[0] = PointerGetDatum(construct_array(ids, nids, UUIDOID, UUID_LEN,
												false, TYPALIGN_CHAR));
	ExecKeptPlan(KeptPlan(&find_ids_plan,
						  "SELECT event_id, stream_id, revision, global_position,"
						  " transaction_id, event_type, data"
						  " FROM eventstore.events WHERE event_id = ANY ($1)",
						  1, argtypes),
				 values, NULL, false, 0);
	if (SPI_processed == 0)
		return false;

	desc = SPI_tuptable->tupdesc;
	for (int i = 0; i < batch->count; i++)
	{
		EventInput *event = &batch->events[i];
		HeapTuple	row = NULL;
		bool		isnull;
		int64		revision;
		FullTransactionId xid;

		for (uint64 r = 0; event->id_given && r < SPI_processed; r++)
		{
			HeapTuple	candidate = SPI_tuptable->vals[r];
			pg_uuid_t  *stored = DatumGetUUIDP(SPI_getbinval(candidate, desc, 1,
															 &isnull));

			if (memcmp(stored, &event->id, sizeof(pg_uuid_t)) == 0)
				row = candidate;
		}
		if (row == NULL)
		{
			/* some ids are stored, this one is not: a partial batch */
			HeapTuple	any = SPI_tuptable->vals[0];

			ReportStoredId(DatumGetUUIDP(SPI_getbinval(any, desc, 1, &isnull)),
						   any, desc);
		}

		revision = DatumGetInt64(SPI_getbinval(row, desc, 3, &isnull));
		xid = DatumGetFullTransactionId(SPI_getbinval(row, desc, 5, &isnull));
		if (i == 0)
		{
			first_revision = revision;
			result->first_position = DatumGetInt64(SPI_getbinval(row, desc, 4,
																 &isnull));
			result->xid = xid;
		}
		result->last_position = DatumGetInt64(SPI_getbinval(row, desc, 4, &isnull));
		result->last_revision = revision;

		if (strcmp(TextDatumGetCString(SPI_getbinval(row, desc, 2, &isnull)),
				   text_to_cstring(stream_id)) != 0 ||
			revision != first_revision + i ||
			!FullTransactionIdEquals(xid, result->xid) ||
			strcmp(TextDatumGetCString(SPI_getbinval(row, desc, 6, &isnull)),
				   text_to_cstring(event->type)) != 0 ||
			compareJsonbContainers(&DatumGetJsonbP(SPI_getbinval(row, desc, 7,
																 &isnull))->root,
								   &event->data->root) != 0 ||
			!FitsExpectation(expect, first_revision))
			ReportStoredId(&event->id, row, desc);
	}
	return true;
}

/*
 * The careful path, for batches with caller-chosen ids: lock the stream row,
 * recognise a retry, then check the expectation.  Returns the revision of
 * the batch's first event, or -1 with *result filled for a retry.
 */
static int64
LockAndCheckStream(text *stream_id, EventBatch *batch, Expectation expect,
				   TimestampTz now, AppendResult *result)
{
	for (int attempt = 0; attempt < MAX_CREATE_RACES; attempt++)
	{
		int64		current;

		if (LockStream(stream_id, &current))
		{
			Datum		values[3] = {PointerGetDatum(stream_id),
				Int64GetDatum(current + batch->count),
			TimestampTzGetDatum(now)};

			if (FindRetry(stream_id, batch, expect, result))
				return -1;
			if (!expect.any && expect.revision != ES_EXPECT_STREAM_EXISTS &&
				expect.revision != current)
				ReportWrongRevision(stream_id, expect, true, current);
			ExecKeptPlan(KeptPlan(&set_revision_plan,
								  "UPDATE eventstore.streams"
								  " SET revision = $2, updated_at = $3"
								  " WHERE stream_id = $1",
								  3, stream_args),
						 values, NULL, false, 0);
			return current + 1;
		}

		if (FindRetry(stream_id, batch, expect, result))
			return -1;			/* cannot happen: its stream would exist */
		if (!expect.any && expect.revision != ES_EXPECT_NO_STREAM)
			ReportWrongRevision(stream_id, expect, false, 0);
		if (CreateStream(stream_id, batch->count, now))
			return 0;
		/* a concurrent first append created the stream: lock it instead */
	}
	elog(ERROR, "stream \"%s\" could not be created or locked",
		 text_to_cstring(stream_id));
	return 0;					/* keep the compiler quiet */
}

/*
 * Insert the batch's events from first_revision on, in one statement, and
 * note their first and last positions.
 */
static void
InsertEvents(text *stream_id, EventBatch *batch, int64 first_revision,
			 TimestampTz now, AppendResult *result)
{
	Datum		xid = FullTransactionIdGetDatum(result->xid);
	int			n = batch->count;
	bool		isnull;

	if (n == 1)
	{
		EventInput *e = &batch->events[0];
		Oid			argtypes[8] = {XID8OID, TEXTOID, INT8OID, UUIDOID, TEXTOID,
		JSONBOID, JSONBOID, TIMESTAMPTZOID};
		Datum		values[8] = {xid, PointerGetDatum(stream_id),
			Int64GetDatum(first_revision), UUIDPGetDatum(&e->id),
			PointerGetDatum(e->type), JsonbPGetDatum(e->data),
		JsonbPGetDatum(e->metadata), TimestampTzGetDatum(now)};

		ExecKeptPlan(KeptPlan(&insert_one_plan,
							  "INSERT INTO eventstore.events VALUES"
							  " (nextval('eventstore.global_position_seq'),"
							  " $1, $2, $3, $4, $5, $6, $7, $8)"
							  " RETURNING global_position",
							  8, argtypes),
					 values, NULL, false, 0);
	}
	else
	{
		Oid			argtypes[8] = {XID8OID, TEXTOID, INT8OID, TIMESTAMPTZOID,
		UUIDARRAYOID, TEXTARRAYOID, JSONBARRAYOID, JSONBARRAYOID};
		Datum	   *ids = palloc(sizeof(Datum) * n);
		Datum	   *types = palloc(sizeof(Datum) * n);
		Datum	   *datas = palloc(sizeof(Datum) * n);
		Datum	   *metas = palloc(sizeof(Datum) * n);
		Datum		values[8];

		for (int i = 0; i < n; i++)
		{
			ids[i] = UUIDPGetDatum(&batch->events[i].id);
			types[i] = PointerGetDatum(batch->events[i].type);
			datas[i] = JsonbPGetDatum(batch->events[i].data);
			metas[i] = JsonbPGetDatum(batch->events[i].metadata);
		}
		values[0] = xid;
		values[1] = PointerGetDatum(stream_id);
		values[2] = Int64GetDatum(first_revision);
		values[3] = TimestampTzGetDatum(now);
		values[4] = PointerGetDatum(construct_array(ids, n, UUIDOID, UUID_LEN,
													false, TYPALIGN_CHAR));
		values[5] = PointerGetDatum(construct_array(types, n, TEXTOID, -1,
													false, TYPALIGN_INT));
		values[6] = PointerGetDatum(construct_array(datas, n, JSONBOID, -1,
													false, TYPALIGN_INT));
		values[7] = PointerGetDatum(construct_array(metas, n, JSONBOID, -1,
													false, TYPALIGN_INT));
		ExecKeptPlan(KeptPlan(&insert_many_plan,
							  "INSERT INTO eventstore.events SELECT"
							  " nextval('eventstore.global_position_seq'),"
							  " $1, $2, $3 + e.ord - 1, e.id, e.type, e.data,"
							  " e.meta, $4"
							  " FROM unnest($5, $6, $7, $8) WITH ORDINALITY"
							  " AS e(id, type, data, meta, ord)"
							  " RETURNING global_position",
							  8, argtypes),
					 values, NULL, false, 0);
	}

	if (SPI_processed != (uint64) n)
		elog(ERROR, "inserted " UINT64_FORMAT " events of %d", SPI_processed, n);
	result->first_position = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
														 SPI_tuptable->tupdesc,
														 1, &isnull));
	result->last_position = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[n - 1],
														SPI_tuptable->tupdesc,
														1, &isnull));
	result->last_revision = first_revision + n - 1;
}

/* Append a validated batch and return the append_result datum. */
static Datum
AppendBatch(FunctionCallInfo fcinfo, text *stream_id, EventBatch *batch,
			Expectation expect)
{
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	AppendResult result;
	TupleDesc	desc;
	Datum		values[5];
	bool		nulls[5] = {false};
	int64		first_revision;

	if (!expect.any && expect.revision < ES_EXPECT_STREAM_EXISTS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("expected_revision must be NULL, -1, -2 or a revision >= 0"),
				 errdetail("Got " INT64_FORMAT ".", expect.revision),
				 errhint("NULL appends at any revision, -1 requires a new stream, -2 an existing one.")));
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "append_result is not a composite type");

	for (int i = 0; i < batch->count; i++)
		if (!batch->events[i].id_given)
			GenerateUuidV7(&batch->events[i].id, 1);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (batch->any_id_given)
		first_revision = LockAndCheckStream(stream_id, batch, expect, now,
											&result);
	else
		first_revision = AdvanceStream(stream_id, batch->count, expect, now);
	if (first_revision >= 0)
	{
		result.xid = GetTopFullTransactionId();
		InsertEvents(stream_id, batch, first_revision, now, &result);
	}
	SPI_finish();

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

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("events must not be null"),
				 errhint("Pass a JSON array of event objects.")));
	batch = EventBatchFromJsonb(PG_GETARG_JSONB_P(1));
	PG_RETURN_DATUM(AppendBatch(fcinfo, stream_id, batch,
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

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("event_type must not be null"),
				 errhint("Pass the event's type, for example 'ItemAdded'.")));
	data = PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2);
	if (data == NULL)
		data = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")));
	batch = EventBatchFromOne(PG_GETARG_TEXT_PP(1), data,
							  PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P(3),
							  PG_ARGISNULL(5) ? NULL : PG_GETARG_UUID_P(5));
	PG_RETURN_DATUM(AppendBatch(fcinfo, stream_id, batch,
								GetExpectation(fcinfo, 4)));
}
