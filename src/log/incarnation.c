/*
 * log/incarnation.c
 *		The log's own clock: the offset that turns this cluster's
 *		transaction ids into log keys, and the incarnations of the log, one
 *		per cluster and timeline that wrote or received it.
 *
 * An event's transaction_id is a log key, not a raw transaction id: the
 * appending transaction's id plus the offset of the cluster it runs on
 * (raised to its stream's previous key, see append.c).  The offset is kept
 * in eventstore.log_incarnations, which pg_dump keeps with the log, keyed by
 * the cluster's system identifier.  A cluster that finds no row of its own
 * takes one at its first write, with an offset that puts every key it will
 * ever write after every key in the log; a restore thus costs one row, and
 * nothing per restored event.
 *
 * Each incarnation, a (system identifier, timeline) that wrote the log,
 * also starts its positions at a fresh block of POSITION_BLOCK_BITS bits,
 * so that a position written on a timeline that was lost (a failover that
 * lost WAL) or after the copy a restore was made from is never issued
 * again: a cursor taken from it stays an error rather than naming another
 * event.
 */
#include "postgres.h"

#include "access/transam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "core/catalog.h"
#include "core/errors.h"
#include "core/kept_plans.h"
#include "fmgr.h"
#include "log/log.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/snapmgr.h"
#include "utils/xid8.h"

/* Each incarnation's positions start at a multiple of 2^40. */
#define POSITION_BLOCK_BITS 40

/*
 * What this backend knows of the current database's incarnations.  Only
 * rows other transactions committed are remembered (a row of our own may
 * still roll back); a dropped and re-created extension has a new table.
 */
typedef struct KnownIncarnation
{
	Oid			table;			/* eventstore.log_incarnations */
	bool		offset_known;	/* a row of this system was seen */
	int64		offset;
	TimeLineID	written_on;		/* this timeline's row was seen; 0: not */
} KnownIncarnation;

static KnownIncarnation known;

static SPIPlanPtr cluster_row_plan;
static SPIPlanPtr own_row_plan;
static SPIPlanPtr any_row_plan;
static SPIPlanPtr last_position_plan;
static SPIPlanPtr insert_plan;
static SPIPlanPtr lost_plan;

/* The system identifier as the table stores it (bigint). */
static Datum
SystemIdentifierDatum(void)
{
	return Int64GetDatum((int64) GetSystemIdentifier());
}

/* Forget what belongs to another table than `table`. */
static void
KnowTable(Oid table)
{
	if (known.table == table)
		return;
	memset(&known, 0, sizeof(known));
	known.table = table;
}

/*
 * Run a query for (xid_offset, xmin) of incarnation rows through `snapshot`;
 * false when it finds none.  A row another transaction committed is
 * remembered, with its timeline as written on when `tli` is given.
 */
static bool
FindOffset(SPIPlanPtr plan, Datum *values, Snapshot snapshot, TimeLineID tli,
		   int64 *offset)
{
	bool		isnull;
	TransactionId xmin;

	QueryKeptPlanThrough(plan, values, NULL, snapshot, 1);
	if (SPI_processed == 0)
		return false;
	*offset = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, 1, &isnull));
	xmin = DatumGetTransactionId(SPI_getbinval(SPI_tuptable->vals[0],
											   SPI_tuptable->tupdesc, 2, &isnull));
	/* a row of our own may still roll back */
	if (!TransactionIdIsCurrentTransactionId(xmin))
	{
		known.offset = *offset;
		known.offset_known = true;
		if (tli != 0)
			known.written_on = tli;
	}
	return true;
}

/* The offset of this cluster's rows through `snapshot`; false: none. */
static bool
FindClusterOffset(Snapshot snapshot, int64 *offset)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {SystemIdentifierDatum()};

	return FindOffset(KeptPlan(&cluster_row_plan,
							   "SELECT xid_offset, xmin FROM eventstore.log_incarnations"
							   " WHERE system_identifier = $1 LIMIT 1",
							   1, argtypes),
					  values, snapshot, 0, offset);
}

/*
 * The read horizon of a snapshot in raw transaction ids: its xmin, with
 * its epoch.  Every transaction below it is over.
 */
static FullTransactionId
XidHorizonOf(Snapshot snapshot)
{
	FullTransactionId next = ReadNextFullTransactionId();
	uint32		epoch = EpochFromFullTransactionId(next);

	/* xmin is at most next, and less than 2^31 behind it */
	if (snapshot->xmin > XidFromFullTransactionId(next))
		epoch--;
	return FullTransactionIdFromEpochAndXid(epoch, snapshot->xmin);
}

/* A raw transaction id moved by `offset` into log keys. */
static FullTransactionId
ShiftedBy(FullTransactionId xid, int64 offset)
{
	return FullTransactionIdFromU64(U64FromFullTransactionId(xid) + (uint64) offset);
}

/*
 * The read horizon of a snapshot as a log key: every event below it is
 * committed or never will be.  A snapshot that sees no incarnation of this
 * cluster sees a log nobody has written here since it was restored: all of
 * it is final, and the horizon is past every key.
 */
FullTransactionId
LogHorizonOf(Snapshot snapshot)
{
	int64		offset;

	if (!LogOffsetSeenBy(snapshot, &offset))
		return FullTransactionIdFromU64(PG_UINT64_MAX);
	return ShiftedBy(XidHorizonOf(snapshot), offset);
}

/* SQL: log_horizon() */
PG_FUNCTION_INFO_V1(eventstore_log_horizon);
Datum
eventstore_log_horizon(PG_FUNCTION_ARGS)
{
	PG_RETURN_FULLTRANSACTIONID(LogHorizonOf(GetActiveSnapshot()));
}

/* The log key of the current transaction, for a write with `offset`. */
FullTransactionId
OwnLogKey(int64 offset)
{
	return ShiftedBy(GetTopFullTransactionId(), offset);
}

/*
 * The offset of this cluster's keys as `snapshot` sees it; false when the
 * snapshot sees no row of this cluster.
 */
bool
LogOffsetSeenBy(Snapshot snapshot, int64 *offset)
{
	Oid			table = OptionalEventstoreRelid("log_incarnations");
	bool		found;

	/* a database still at 0.2.0: keys are the cluster's own ids */
	if (!OidIsValid(table))
	{
		*offset = 0;
		return true;
	}
	KnowTable(table);
	if (known.offset_known)
	{
		*offset = known.offset;
		return true;
	}
	ConnectSpi();
	found = FindClusterOffset(snapshot, offset);
	SPI_finish();
	return found;
}

/*
 * Take this incarnation's row, and return its offset: the cluster's if it
 * has one already (a new timeline of the same cluster counts its ids on),
 * else the least that puts the keys of every transaction that can still
 * write after every key in the log.  Positions move on to the next block.
 * The caller holds the lock that makes it the only one doing this.
 */
static int64
StartIncarnation(TimeLineID tli, bool subscriber)
{
	Snapshot	latest = GetLatestSnapshot();
	const char *reason;
	int64		offset;
	int64		first;
	Oid			seq = EventstoreRelid("global_position_seq");
	Oid			argtypes[5] = {INT8OID, INT4OID, INT8OID, INT8OID, TEXTOID};
	Datum		values[5];

	if (FindClusterOffset(latest, &offset))
		reason = "new timeline";
	else
	{
		/*
		 * The least key a transaction running or still to come can take is
		 * its id, at least the xmin of a snapshot taken now: the log's last
		 * key must stay below that.
		 */
		uint64		least = U64FromFullTransactionId(XidHorizonOf(latest));
		uint64		last = U64FromFullTransactionId(LastCommittedXid());

		offset = last + 1 > least ? (int64) (last + 1 - least) : 0;
		QueryKeptPlanThrough(KeptPlan(&any_row_plan,
									  "SELECT FROM eventstore.log_incarnations LIMIT 1",
									  0, NULL),
							 NULL, NULL, latest, 1);
		reason = SPI_processed > 0 ? "new cluster" : "first write";
	}
	if (subscriber)
		reason = "subscriber";

	/*
	 * The next block after the last position in the log, not just the next
	 * position: positions issued on a lost timeline, or after the copy this
	 * log was restored from, lie beyond it.  A start that rolled back and
	 * is taken again moves no further.
	 */
	QueryKeptPlanThrough(KeptPlan(&last_position_plan,
								  "SELECT coalesce(max(global_position), 0)"
								  " FROM eventstore.events",
								  0, NULL),
						 NULL, NULL, latest, 1);
	{
		Datum		last;

		if (!GetFirstResult(&last))
			elog(ERROR, "the log has no last position");
		first = DatumGetInt64(last) + 1;
	}
	/* a log's first incarnation goes on where the sequence is */
	if (strcmp(reason, "first write") != 0)
	{
		first = ((first - 1) >> POSITION_BLOCK_BITS) + 1;
		first <<= POSITION_BLOCK_BITS;
		if (nextval_internal(seq, false) < first)
			DirectFunctionCall3(setval3_oid, ObjectIdGetDatum(seq),
								Int64GetDatum(first), BoolGetDatum(false));
	}

	values[0] = SystemIdentifierDatum();
	values[1] = Int32GetDatum((int32) tli);
	values[2] = Int64GetDatum(offset);
	values[3] = Int64GetDatum(first);
	values[4] = CStringGetTextDatum(reason);
	ExecKeptPlan(KeptPlan(&insert_plan,
						  "INSERT INTO eventstore.log_incarnations"
						  " (system_identifier, timeline_id, xid_offset,"
						  "  first_position, started_at, reason)"
						  " VALUES ($1, $2, $3, $4, now(), $5)",
						  5, argtypes),
				 values, NULL, false, 0);
	return offset;
}

/*
 * The offset for a write on this node, taking this incarnation's row first
 * if it has none (`subscriber`: for events replicated to this node).
 * Called before the writer locks any stream, so that racing first writers
 * wait only for each other.
 */
int64
LogOffsetForWrite(bool subscriber)
{
	Oid			table = OptionalEventstoreRelid("log_incarnations");
	TimeLineID	tli;
	Oid			argtypes[2] = {INT8OID, INT4OID};
	Datum		values[2];
	SPIPlanPtr	plan;
	int64		offset;

	if (!OidIsValid(table))
		return 0;
	KnowTable(table);
	tli = GetWALInsertionTimeLine();
	if (known.written_on == tli)
		return known.offset;

	values[0] = SystemIdentifierDatum();
	values[1] = Int32GetDatum((int32) tli);
	ConnectSpi();
	plan = KeptPlan(&own_row_plan,
					"SELECT xid_offset, xmin FROM eventstore.log_incarnations"
					" WHERE system_identifier = $1 AND timeline_id = $2",
					2, argtypes);
	if (!FindOffset(plan, values, GetLatestSnapshot(), tli, &offset))
	{
		/* one starter at a time; the others find its row once it commits */
		LockRelationOid(table, ShareUpdateExclusiveLock);
		if (!FindOffset(plan, values, GetLatestSnapshot(), tli, &offset))
			offset = StartIncarnation(tli, subscriber);
	}
	SPI_finish();
	return offset;
}

/*
 * Raise the error for a position the log does not have, telling apart one
 * this log lost for good (issued on a timeline a failover dropped, or after
 * the copy a restore came from: SE007), one this node may still receive (a
 * standby or subscriber behind its source: SE008), and one that never named
 * an event (SE003).  `hint` is the caller's for SE003.
 */
void
ReportPositionNotInLog(int64 position, Relation events, Snapshot snapshot,
					   const char *hint)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(position)};
	bool		isnull;

	if (OidIsValid(OptionalEventstoreRelid("log_incarnations")))
	{
		ConnectSpi();
		QueryKeptPlanThrough(KeptPlan(&lost_plan,
									  "SELECT n.first_position, n.reason, n.timeline_id,"
									  " n.started_at::text,"
									  " (SELECT coalesce(max(global_position), 0)"
									  "  FROM eventstore.events WHERE global_position < $1)"
									  " FROM (SELECT * FROM eventstore.log_incarnations"
									  "  WHERE first_position > $1"
									  "  AND reason IN ('new timeline', 'new cluster')"
									  "  ORDER BY first_position LIMIT 1) n"
									  " WHERE NOT EXISTS (SELECT FROM eventstore.events e"
									  "  WHERE e.global_position > $1"
									  "  AND e.global_position < n.first_position)",
									  1, argtypes),
							 values, NULL, snapshot, 1);
		if (SPI_processed > 0)
		{
			HeapTuple	row = SPI_tuptable->vals[0];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			char	   *reason = SPI_getvalue(row, desc, 2);
			int32		tli = DatumGetInt32(SPI_getbinval(row, desc, 3, &isnull));
			char	   *started = SPI_getvalue(row, desc, 4);
			int64		before = DatumGetInt64(SPI_getbinval(row, desc, 5, &isnull));

			ereport(ERROR,
					(errcode(ERRCODE_ES_LOST_POSITION),
					 errmsg("position " INT64_FORMAT " is not in the event log and never will be",
							position),
					 strcmp(reason, "new timeline") == 0 ?
					 errdetail("This server was promoted to timeline %d at %s without the events its old primary wrote after position " INT64_FORMAT ", this one among them.",
							   tli, started, before) :
					 errdetail("This log was restored at %s from a copy that ends at position " INT64_FORMAT ", before this one.",
							   started, before),
					 errhint("The consumer holding this cursor processed events this log no longer has: check what it did with them, then resume it from a position this log has, such as " INT64_FORMAT ".",
							 before)));
		}
		SPI_finish();
	}
	if (RecoveryInProgress() || SubscriberModeOn(events))
		ereport(ERROR,
				(errcode(ERRCODE_ES_POSITION_NOT_YET_HERE),
				 errmsg("position " INT64_FORMAT " is not in the event log of this %s yet",
						position, RecoveryInProgress() ? "standby" : "subscriber"),
				 errdetail("This node replicates the log and may not have received that event yet."),
				 errhint("Retry once this node has caught up, or read from the node the cursor was taken on.")));

	ereport(ERROR,
			(errcode(ERRCODE_ES_UNKNOWN_POSITION),
			 errmsg("position " INT64_FORMAT " is not in the event log", position),
			 errhint("%s", hint)));
}
