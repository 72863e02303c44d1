/*
 * log/incarnation.c
 *		The log's own clock: the offset that turns this cluster's
 *		transaction ids into log keys, and the incarnations of the log, one
 *		per cluster, copy and timeline that wrote or received it.
 *
 * An event's transaction_id is a log key, not a raw transaction id: the
 * appending transaction's id plus the offset of the copy of the log it
 * writes (raised to its stream's previous key, see log_order.c).  The
 * offset is kept in eventstore.log_incarnations, which pg_dump keeps with
 * the log, keyed by the cluster's system identifier and the oid of
 * eventstore.events (which pg_upgrade keeps and any restore changes).  A
 * copy that finds no row of its own takes one at its first write, with an
 * offset that puts every key it will ever write after every key in the
 * log; a restore thus costs one row, and nothing per restored event.
 *
 * Each incarnation, a (system identifier, copy, timeline) that wrote the
 * log, also starts its positions at a fresh block of POSITION_BLOCK_BITS bits,
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
#include "miscadmin.h"
#include "fmgr.h"
#include "log/log.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/snapmgr.h"
#include "utils/xid8.h"

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
static SPIPlanPtr next_position_plan;
static SPIPlanPtr lost_plan;

/* The system identifier as the table stores it (bigint). */
static Datum
SystemIdentifierDatum(void)
{
	return Int64GetDatum((int64) GetSystemIdentifier());
}

/*
 * The oid of eventstore.events, which keys this log's incarnations with the
 * system identifier: pg_upgrade keeps it, and any restore (into another
 * cluster, another database, or this one after pg_restore --clean) changes
 * it, the database's oid (which --clean keeps) would not do.
 */
static Datum
LogRelidDatum(void)
{
	return ObjectIdGetDatum(EventstoreRelid("events"));
}

/*
 * The row of this incarnation, (system identifier, copy, timeline tli):
 * the plan, with its arguments in values[3].  The caller is connected to
 * SPI.
 */
static SPIPlanPtr
OwnRowPlan(TimeLineID tli, Datum *values)
{
	Oid			argtypes[3] = {INT8OID, OIDOID, INT4OID};

	values[0] = SystemIdentifierDatum();
	values[1] = LogRelidDatum();
	values[2] = Int32GetDatum((int32) tli);
	return KeptPlan(&own_row_plan,
					"SELECT xid_offset, xmin FROM eventstore.log_incarnations"
					" WHERE system_identifier = $1 AND log_oid = $2 AND timeline_id = $3",
					3, argtypes);
}

/*
 * Has the log any incarnation row, through `snapshot`?  And, if so, has
 * this cluster written it (*this_cluster: a restore into it from another
 * of its databases, or over this one)?  The caller is connected to SPI.
 */
static bool
AnyIncarnation(Snapshot snapshot, bool *this_cluster)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {SystemIdentifierDatum()};
	Datum		result;

	/* bool_or over no row is NULL */
	QueryKeptPlanThrough(KeptPlan(&any_row_plan,
								  "SELECT bool_or(system_identifier = $1)"
								  " FROM eventstore.log_incarnations",
								  1, argtypes),
						 values, NULL, snapshot, 1);
	if (!GetFirstResult(&result))
		return false;
	*this_cluster = DatumGetBool(result);
	return true;
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

/*
 * The offset of this copy of the log on this cluster, through `snapshot`
 * (its timelines' rows share it); false: none.
 */
static bool
FindClusterOffset(Snapshot snapshot, int64 *offset)
{
	Oid			argtypes[2] = {INT8OID, OIDOID};
	Datum		values[2] = {SystemIdentifierDatum(), LogRelidDatum()};

	return FindOffset(KeptPlan(&cluster_row_plan,
							   "SELECT xid_offset, xmin FROM eventstore.log_incarnations"
							   " WHERE system_identifier = $1 AND log_oid = $2 LIMIT 1",
							   2, argtypes),
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
	bool		this_cluster;

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

	/*
	 * No row at all, not even a restored one: a new log, or one whose update
	 * to 0.3.0 this snapshot does not see yet.  Its keys are this cluster's
	 * own transaction ids, as at 0.2.0: offset 0.  (Only a log restored here,
	 * with rows of its sources, is final until its first write.)
	 */
	if (!found && !AnyIncarnation(snapshot, &this_cluster))
	{
		*offset = 0;
		found = true;
	}
	SPI_finish();
	return found;
}

/*
 * Why a new incarnation of the log starts in this copy on this node's
 * timeline tli, as log_incarnations.reason says it, seen through
 * `snapshot`; sets *offset to this copy's when it has one already on this
 * cluster (a new timeline counts its transaction ids on) and
 * *cluster_known then.
 */
static const char *
NewIncarnationReason(Snapshot snapshot, TimeLineID tli, int64 *offset,
					 bool *cluster_known)
{
	bool		this_cluster;

	*cluster_known = FindClusterOffset(snapshot, offset);
	if (*cluster_known)
		return "new timeline";
	if (AnyIncarnation(snapshot, &this_cluster))
		return this_cluster ? "restored" : "new cluster";
	/* no row at all, but a timeline after the first: they were lost */
	return tli > 1 ? "new timeline" : "first write";
}

/*
 * The first position of a new incarnation on timeline tli: past every
 * position that a lost timeline or the source of a restore may have
 * issued.  Those lie beyond the log's last position, so a new incarnation
 * starts at the next block; and at least at its timeline's own block, as a
 * timeline that was lost with its first writes (and their row) leaves no
 * trace but the timeline number.  Only a log's very first write goes on
 * where the log is.  A start that rolled back and is taken again moves no
 * further.
 */
static int64
IncarnationStart(Snapshot snapshot, TimeLineID tli, bool first_write)
{
	Datum		last_datum;
	int64		last;
	int64		start;

	if (tli >= ((TimeLineID) 1 << (62 - POSITION_BLOCK_BITS)))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("timeline %u is past the last one the event log has positions for", tli)));
	QueryKeptPlanThrough(KeptPlan(&last_position_plan,
								  "SELECT coalesce(max(global_position), 0)"
								  " FROM eventstore.events",
								  0, NULL),
						 NULL, NULL, snapshot, 1);
	if (!GetFirstResult(&last_datum))
		elog(ERROR, "the log has no last position");
	last = DatumGetInt64(last_datum);
	start = first_write ? last + 1
		: ((last >> POSITION_BLOCK_BITS) + 1) << POSITION_BLOCK_BITS;
	return Max(start, (int64) (tli - 1) << POSITION_BLOCK_BITS);
}

/*
 * Move the position sequence forward to `first`, never back; returns the
 * first position it will issue.  The caller is connected to SPI.
 */
static int64
MovePositionsTo(int64 first)
{
	Datum		next;

	/* the sequence's next value, looked at without taking it */
	QueryKeptPlanThrough(KeptPlan(&next_position_plan,
								  "SELECT CASE WHEN is_called THEN last_value + 1"
								  " ELSE last_value END"
								  " FROM eventstore.global_position_seq",
								  0, NULL),
						 NULL, NULL, GetLatestSnapshot(), 1);
	if (!GetFirstResult(&next))
		elog(ERROR, "the position sequence has no value");
	if (DatumGetInt64(next) >= first)
		return DatumGetInt64(next);
	DirectFunctionCall3(setval3_oid,
						ObjectIdGetDatum(EventstoreRelid("global_position_seq")),
						Int64GetDatum(first), BoolGetDatum(false));
	return first;
}

/*
 * Move positions to a new block, past every position the log has and its
 * timeline's own block, as a new incarnation's: for a subscriber that
 * appends on its own from now on, past any position its publisher issued.
 * The caller is connected to SPI.
 */
void
MovePositionsToNewBlock(void)
{
	(void) MovePositionsTo(IncarnationStart(GetLatestSnapshot(),
											GetWALInsertionTimeLine(), false));
}

/*
 * Take this incarnation's row, and return its offset: the cluster's if it
 * has one already, else the least that puts the keys of every transaction
 * that can still write after every key in the log.  Positions move on to
 * IncarnationStart.  The caller holds the lock that makes it the only one
 * doing this.
 */
static int64
StartIncarnation(TimeLineID tli, bool subscriber)
{
	Snapshot	latest = GetLatestSnapshot();
	const char *reason;
	int64		offset;
	int64		first;
	bool		cluster_known;
	Oid			argtypes[6] = {INT8OID, OIDOID, INT4OID, INT8OID, INT8OID, TEXTOID};
	Datum		values[6];

	/*
	 * The least key a transaction running or still to come can take is its
	 * id, at least the xmin of a snapshot taken now: the log's last key must
	 * stay below that.  A new timeline keeps its copy's offset as it is: its
	 * transaction ids go on from the old timeline's, and a transaction
	 * prepared there (which holds xmin back) may still commit events keyed
	 * with it.
	 */
	reason = NewIncarnationReason(latest, tli, &offset, &cluster_known);
	if (!cluster_known)
	{
		uint64		least = U64FromFullTransactionId(XidHorizonOf(latest));
		uint64		last = U64FromFullTransactionId(LastCommittedXid());

		offset = last + 1 > least ? (int64) (last + 1 - least) : 0;
	}
	/* a subscriber's first write is a replicated event, its place not ours */
	first = MovePositionsTo(IncarnationStart(latest, tli,
											 !subscriber &&
											 strcmp(reason, "first write") == 0));
	if (subscriber)
		reason = "subscriber";

	values[0] = SystemIdentifierDatum();
	values[1] = LogRelidDatum();
	values[2] = Int32GetDatum((int32) tli);
	values[3] = Int64GetDatum(offset);
	values[4] = Int64GetDatum(first);
	values[5] = CStringGetTextDatum(reason);
	ExecKeptPlan(KeptPlan(&insert_plan,
						  "INSERT INTO eventstore.log_incarnations"
						  " (system_identifier, log_oid, timeline_id,"
						  "  xid_offset, first_position, started_at, reason)"
						  " VALUES ($1, $2, $3, $4, $5, now(), $6)",
						  6, argtypes),
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
	Datum		values[3];
	SPIPlanPtr	plan;
	int64		offset;

	if (!OidIsValid(table))
		return 0;
	KnowTable(table);
	tli = GetWALInsertionTimeLine();
	if (known.written_on == tli)
		return known.offset;

	ConnectSpi();
	plan = OwnRowPlan(tli, values);
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
 * Raise SE007 if `position` was lost for good: a later incarnation of the
 * log starts after it and no event lies between.  The incarnation of this
 * node's timeline counts before its first write has recorded it, with the
 * start that write will take: a consumer resuming right after a failover
 * is told at once.
 */
static void
ReportLostPosition(int64 position, Snapshot snapshot)
{
	/* a standby knows the incarnations its primary recorded, no more */
	TimeLineID	tli = RecoveryInProgress() ? 0 : GetWALInsertionTimeLine();
	Oid			argtypes[4] = {INT8OID, INT8OID, TEXTOID, INT4OID};
	Datum		values[4];
	char		nulls[4] = {' ', 'n', 'n', ' '};
	Datum		own[3];
	int64		offset;
	bool		isnull;

	ConnectSpi();
	values[0] = Int64GetDatum(position);
	values[1] = values[2] = (Datum) 0;
	values[3] = Int32GetDatum((int32) tli);
	if (tli != 0)
		QueryKeptPlanThrough(OwnRowPlan(tli, own), own, NULL, snapshot, 1);
	if (tli != 0 && SPI_processed == 0)
	{
		bool		cluster_known;
		const char *reason = NewIncarnationReason(snapshot, tli, &offset,
												  &cluster_known);

		if (strcmp(reason, "first write") != 0)
		{
			values[1] = Int64GetDatum(IncarnationStart(snapshot, tli, false));
			values[2] = CStringGetTextDatum(reason);
			nulls[1] = nulls[2] = ' ';
		}
	}
	QueryKeptPlanThrough(KeptPlan(&lost_plan,
								  "SELECT n.first_position, n.reason, n.timeline_id,"
								  " n.started_at::text,"
								  " (SELECT coalesce(max(global_position), 0)"
								  "  FROM eventstore.events WHERE global_position < $1)"
								  " FROM (SELECT first_position, reason, timeline_id, started_at"
								  "  FROM eventstore.log_incarnations"
								  "  WHERE first_position > $1"
								  "  AND reason IN ('new timeline', 'new cluster', 'restored')"
								  "  UNION ALL SELECT $2, $3, $4, NULL WHERE $2 > $1"
								  "  ORDER BY first_position LIMIT 1) n"
								  " WHERE NOT EXISTS (SELECT FROM eventstore.events e"
								  "  WHERE e.global_position > $1"
								  "  AND e.global_position < n.first_position)",
								  4, argtypes),
						 values, nulls, snapshot, 1);
	if (SPI_processed > 0)
	{
		HeapTuple	row = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *reason = SPI_getvalue(row, desc, 2);
		int32		row_tli = DatumGetInt32(SPI_getbinval(row, desc, 3, &isnull));
		char	   *started = SPI_getvalue(row, desc, 4);
		int64		before = DatumGetInt64(SPI_getbinval(row, desc, 5, &isnull));
		const char *since = started != NULL ? psprintf(" at %s", started) : "";

		ereport(ERROR,
				(errcode(ERRCODE_ES_LOST_POSITION),
				 errmsg("position " INT64_FORMAT " is not in the event log and never will be",
						position),
				 strcmp(reason, "new timeline") == 0 ?
				 errdetail("This server was promoted to timeline %d%s without the events its old primary wrote after position " INT64_FORMAT ", this one among them.",
						   row_tli, since, before) :
				 errdetail("This log was restored%s from a copy that ends at position " INT64_FORMAT ", before this one.",
						   since, before),
				 errhint("The consumer holding this cursor processed events this log no longer has: check what it did with them, then resume it from a position this log has, such as " INT64_FORMAT ".",
						 before)));
	}
	SPI_finish();
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
	/* a subscriber's positions are its publisher's, its incarnations not */
	if (OidIsValid(OptionalEventstoreRelid("log_incarnations")) &&
		!SubscriberModeOn(events))
		ReportLostPosition(position, snapshot);
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
