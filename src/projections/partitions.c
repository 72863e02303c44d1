/*
 * projections/partitions.c
 *		Replays split in stream-hash partitions (create_projection's
 *		parallel => n): applied concurrently, each from its own checkpoint,
 *		and joined at the head.
 *
 * A replay from the start (creation over a non-empty log, a rebuild, a new
 * version's first build) of a projection with parallel n > 1 gets n rows in
 * eventstore.projection_partitions (SplitReplay).  Partition k applies, in
 * log order, the events of the streams whose stream_partition(stream_id, n)
 * is k: every event of a stream is in one partition, which keeps the
 * stream's order, the order the handler may rely on (parallel declares that
 * it relates events of one stream only).  Each batch of a partition and its
 * checkpoint commit together, as Replay does for a whole projection.  A
 * partition's checkpoint never lags the projection's (a set-based backfill
 * may have moved that on before the partitions start).
 *
 * A runner of a partition holds the projection's RUNNER lock shared and the
 * partition's lock exclusive, so several runners (workers, run_projection
 * calls) apply different partitions at once, while whatever takes RUNNER
 * exclusive (rebuild_projection, drop_projection, retry and discard of dead
 * letters, the join) waits for them all.
 *
 * A partition is done once its read horizon has passed the replay's
 * replay_until, as Replay judges "at the head".  When every one is done,
 * the runner that sees it takes RUNNER exclusive and joins them: the join
 * point is the furthest partition checkpoint; each other partition applies
 * its events up to that point (all committed: each checkpoint lies below a
 * horizon some partition read through), the projection's checkpoint becomes
 * the join point, its events_applied takes the partitions' counts, and the
 * rows go.  The projection then goes on as one (RunProjection): it replays
 * what came after the join point, becomes active and drains its skips as
 * after any replay.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "core/kept_plans.h"
#include "miscadmin.h"
#include "projections/projections.h"
#include "storage/lock.h"
#include "utils/snapmgr.h"
#include "utils/xid8.h"

/* A row of eventstore.projection_partitions. */
typedef struct PartitionRow
{
	LogPlace	checkpoint;
	bool		done;
} PartitionRow;

static SPIPlanPtr split_delete_plan;
static SPIPlanPtr split_insert_plan;
static SPIPlanPtr is_split_plan;
static SPIPlanPtr load_plan;
static SPIPlanPtr save_plan;
static SPIPlanPtr join_plan;
static SPIPlanPtr mark_plan;

/*
 * Start the replay from the start of a rebuilding projection with
 * parallel > 1 afresh in its partitions, each at the start of the log;
 * forget any earlier split of it.  The caller is connected to SPI.
 */
void
SplitReplay(int32 projection_id)
{
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(projection_id)};

	/* a 0.2.0 registry has no partitions (and no parallel column) */
	if (RegistryKeepsOids())
		return;
	ExecKeptPlan(KeptPlan(&split_delete_plan,
					 "DELETE FROM eventstore.projection_partitions"
					 " WHERE projection_id = $1",
					 1, argtypes),
				 values, NULL, false, 0);
	ExecKeptPlan(KeptPlan(&split_insert_plan,
					 "INSERT INTO eventstore.projection_partitions"
					 " (projection_id, partition)"
					 " SELECT p.projection_id, k"
					 " FROM eventstore.projections p,"
					 "  pg_catalog.generate_series(0, p.parallel - 1) k"
					 " WHERE p.projection_id = $1 AND p.parallel > 1"
					 " AND p.status = 'rebuilding' AND NOT p.caught_up",
					 1, argtypes),
				 values, NULL, false, 0);
}

/*
 * Is the projection's replay split in partitions not joined yet?  No query
 * unless it is a parallel projection that has not caught up.
 */
bool
ReplayIsSplit(Projection *p)
{
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(p->id)};
	Datum		exists;

	if (p->parallel <= 1 || p->caught_up || RegistryKeepsOids())
		return false;
	QueryKeptPlanThrough(KeptPlan(&is_split_plan,
								  "SELECT EXISTS (SELECT FROM eventstore.projection_partitions"
								  " WHERE projection_id = $1)",
								  1, argtypes),
						 values, NULL, GetLatestSnapshot(), 1);
	return GetFirstResult(&exists) && DatumGetBool(exists);
}

/*
 * Where the projection's replay stands, as one number that moves whenever
 * it applies something: its checkpoint's position, or, while its replay is
 * split, the sum of its partitions' (the worker's record of the batch in
 * flight: worker/in_flight.c).
 */
int64
ReplayMark(Projection *p)
{
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(p->id)};
	Datum		sum;

	if (!ReplayIsSplit(p))
		return p->checkpoint.position;
	QueryKeptPlanThrough(KeptPlan(&mark_plan,
								  "SELECT sum(\"position\")::bigint"
								  " FROM eventstore.projection_partitions"
								  " WHERE projection_id = $1",
								  1, argtypes),
						 values, NULL, GetLatestSnapshot(), 1);
	return GetFirstResult(&sum) ? DatumGetInt64(sum) : p->checkpoint.position;
}

/* The projection's partitions as they are now; *n of them. */
static PartitionRow *
LoadPartitions(Projection *p, int *n)
{
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(p->id)};
	PartitionRow *rows;

	QueryKeptPlanThrough(KeptPlan(&load_plan,
								  "SELECT \"position\", transaction_id, done"
								  " FROM eventstore.projection_partitions"
								  " WHERE projection_id = $1 ORDER BY partition",
								  1, argtypes),
						 values, NULL, GetLatestSnapshot(), 0);
	*n = (int) SPI_processed;
	rows = palloc(sizeof(PartitionRow) * Max(*n, 1));
	for (int k = 0; k < *n; k++)
	{
		HeapTuple	row = SPI_tuptable->vals[k];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		rows[k].checkpoint.position = DatumGetInt64(SPI_getbinval(row, desc, 1, &isnull));
		rows[k].checkpoint.xid = DatumGetFullTransactionId(SPI_getbinval(row, desc, 2, &isnull));
		rows[k].done = DatumGetBool(SPI_getbinval(row, desc, 3, &isnull));
		/* never behind the projection's own checkpoint (a backfill's) */
		if (CompareLogPlaces(p->checkpoint, rows[k].checkpoint) > 0)
			rows[k].checkpoint = p->checkpoint;
	}
	SPI_freetuptable(SPI_tuptable);
	return rows;
}

/*
 * Write partition part's checkpoint (p->checkpoint while Replay runs it)
 * and done flag, adding `applied` to its count.
 */
void
SavePartitionProgress(Projection *p, ReplayPartition *part, int64 applied)
{
	Oid			argtypes[6] = {INT4OID, INT4OID, INT8OID, XID8OID, BOOLOID, INT8OID};
	Datum		values[6] = {
		Int32GetDatum(p->id),
		Int32GetDatum(part->index),
		Int64GetDatum(p->checkpoint.position),
		FullTransactionIdGetDatum(p->checkpoint.xid),
		BoolGetDatum(part->done),
		Int64GetDatum(applied)
	};

	ExecKeptPlan(KeptPlan(&save_plan,
					 "UPDATE eventstore.projection_partitions"
					 " SET \"position\" = $3, transaction_id = $4, done = $5,"
					 " events_applied = events_applied + $6,"
					 " updated_at = pg_catalog.clock_timestamp()"
					 " WHERE projection_id = $1 AND partition = $2",
					 6, argtypes),
				 values, NULL, false, 0);
}

/* Take partition k's lock; false when wait is false and another has it. */
static bool
LockPartition(int32 projection_id, int k, bool wait)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) projection_id,
						 (uint32) k + 1, PROJECTION_PARTITION_LOCK);
	return LockAcquire(&tag, ExclusiveLock, false, !wait) != LOCKACQUIRE_NOT_AVAIL;
}

/*
 * Replay partition k of n from rows[k]'s checkpoint: up to max_events (<= 0:
 * no limit), or, when `through` is not NULL, every event of it up to there.
 * Returns the events dealt with; *done when the partition is.
 */
static int64
ReplayPartitionOf(Projection *p, PartitionRow *rows, int k, int n,
				  int64 max_events, const LogPlace *through, bool *done)
{
	ReplayPartition part = {k, n, through != NULL, {{0}, 0}, rows[k].done};
	LogPlace	own = p->checkpoint;
	bool		at_head;
	int64		applied;

	if (through != NULL)
		part.through = *through;
	p->checkpoint = rows[k].checkpoint;
	applied = Replay(p, max_events, &part, &at_head);
	rows[k].checkpoint = p->checkpoint;
	rows[k].done = part.done;
	p->checkpoint = own;
	*done = part.done;
	return applied;
}

/*
 * Every partition is done, and the caller holds RUNNER exclusive: bring
 * each to the furthest checkpoint among them, then make that the
 * projection's checkpoint and delete the partitions.  Returns the events
 * applied; nothing is joined when the projection failed on one.
 */
static int64
JoinPartitions(Projection *p, PartitionRow *rows, int n)
{
	Oid			argtypes[3] = {INT4OID, INT8OID, XID8OID};
	Datum		values[3];
	LogPlace	join = p->checkpoint;
	int64		applied = 0;

	for (int k = 0; k < n; k++)
		if (CompareLogPlaces(rows[k].checkpoint, join) > 0)
			join = rows[k].checkpoint;
	for (int k = 0; k < n; k++)
	{
		bool		done;

		if (CompareLogPlaces(rows[k].checkpoint, join) >= 0)
			continue;
		applied += ReplayPartitionOf(p, rows, k, n, 0, &join, &done);
		if (p->status == PROJECTION_FAILED)
			return applied;
	}
	p->checkpoint = join;
	values[0] = Int32GetDatum(p->id);
	values[1] = Int64GetDatum(join.position);
	values[2] = FullTransactionIdGetDatum(join.xid);
	ExecKeptPlan(KeptPlan(&join_plan,
					 "WITH joined AS (DELETE FROM eventstore.projection_partitions"
					 "  WHERE projection_id = $1 RETURNING events_applied)"
					 " UPDATE eventstore.projections"
					 " SET \"position\" = $2, transaction_id = $3,"
					 " events_applied = events_applied"
					 "  + (SELECT COALESCE(sum(events_applied), 0) FROM joined),"
					 " updated_at = pg_catalog.clock_timestamp()"
					 " WHERE projection_id = $1",
					 3, argtypes),
				 values, NULL, false, 0);
	return applied;
}

/*
 * RunProjection's work while the projection's replay is split: under
 * RUNNER shared, replay the partitions that nobody else is running, one
 * after the other, starting with partition `first` (modulo their number),
 * up to max_events (<= 0: no limit) events in all; when every partition is
 * done, join them.  With `wait`, a call that has not run a partition yet
 * and finds all that are left taken waits for one of them.  Returns true
 * when the caller is to go on as one, holding RUNNER exclusive: the
 * partitions were joined (or had been, by another); false with *busy when
 * another transaction holds what it needs, *exhausted when max_events ended
 * the run.  *applied: the events dealt with.
 */
bool
RunPartitions(Projection *p, int64 max_events, bool wait, int first,
			  int64 *applied, bool *busy, bool *exhausted)
{
	bool		ran = false;
	ErrorData  *missing;

	*applied = 0;
	*busy = !LockProjection(p->id, PROJECTION_RUNNER_LOCK, ShareLock, wait);
	if (*busy)
		return false;
	/* what another runner did before we got the lock counts */
	p = ReloadProjection(p->id);
	if (p == NULL || p->status == PROJECTION_FAILED ||
		p->status == PROJECTION_STOPPED)
		return false;
	if ((missing = MissingOwnerCode(p)) != NULL)
	{
		/* not any event's fault: no error position */
		RecordProjectionFailure(p, missing, -1, NULL);
		return false;
	}
	for (;;)
	{
		int			n;
		PartitionRow *rows;
		int			take = -1;
		int			undone = -1;

		CHECK_FOR_INTERRUPTS();
		rows = LoadPartitions(p, &n);
		if (n == 0)
		{
			/* joined by another meanwhile */
			*busy = !LockProjection(p->id, PROJECTION_RUNNER_LOCK,
									ExclusiveLock, false);
			return !*busy;
		}
		for (int i = 0; i < n && take < 0; i++)
		{
			int			k = ((first % n) + n + i) % n;

			if (rows[k].done)
				continue;
			if (undone < 0)
				undone = k;
			if (LockPartition(p->id, k, false))
				take = k;
		}
		if (take >= 0)
		{
			bool		done;

			/*
			 * What its last runner committed before we got its lock counts:
			 * read the partitions again (its row as read above may be older).
			 */
			rows = LoadPartitions(p, &n);
			if (take >= n || rows[take].done)
				continue;
			ran = true;
			*applied += ReplayPartitionOf(p, rows, take, n,
										  max_events > 0 ? max_events - *applied : 0,
										  NULL, &done);
			if (p->status == PROJECTION_FAILED)
				return false;
			if (max_events > 0 && *applied >= max_events)
			{
				*exhausted = true;
				return false;
			}
			/* at the end of the log, not yet past replay_until */
			if (!done)
				return false;
			continue;
		}
		if (undone < 0)
		{
			/* every partition done: join them, when nobody else runs one */
			*busy = !LockProjection(p->id, PROJECTION_RUNNER_LOCK,
									ExclusiveLock, false);
			if (*busy)
				return false;
			/* as they are now that nobody else runs one */
			rows = LoadPartitions(p, &n);
			for (int k = 0; k < n; k++)
				if (!rows[k].done)
					n = -1;
			if (n <= 0)
				continue;
			*applied += JoinPartitions(p, rows, n);
			return p->status != PROJECTION_FAILED;
		}
		/*
		 * Every partition left is being run by others.  Wait for one, unless
		 * this transaction ran one: its runner might wait for ours.
		 */
		if (!wait || ran)
		{
			*busy = true;
			return false;
		}
		(void) LockPartition(p->id, undone, true);
	}
}
