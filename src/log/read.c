/*
 * log/read.c
 *		read_stream, read_all and stream_revision.
 *
 * read_all serves the global log in the order (transaction_id,
 * global_position) and returns only events keyed below the reader's
 * horizon: the xmin of its snapshot, as a log key (incarnation.c).  Every
 * transaction below it is over, so every event they committed is visible;
 * any event that becomes visible later belongs to a transaction at or above
 * that horizon, and no event is keyed below its own transaction, so it
 * comes after everything returned so far.  A consumer that passes back the position of
 * the last event it received therefore never skips or repeats one, however
 * late a transaction that took its positions early commits.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_type.h"
#include "core/args.h"
#include "core/catalog.h"
#include "core/kept_plans.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "log/log.h"
#include "log/type_scan.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "access/genam.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/xid8.h"

PG_FUNCTION_INFO_V1(eventstore_read_stream);
PG_FUNCTION_INFO_V1(eventstore_read_all);
PG_FUNCTION_INFO_V1(eventstore_stream_revision);

static LogScanPlans read_all_plans;
static SPIPlanPtr revision_plan;

/* for a 0.2.0 schema, read until ALTER EXTENSION UPDATE: no tombstones */
static SPIPlanPtr revision_0_2_plan;

/* Do the streams rows carry delete_stream's tombstones (0.3.0 on)? */
static bool
StreamsHaveTombstones(void)
{
	return get_attnum(EventstoreRelid("streams"), "deleted_revision") ==
		STREAMS_DELETED_REVISION;
}

/*
 * The revision up to which the stream reads as deleted (delete_stream), or
 * -1: read through `snapshot`, the one its events are read in, so that a
 * deletion is seen whole or not at all.
 */
static int64
StreamTombstone(text *stream_id, Snapshot snapshot)
{
	Relation	streams;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	int64		deleted = -1;

	if (!StreamsHaveTombstones())
		return -1;
	streams = table_open(EventstoreRelid("streams"), AccessShareLock);
	ScanKeyInit(&key, STREAMS_STREAM_ID, BTEqualStrategyNumber, F_TEXTEQ,
				PointerGetDatum(stream_id));
	scan = systable_beginscan(streams, RelationGetPrimaryKeyIndex(streams),
							  true, snapshot, 1, &key);
	if ((tuple = systable_getnext(scan)) != NULL)
	{
		bool		isnull;
		Datum		value = heap_getattr(tuple, STREAMS_DELETED_REVISION,
										 RelationGetDescr(streams), &isnull);

		if (!isnull)
			deleted = DatumGetInt64(value);
	}
	systable_endscan(scan);
	table_close(streams, AccessShareLock);
	return deleted;
}

/* The max_count argument: NULL for no limit, else at least 1. */
static Datum
GetMaxCount(FunctionCallInfo fcinfo, int argno, char *null_flag)
{
	int32		max_count;

	*null_flag = ' ';
	if (PG_ARGISNULL(argno))
	{
		*null_flag = 'n';
		return (Datum) 0;
	}
	max_count = PG_GETARG_INT32(argno);
	RequireAtLeastOne(max_count, "max_count", "Pass NULL to read without a limit.");
	return Int64GetDatum(max_count);
}

/*
 * Put up to max_count (-1: no limit) of the stream's events into the
 * function's result, from revision `from` on in the scan's direction,
 * through the (stream_id, revision) index and the active snapshot: what
 * "SELECT * ... WHERE stream_id = $1 AND revision >= $2 ORDER BY revision
 * LIMIT $3" returns, without an executor of its own (whose start-up cost a
 * page of a stream as much as reading it).
 */
static void
ScanStream(FunctionCallInfo fcinfo, text *stream_id, int64 from,
		   int64 max_count, bool backwards, int64 deleted)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Relation	events = table_open(EventstoreRelid("events"), AccessShareLock);
	Relation	index = index_open(EventstoreRelid("events_stream_id_revision_key"),
								   AccessShareLock);
	Snapshot	snapshot = GetActiveSnapshot();
	TupleTableSlot *slot = table_slot_create(events, NULL);
	ScanKeyData keys[3];
	int			nkeys;
	IndexScanDesc scan;
	int64		count = 0;

	/* index column numbers; the stream under its column's collation */
	ScanKeyEntryInitialize(&keys[0], 0, 1, BTEqualStrategyNumber, InvalidOid,
						   TupleDescAttr(RelationGetDescr(events),
										 EVENTS_STREAM_ID - 1)->attcollation,
						   F_TEXTEQ, PointerGetDatum(stream_id));
	/* nothing up to a tombstone: the stream reads from after it */
	if (!backwards && from <= deleted)
		from = deleted + 1;
	/* a bound at the stream's very start or end holds for every revision */
	nkeys = from == (backwards ? PG_INT64_MAX : 0) ? 1 : 2;
	if (backwards)
		ScanKeyInit(&keys[1], 2, BTLessEqualStrategyNumber, F_INT8LE,
					Int64GetDatum(from));
	else
		ScanKeyInit(&keys[1], 2, BTGreaterEqualStrategyNumber, F_INT8GE,
					Int64GetDatum(from));
	if (backwards && deleted >= 0)
	{
		ScanKeyInit(&keys[nkeys], 2, BTGreaterStrategyNumber, F_INT8GT,
					Int64GetDatum(deleted));
		nkeys++;
	}

	scan = index_beginscan(events, index, snapshot, nkeys, 0);
	index_rescan(scan, keys, nkeys, NULL, 0);
	while ((max_count < 0 || count < max_count) &&
		   index_getnext_slot(scan, backwards ? BackwardScanDirection
							  : ForwardScanDirection, slot))
	{
		tuplestore_puttupleslot(rsinfo->setResult, slot);
		count++;
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, NoLock);
	table_close(events, NoLock);
}

/*
 * SQL: read_stream(stream_id, from_revision, max_count, backwards)
 * A stream that does not exist reads as empty, and so does a deleted one:
 * a stream re-created after a soft deletion reads from its first revision
 * after the deletion on.
 */
Datum
eventstore_read_stream(PG_FUNCTION_ARGS)
{
	text	   *stream_id = RequireStreamId(fcinfo, 0);
	bool		backwards = !PG_ARGISNULL(3) && PG_GETARG_BOOL(3);
	int64		from;
	char		no_limit;
	Datum		max_count;

	if (PG_ARGISNULL(1))
		from = backwards ? PG_INT64_MAX : 0;
	else
	{
		from = PG_GETARG_INT64(1);
		if (backwards && from == -1)
			from = PG_INT64_MAX;
		else if (from < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("from_revision must be a revision >= 0"),
					 errdetail("Got " INT64_FORMAT ".", from),
					 errhint(backwards ? "Pass NULL or -1 to read backwards from the stream's end."
							 : "Pass 0 to read from the stream's start.")));
	}
	max_count = GetMaxCount(fcinfo, 2, &no_limit);

	InitMaterializedSRF(fcinfo, 0);
	ScanStream(fcinfo, stream_id, from,
			   no_limit == 'n' ? -1 : DatumGetInt64(max_count), backwards,
			   StreamTombstone(stream_id, GetActiveSnapshot()));
	return (Datum) 0;
}

/* Validate read_all's consumer-group arguments; false when not grouped. */
static bool
GetGroup(FunctionCallInfo fcinfo, int32 *member, int32 *size)
{
	if (PG_ARGISNULL(3) && PG_ARGISNULL(4))
		return false;
	if (PG_ARGISNULL(3) || PG_ARGISNULL(4))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("group_member and group_size must be given together"),
				 errhint("Pass both to read one partition of the log, or neither to read all of it.")));
	*member = PG_GETARG_INT32(3);
	*size = PG_GETARG_INT32(4);
	if (*size < 1 || *member < 0 || *member >= *size)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("group_member must be between 0 and group_size - 1"),
				 errdetail("Got group_member %d and group_size %d.", *member, *size),
				 errhint("Number the members of a group of N consumers 0 to N - 1.")));
	return true;
}

/*
 * SQL: read_all(after_position, max_count, event_types, group_member,
 *				 group_size)
 */
Datum
eventstore_read_all(PG_FUNCTION_ARGS)
{
	int64		after = PG_ARGISNULL(0) ? 0 : PG_GETARG_INT64(0);
	int32		member = 0;
	int32		size = 1;
	LogPlace	cursor;
	bool		grouped = GetGroup(fcinfo, &member, &size);
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	Oid			argtypes[7] = {XID8OID, INT8OID, TEXTARRAYOID, INT4OID, INT4OID,
	INT8OID, XID8OID};
	SPIPlanPtr	plan;

	RequireNonNegative(after, "after_position",
					   "Pass NULL or 0 to read from the start of the log.");
	values[5] = GetMaxCount(fcinfo, 1, &nulls[5]);
	values[2] = PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2);
	nulls[2] = PG_ARGISNULL(2) ? 'n' : ' ';
	values[3] = Int32GetDatum(member);
	values[4] = Int32GetDatum(size);
	nulls[3] = grouped ? ' ' : 'n';

	InitMaterializedSRF(fcinfo, 0);
	ConnectSpi();

	/* resolve the cursor to its place in log order (0: the start) */
	cursor = RequireLogPlace(after, GetActiveSnapshot(), "after_position",
							 "Pass the global_position of the last event received, or NULL to read from the start.");
	values[0] = FullTransactionIdGetDatum(cursor.xid);
	values[1] = Int64GetDatum(cursor.position);
	/* read-only SPI scans in the active snapshot: the horizon's own */
	values[6] = FullTransactionIdGetDatum(LogHorizonOf(GetActiveSnapshot()));

	/* a few types: merged scans of each type's events (type_scan.c) */
	plan = LogScanPlan(&read_all_plans, &values[2], PG_ARGISNULL(2),
					   "(transaction_id, global_position) > ($1, $2)"
					   " AND transaction_id < $7"
					   " AND ($4 IS NULL OR"
					   " eventstore.stream_partition(stream_id, $5) = $4)",
					   "$3", "$6", 7, argtypes);
	ExecKeptPlanIntoSRF(fcinfo, plan, values, nulls, 0);
	SPI_finish();
	return (Datum) 0;
}

/*
 * SQL: stream_revision(stream_id): the last event's revision, or NULL when
 * the stream does not exist or reads as deleted
 */
Datum
eventstore_stream_revision(PG_FUNCTION_ARGS)
{
	Datum		values[1] = {PG_GETARG_DATUM(0)};
	Oid			argtypes[1] = {TEXTOID};
	int64		revision;
	bool		found;

	if (StreamsHaveTombstones())
		found = RunKeptInt64Query(&revision_plan,
								  "SELECT revision FROM eventstore.streams"
								  " WHERE stream_id = $1"
								  " AND revision IS DISTINCT FROM deleted_revision",
								  1, argtypes, values, &revision);
	else
		found = RunKeptInt64Query(&revision_0_2_plan,
								  "SELECT revision FROM eventstore.streams"
								  " WHERE stream_id = $1",
								  1, argtypes, values, &revision);
	if (!found)
		PG_RETURN_NULL();
	PG_RETURN_INT64(revision);
}
