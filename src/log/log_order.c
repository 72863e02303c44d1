/*
 * log/log_order.c
 *		Places in the global log's order, (transaction_id, global_position):
 *		resolving a position to its place, comparing places, and the key
 *		that keeps each stream's events in revision order.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "core/args.h"
#include "core/catalog.h"
#include "core/errors.h"
#include "core/kept_plans.h"
#include "log/log.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/xid8.h"

static SPIPlanPtr last_xid_plan;
static SPIPlanPtr last_below_plan;

/* The place before every event: where position 0 (or none) stands. */
const LogPlace LogStart = {{0}, 0};

/*
 * The place of the row at `position` in `relation` (the log, or the places
 * of removed events), through its primary key; false when it has none.
 */
static bool
LookupPlaceIn(Relation relation, int64 position, Snapshot snapshot,
			  LogPlace *place)
{
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	bool		found = false;

	ScanKeyInit(&key, EVENTS_GLOBAL_POSITION, BTEqualStrategyNumber, F_INT8EQ,
				Int64GetDatum(position));
	scan = systable_beginscan(relation, RelationGetPrimaryKeyIndex(relation),
							  true, snapshot, 1, &key);
	tuple = systable_getnext(scan);
	if (tuple != NULL)
	{
		*place = LogPlaceOfRow(tuple, RelationGetDescr(relation));
		found = true;
	}
	systable_endscan(scan);
	return found;
}

/*
 * The place of the event at `position`, seen through `snapshot`; false when
 * no event has that position.  Position 0 is the start of the log.  An event
 * removed by archival, retention or hard deletion keeps its place in
 * eventstore.events_archive or eventstore.removed_log_places, so that a
 * cursor or checkpoint at it still resumes where it was.
 */
static bool
LookupLogPlace(Relation events, int64 position, Snapshot snapshot,
			   LogPlace *place)
{
	Oid			removed_relid;
	Relation	removed;
	bool		found;

	if (position == 0)
	{
		*place = LogStart;
		return true;
	}
	if (LookupPlaceIn(events, position, snapshot, place))
		return true;

	/*
	 * An archived event's row in the archive is its place; an event removed
	 * for good left its place in removed_log_places.  (A 0.2.0 schema, read
	 * until ALTER EXTENSION UPDATE, has removed none.)
	 */
	found = false;
	for (int i = 0; i < 2 && !found; i++)
	{
		removed_relid = OptionalEventstoreRelid(i == 0 ? "events_archive"
												: "removed_log_places");
		if (!OidIsValid(removed_relid))
			continue;
		removed = table_open(removed_relid, AccessShareLock);
		found = LookupPlaceIn(removed, position, snapshot, place);
		table_close(removed, AccessShareLock);
	}
	return found;
}

/*
 * Like LookupLogPlace, but a negative position is an error naming argname,
 * and one not in the log an error saying why (SE003 with the caller's hint
 * when it never named an event).
 */
LogPlace
RequireLogPlace(int64 position, Snapshot snapshot, const char *argname,
				const char *hint)
{
	LogPlace	place;
	Relation	events;

	RequireNonNegative(position, argname,
					   "Pass the global_position of an event, or 0 for the start of the log.");
	events = table_open(EventstoreRelid("events"), AccessShareLock);
	if (!LookupLogPlace(events, position, snapshot, &place))
		ReportPositionNotInLog(position, events, snapshot, hint);
	table_close(events, NoLock);
	return place;
}

/* <0, 0, >0 as place a comes before, at, or after place b in log order. */
int
CompareLogPlaces(LogPlace a, LogPlace b)
{
	if (FullTransactionIdPrecedes(a.xid, b.xid))
		return -1;
	if (FullTransactionIdPrecedes(b.xid, a.xid))
		return 1;
	if (a.position != b.position)
		return a.position < b.position ? -1 : 1;
	return 0;
}

/*
 * The place of a row of eventstore.events, or of any row whose first
 * columns are the table's first two (global_position, transaction_id).
 */
LogPlace
LogPlaceOfRow(HeapTuple row, TupleDesc desc)
{
	LogPlace	place;
	bool		isnull;

	place.position = DatumGetInt64(heap_getattr(row, EVENTS_GLOBAL_POSITION,
												desc, &isnull));
	place.xid = DatumGetFullTransactionId(heap_getattr(row, EVENTS_TRANSACTION_ID,
													   desc, &isnull));
	return place;
}

/*
 * The place of the last event below `horizon` in log order, seen through
 * `snapshot`: the head a reader at that horizon has reached (read_all's
 * readable head); false when there is none.  The ORDER BY makes it a
 * backward scan of the log-order index, whatever the horizon.  The caller
 * is connected to SPI.
 */
bool
LastPlaceBelow(FullTransactionId horizon, Snapshot snapshot, LogPlace *place)
{
	Oid			argtypes[1] = {XID8OID};
	Datum		values[1] = {FullTransactionIdGetDatum(horizon)};

	/* the events table's first two columns, so LogPlaceOfRow reads them */
	QueryKeptPlanThrough(KeptPlan(&last_below_plan,
								  "SELECT global_position, transaction_id"
								  " FROM eventstore.events WHERE transaction_id < $1"
								  " ORDER BY transaction_id DESC, global_position DESC"
								  " LIMIT 1",
								  1, argtypes),
						 values, NULL, snapshot, 1);
	if (SPI_processed == 0)
		return false;
	*place = LogPlaceOfRow(SPI_tuptable->vals[0], SPI_tuptable->tupdesc);
	return true;
}

/*
 * The transaction id of the newest event committed now ('0' for an empty
 * log): a replay that starts now is complete only once its read horizon has
 * passed it, whatever older transaction still holds the horizon back.  The
 * caller is connected to SPI.
 */
FullTransactionId
LastCommittedXid(void)
{
	Datum		xid;

	QueryKeptPlanThrough(KeptPlan(&last_xid_plan,
								  "SELECT transaction_id FROM eventstore.events"
								  " ORDER BY transaction_id DESC LIMIT 1",
								  0, NULL),
						 NULL, NULL, GetLatestSnapshot(), 0);
	if (!GetFirstResult(&xid))
		return InvalidFullTransactionId;
	return DatumGetFullTransactionId(xid);
}

/*
 * The key (transaction_id) of the event at `revision` of a stream, seen
 * with every write committed and the transaction's own, also of the
 * current command: InvalidFullTransactionId when there is none.
 */
FullTransactionId
StreamEventKey(Relation events, text *stream_id, int64 revision)
{
	ScanKeyData keys[2];
	SysScanDesc scan;
	HeapTuple	tuple;
	FullTransactionId key = InvalidFullTransactionId;

	/*
	 * Under the column's collation, which orders the index (ScanKeyInit's,
	 * C, would descend a text index of another collation the wrong way)
	 */
	ScanKeyEntryInitialize(&keys[0], 0, EVENTS_STREAM_ID, BTEqualStrategyNumber,
						   InvalidOid,
						   TupleDescAttr(RelationGetDescr(events),
										 EVENTS_STREAM_ID - 1)->attcollation,
						   F_TEXTEQ, PointerGetDatum(stream_id));
	ScanKeyInit(&keys[1], EVENTS_REVISION, BTEqualStrategyNumber, F_INT8EQ,
				Int64GetDatum(revision));
	scan = systable_beginscan(events, EventstoreRelid("events_stream_id_revision_key"),
							  true, SnapshotSelf, 2, keys);
	tuple = systable_getnext(scan);
	if (tuple != NULL)
	{
		bool		isnull;

		key = DatumGetFullTransactionId(heap_getattr(tuple, EVENTS_TRANSACTION_ID,
													 RelationGetDescr(events),
													 &isnull));
	}
	systable_endscan(scan);
	return key;
}

/*
 * The key of events appended at `revision` of a stream by a writer whose
 * own key is own_key: the larger of that and the key of the stream's
 * previous event, so a stream's events never come before an earlier
 * revision in log order.  (Appends read the previous key from the stream's
 * row, which they lock anyway; this looks it up in the log.)  (Ties are ordered by position, and a stream's
 * positions are taken in revision order, under its lock.)  Keeping the
 * writer's key as the floor keeps the horizon's proof: no event is ever
 * keyed below the id of the transaction that writes it.
 */
FullTransactionId
StreamOrderedKey(Relation events, FullTransactionId own_key, text *stream_id,
				 int64 revision)
{
	if (revision == 0)
		return own_key;
	return KeyAfter(own_key, StreamEventKey(events, stream_id, revision - 1));
}

/* The larger of a writer's own key and its stream's previous key. */
FullTransactionId
KeyAfter(FullTransactionId own_key, FullTransactionId previous)
{
	return FullTransactionIdFollows(previous, own_key) ? previous : own_key;
}
