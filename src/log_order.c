/*
 * log_order.c
 *		Places in the global log's order, (transaction_id, global_position):
 *		resolving a position to its place, and comparing places.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/table.h"
#include "pg_eventstore.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"

/* The place before every event: where position 0 (or none) stands. */
const LogPlace LogStart = {{0}, 0};

/*
 * The place of the event at `position`, seen through `snapshot`; false when
 * no event has that position.  Position 0 is the start of the log.
 */
bool
LookupLogPlace(int64 position, Snapshot snapshot, LogPlace *place)
{
	Relation	events;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	bool		found = false;

	if (position == 0)
	{
		*place = LogStart;
		return true;
	}

	events = table_open(EventstoreRelid("events"), AccessShareLock);
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT8EQ,
				Int64GetDatum(position));
	scan = systable_beginscan(events, RelationGetPrimaryKeyIndex(events), true,
							  snapshot, 1, &key);
	tuple = systable_getnext(scan);
	if (tuple != NULL)
	{
		bool		isnull;

		place->xid = DatumGetFullTransactionId(heap_getattr(tuple, 2,
															RelationGetDescr(events),
															&isnull));
		place->position = position;
		found = true;
	}
	systable_endscan(scan);
	table_close(events, NoLock);
	return found;
}

/*
 * Like LookupLogPlace, but a negative position is an error naming argname,
 * and one not in the log is SE003 with the caller's hint.
 */
LogPlace
RequireLogPlace(int64 position, Snapshot snapshot, const char *argname,
				const char *hint)
{
	LogPlace	place;

	if (position < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be negative", argname),
				 errdetail("Got " INT64_FORMAT ".", position),
				 errhint("Pass the global_position of an event, or 0 for the start of the log.")));
	if (!LookupLogPlace(position, snapshot, &place))
		ereport(ERROR,
				(errcode(ERRCODE_ES_UNKNOWN_POSITION),
				 errmsg("position " INT64_FORMAT " is not in the event log", position),
				 errhint("%s", hint)));
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
