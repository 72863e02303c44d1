/*
 * log/log_order.c
 *		Places in the global log's order, (transaction_id, global_position):
 *		resolving a position to its place, comparing places, and the read
 *		horizon below which the log is complete.
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

/* The place before every event: where position 0 (or none) stands. */
const LogPlace LogStart = {{0}, 0};

/*
 * The place of the event at `position`, seen through `snapshot`; false when
 * no event has that position.  Position 0 is the start of the log.
 */
static bool
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
	ScanKeyInit(&key, EVENTS_GLOBAL_POSITION, BTEqualStrategyNumber, F_INT8EQ,
				Int64GetDatum(position));
	scan = systable_beginscan(events, RelationGetPrimaryKeyIndex(events), true,
							  snapshot, 1, &key);
	tuple = systable_getnext(scan);
	if (tuple != NULL)
	{
		bool		isnull;

		place->xid = DatumGetFullTransactionId(heap_getattr(tuple,
															EVENTS_TRANSACTION_ID,
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

	RequireNonNegative(position, argname,
					   "Pass the global_position of an event, or 0 for the start of the log.");
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
 * The read horizon of a snapshot as an xid8: its xmin, with its epoch.
 * Every event below it is committed or never will be.
 */
FullTransactionId
LogHorizonOf(Snapshot snapshot)
{
	FullTransactionId next = ReadNextFullTransactionId();
	uint32		epoch = EpochFromFullTransactionId(next);

	/* xmin is at most next, and less than 2^31 behind it */
	if (snapshot->xmin > XidFromFullTransactionId(next))
		epoch--;
	return FullTransactionIdFromEpochAndXid(epoch, snapshot->xmin);
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
