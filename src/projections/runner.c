/*
 * projections/runner.c
 *		Applying the log to a projection in batches from its checkpoint:
 *		the replay of a rebuild, async projections, the drain of the events
 *		inline applications skipped, and the retry or discard of dead
 *		letters with the release of the events they parked.
 *
 * Every batch is read below the read horizon of one snapshot (events of
 * transactions older than any still running, as read_all serves them), in
 * log order, and applied together with the checkpoint that follows it in
 * the caller's transaction.  The head of the log is judged through that
 * same snapshot, so moving the checkpoint to the head never passes an event
 * the batch could not see.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "core/kept_plans.h"
#include "core/settings.h"
#include "log/type_scan.h"
#include "miscadmin.h"
#include "projections/projections.h"
#include "read_models/read_models.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/xid8.h"

static LogScanPlans batch_plans;
static LogScanPlans partition_batch_plans;
static SPIPlanPtr archive_batch_plans[2];	/* [1]: of a partition */
static SPIPlanPtr pending_skips_plans[2];	/* [1]: of a 0.2.0 registry */
static SPIPlanPtr skipped_events_plan;
static SPIPlanPtr dead_letters_plan;
static SPIPlanPtr dead_letter_events_plan;
static SPIPlanPtr never_applied_plan;

/* The projection's event types as a text[] datum; NULL for every type. */
static Datum
TypesDatum(Projection *p, char *null_flag)
{
	Datum	   *elems;

	*null_flag = p->ntypes == 0 ? 'n' : ' ';
	if (p->ntypes == 0)
		return (Datum) 0;
	elems = palloc(sizeof(Datum) * p->ntypes);
	for (int i = 0; i < p->ntypes; i++)
		elems[i] = CStringGetTextDatum(p->types[i]);
	return PointerGetDatum(construct_array(elems, p->ntypes, TEXTOID, -1, false,
										   TYPALIGN_INT));
}

/* The conditions of a partition's batch, after those of every batch. */
#define PARTITION_CONDITIONS \
	" AND (transaction_id, global_position) <= ($6, $7)" \
	" AND eventstore.stream_partition(stream_id, $8) = $9"

/*
 * The batch of a build from the start that includes the archive: the log's
 * and the archive's events after the checkpoint, each read in log order
 * through its own index and merged.
 */
static SPIPlanPtr
ArchiveBatchPlan(bool of_partition, const Oid *argtypes)
{
#define ARCHIVE_BATCH_BRANCH(table, more) \
	"(SELECT * FROM eventstore." table \
	" WHERE (transaction_id, global_position) > ($1, $2)" \
	" AND transaction_id < $3 AND ($4 IS NULL OR event_type = ANY ($4))" more \
	" ORDER BY transaction_id, global_position LIMIT $5)"
#define ARCHIVE_BATCH(more) \
	"SELECT * FROM (" ARCHIVE_BATCH_BRANCH("events", more) \
	" UNION ALL " ARCHIVE_BATCH_BRANCH("events_archive", more) \
	") e ORDER BY transaction_id, global_position LIMIT $5"

	if (of_partition)
		return KeptPlan(&archive_batch_plans[1], ARCHIVE_BATCH(PARTITION_CONDITIONS),
						9, argtypes);
	return KeptPlan(&archive_batch_plans[0], ARCHIVE_BATCH(""), 5, argtypes);
}

/*
 * Read into rows up to `limit` events of the projection's types after its
 * checkpoint and below the horizon of `snapshot`, in log order; of the
 * streams of partition `part` only, when not NULL.
 */
static int
FetchBatch(Projection *p, ReplayPartition *part, EventRows *rows, int limit,
		   Snapshot snapshot, FullTransactionId horizon, Datum types,
		   char types_null)
{
	Oid			argtypes[9] = {XID8OID, INT8OID, XID8OID, TEXTARRAYOID, INT8OID,
	XID8OID, INT8OID, INT4OID, INT4OID};
	Datum		values[9] = {
		FullTransactionIdGetDatum(p->checkpoint.xid),
		Int64GetDatum(p->checkpoint.position),
		FullTransactionIdGetDatum(horizon),
		types,
		Int64GetDatum(limit)
	};
	char		nulls[9] = {' ', ' ', ' ', types_null, ' ', ' ', ' ', ' ', ' '};
	SPIPlanPtr	plan;
	DestReceiver *dest = EventRowsDest(rows);

	if (part != NULL)
	{
		LogPlace	through = part->through;

		if (!part->bounded)
		{
			through.xid = FullTransactionIdFromU64(PG_UINT64_MAX);
			through.position = PG_INT64_MAX;
		}
		values[5] = FullTransactionIdGetDatum(through.xid);
		values[6] = Int64GetDatum(through.position);
		values[7] = Int32GetDatum(part->count);
		values[8] = Int32GetDatum(part->index);
	}
	/*
	 * A build from the start asked to include the archive reads it merged
	 * with the log; otherwise, for a few types, merged scans of each type's
	 * events (type_scan.c).
	 */
	if (p->replay_archive && !p->caught_up)
		plan = ArchiveBatchPlan(part != NULL, argtypes);
	else if (part == NULL)
		plan = LogScanPlan(&batch_plans, &values[3], types_null == 'n',
						   "(transaction_id, global_position) > ($1, $2)"
						   " AND transaction_id < $3",
						   "$4", "$5", 5, argtypes);
	else
		plan = LogScanPlan(&partition_batch_plans, &values[3], types_null == 'n',
						   "(transaction_id, global_position) > ($1, $2)"
						   " AND transaction_id < $3" PARTITION_CONDITIONS,
						   "$4", "$5", 9, argtypes);

	/* read-only SPI runs in the active snapshot: the batch's own */
	PushActiveSnapshot(snapshot);
	ExecKeptPlanInto(plan, values, nulls, dest, 0);
	PopActiveSnapshot();
	dest->rDestroy(dest);
	return EventRowsCount(rows);
}

/*
 * Move the checkpoint to the last event below the horizon, of any type,
 * when that is further on: the projection has applied everything of its
 * types up to there.
 */
void
AdvanceToHead(Projection *p, Snapshot snapshot, FullTransactionId horizon)
{
	LogPlace	head;

	if (!LastPlaceBelow(horizon, snapshot, &head))
		return;
	if (CompareLogPlaces(head, p->checkpoint) > 0)
		p->checkpoint = head;
}

/*
 * Apply rows[0 .. n), in log order, isolating poison events and parking
 * as parking says.  With judge_by_xid, those that the build from the start
 * applies again (at or before replayed_through: see AppliedThrough in
 * registry.c), but for the positions in never_applied (sorted; NULL: none),
 * are applied as replayed (eventstore.replaying() is true); the others as
 * applied for the first time.  Each run of rows judged alike is applied
 * together.
 */
static int
ApplyInLogOrder(Projection *p, EventRows *rows, int n, bool judge_by_xid,
				const int64 *never_applied, int n_never, Parking *parking,
				ErrorData **error)
{
	int			done = 0;
	int			next_never = 0;

	*error = NULL;
	while (done < n)
	{
		bool		replayed = false;
		int			end = done;
		int			applied;

		for (; end < n; end++)
		{
			int64		position = EventRowsPosition(rows, end);
			bool		again;

			while (next_never < n_never && never_applied[next_never] < position)
				next_never++;
			again = judge_by_xid &&
				CompareLogPlaces(EventRowsPlace(rows, end), p->replayed_through) <= 0 &&
				!(next_never < n_never && never_applied[next_never] == position);
			if (end == done)
				replayed = again;
			else if (again != replayed)
				break;
		}
		applied = ApplyEventsParking(p, rows, done, end - done, true, replayed,
									 parking, error);
		if (applied < end - done)
			return done + applied;
		done = end;
	}
	return done;
}

/*
 * The positions, in order, of rows[0 .. n) that an inline projection in its
 * build from the start has never applied: its appends recorded a skip for
 * them that is still pending (not parked behind a dead letter).  Its other
 * events committed before the build began were applied by their appends
 * (AppliedThrough); these were not, whatever their transaction id says (a
 * transaction that took its id before the build began and appended after).
 * Read through the batch's snapshot, in which the skip of any event of the
 * batch is visible: it committed with its event.  NULL when none.
 */
static int64 *
NeverAppliedInline(Projection *p, EventRows *rows, int n, Snapshot snapshot,
				   int *n_never)
{
	Oid			argtypes[5] = {INT4OID, XID8OID, INT8OID, XID8OID, INT8OID};
	Datum		values[5];
	int64	   *positions;

	*n_never = 0;
	if (!p->inline_mode || p->caught_up || n == 0 || !RegistryParks() ||
		CompareLogPlaces(EventRowsPlace(rows, 0), p->replayed_through) > 0)
		return NULL;
	values[0] = Int32GetDatum(p->id);
	values[1] = FullTransactionIdGetDatum(EventRowsPlace(rows, 0).xid);
	values[2] = Int64GetDatum(EventRowsPosition(rows, 0));
	values[3] = FullTransactionIdGetDatum(EventRowsPlace(rows, n - 1).xid);
	values[4] = Int64GetDatum(EventRowsPosition(rows, n - 1));
	QueryKeptPlanThrough(KeptPlan(&never_applied_plan,
								  "SELECT global_position FROM eventstore.projection_skips"
								  " WHERE projection_id = $1 AND drained_at IS NULL"
								  " AND NOT parked AND dead_letter_id IS NULL"
								  " AND (transaction_id, global_position) >= ($2, $3)"
								  " AND (transaction_id, global_position) <= ($4, $5)"
								  " ORDER BY global_position",
								  5, argtypes),
						 values, NULL, snapshot, 0);
	if (SPI_processed == 0)
		return NULL;
	positions = palloc(sizeof(int64) * SPI_processed);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		positions[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
												   SPI_tuptable->tupdesc, 1,
												   &isnull));
	}
	*n_never = (int) SPI_processed;
	SPI_freetuptable(SPI_tuptable);
	return positions;
}

/* Save the checkpoint of the projection, or of the partition replayed. */
static void
SaveReplayProgress(Projection *p, ReplayPartition *part, int64 applied)
{
	if (part != NULL)
		SavePartitionProgress(p, part, applied);
	else
		SaveProjectionProgress(p, applied);
}

/*
 * Apply up to max_events (<= 0: no limit) events after the checkpoint, a
 * batch at a time, until the log below the read horizon is exhausted.  Sets
 * *at_head when that horizon has passed the projection's replay_until, so
 * no event committed before its replay started can still be missing.  A
 * failure under on_error = 'stop' marks the projection failed and ends the
 * run.  Under 'park', the events of a stream parked behind a dead letter
 * are recorded as parked and passed.  Until the projection has caught up,
 * this is its build from the start (see ApplyInLogOrder).  With `part`,
 * only the events of that partition's streams, from p->checkpoint as the
 * partition's checkpoint, saved as the partition's (partitions.c).
 * Returns the events dealt with.
 */
int64
Replay(Projection *p, int64 max_events, ReplayPartition *part, bool *at_head)
{
	MemoryContext batch_context = AllocSetContextCreate(CurrentMemoryContext,
														"projection batch",
														ALLOCSET_DEFAULT_SIZES);
	MemoryContext outer = CurrentMemoryContext;
	char		types_null;
	Datum		types = TypesDatum(p, &types_null);
	int64		total = 0;
	/* one buffer for every batch: no fresh memory to fault in each time */
	EventRows  *rows = EventRowsCreate(ProjectionBatchSize);

	/*
	 * The progress (the projection's, or the partition's) is written once,
	 * when the run ends: every batch of it is in the caller's one
	 * transaction, which commits them all or none, so a write per batch
	 * would only leave a dead version of the row per batch that no one can
	 * prune before the commit (a long run_projection bloated the registry,
	 * and projection_status then read through thousands of them and was
	 * planned for a large table).
	 */
	LogPlace	saved = p->checkpoint;
	int64		unsaved = 0;
	bool		finished = false;	/* the partition is done now */

	*at_head = false;
	while (max_events <= 0 || total < max_events)
	{
		int			limit = ProjectionBatchSize;
		Snapshot	snapshot;
		FullTransactionId horizon;
		ErrorData  *error;
		int			fetched;
		int			done;
		Parking		parking = {NIL, NULL};
		int64	   *never_applied;
		int			n_never;

		CHECK_FOR_INTERRUPTS();
		if (max_events > 0 && max_events - total < limit)
			limit = (int) (max_events - total);
		MemoryContextReset(batch_context);
		MemoryContextSwitchTo(batch_context);

		snapshot = RegisterSnapshot(GetLatestSnapshot());
		horizon = LogHorizonOf(snapshot);
		EventRowsReset(rows);
		fetched = FetchBatch(p, part, rows, limit, snapshot, horizon, types,
							 types_null);
		if (p->park_errors && fetched > 0)
			parking.streams = ParkedStreams(p, rows, fetched);
		never_applied = NeverAppliedInline(p, rows, fetched, snapshot, &n_never);
		done = ApplyInLogOrder(p, rows, fetched, !p->caught_up, never_applied,
							   n_never, &parking, &error);
		if (done > 0)
			p->checkpoint = EventRowsPlace(rows, done - 1);
		unsaved += done;
		if (error != NULL)
		{
			SaveReplayProgress(p, part, unsaved);
			unsaved = 0;
			saved = p->checkpoint;
			finished = false;
			RecordProjectionFailure(p, error, EventRowsPosition(rows, done),
									EventRowsId(rows, done));
			UnregisterSnapshot(snapshot);
			total += done;
			break;
		}
		if (fetched < limit)
		{
			/* (a bounded partition stops at its bound: partitions.c) */
			if (part == NULL || !part->bounded)
				AdvanceToHead(p, snapshot, horizon);
			/*
			 * Everything below the horizon is applied; the replay is done
			 * once that covers every event committed before it started.
			 */
			*at_head = FullTransactionIdFollows(horizon, p->replay_until);
			if (part != NULL && *at_head && !part->done)
				part->done = finished = true;
		}
		UnregisterSnapshot(snapshot);
		total += done;
		if (fetched < limit)
			break;
	}
	MemoryContextSwitchTo(outer);
	/* an idle run writes nothing (no xid, no commit to flush) */
	if (unsaved > 0 || finished || CompareLogPlaces(p->checkpoint, saved) != 0)
		SaveReplayProgress(p, part, unsaved);
	MemoryContextDelete(batch_context);
	return total;
}

/*
 * Drain up to `limit` skips that are visible now, oldest first, of every
 * stream or of `stream` (not NULL: releasing the events a dead letter
 * parked): an event at or before the checkpoint was applied by the replay
 * and is only archived; any other, and a parked one, is applied, then
 * archived.  Rows parked behind a dead letter wait.  The drain of an
 * active, caught-up inline projection applies its events for the first
 * time; a release judges them as ApplyInLogOrder does, and leaves a
 * rebuilding projection's skips that are not parked to its replay.
 * Returns the skips dealt with, *applied those applied; *failed when the
 * projection failed on one.
 */
static int64
DrainSkips(Projection *p, int limit, text *stream, int64 *applied_count,
		   bool *failed)
{
	bool		parks = !RegistryKeepsOids();
	Oid			argtypes[6] = {INT4OID, INT8OID, XID8OID, INT8OID, TEXTOID, BOOLOID};
	Datum		values[6] = {Int32GetDatum(p->id), Int64GetDatum(limit),
		FullTransactionIdGetDatum(p->checkpoint.xid),
		Int64GetDatum(p->checkpoint.position),
		PointerGetDatum(stream),
	BoolGetDatum(p->inline_mode && p->caught_up)};
	char		nulls[6] = {' ', ' ', ' ', ' ', stream == NULL ? 'n' : ' ', ' '};
	Snapshot	snapshot = RegisterSnapshot(GetLatestSnapshot());
	EventRows  *rows = EventRowsCreate(limit);
	Parking		parking = {NIL, NULL};
	int64	   *archived;
	Datum	   *to_apply;
	int64	   *applied;
	int			narchived = 0;
	int			napply = 0;
	int			napplied = 0;
	ErrorData  *error;
	int			done;
	uint64		nskips;

	*failed = false;
	*applied_count = 0;

	/*
	 * The page: each skip, whether it is parked, and whether the replay
	 * covered it.  (A 0.2.0 registry has no parked rows, nor streams.)
	 */
#define PENDING_SKIPS(parked, where) \
	"SELECT s.global_position, " parked "," \
	" (s.transaction_id, s.global_position) <= ($3, $4)" \
	" FROM eventstore.projection_skips s" \
	" WHERE s.projection_id = $1 AND s.drained_at IS NULL AND " where \
	" ORDER BY s.transaction_id, s.global_position LIMIT $2"
	QueryKeptPlanThrough(parks
						 ? KeptPlan(&pending_skips_plans[0],
									PENDING_SKIPS("s.parked",
												  "($5::text IS NULL OR s.stream_id = $5)"
												  " AND (s.parked OR $6"
												  "  OR (s.transaction_id, s.global_position) <= ($3, $4))"
												  " AND " SKIP_NOT_PARKED("s")),
									6, argtypes)
						 : KeptPlan(&pending_skips_plans[1],
									PENDING_SKIPS("false", "$5::text IS NULL AND $6"),
									6, argtypes),
						 values, nulls, snapshot, 0);
	nskips = SPI_processed;
	if (nskips == 0)
	{
		UnregisterSnapshot(snapshot);
		return 0;
	}
	archived = palloc(sizeof(int64) * nskips);
	to_apply = palloc(sizeof(Datum) * nskips);
	for (uint64 i = 0; i < nskips; i++)
	{
		HeapTuple	row = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		int64		position = DatumGetInt64(SPI_getbinval(row, desc, 1, &isnull));
		bool		parked = DatumGetBool(SPI_getbinval(row, desc, 2, &isnull));
		bool		covered = DatumGetBool(SPI_getbinval(row, desc, 3, &isnull));

		if (covered && !parked)
			archived[narchived++] = position;
		else
			to_apply[napply++] = Int64GetDatum(position);
	}
	SPI_freetuptable(SPI_tuptable);
	MarkSkipsDrained(p, archived, narchived, false);
	if (napply > 0)
	{
		Oid			event_argtypes[1] = {INT8ARRAYOID};
		Datum		event_values[1] = {
			PointerGetDatum(construct_array(to_apply, napply, INT8OID, sizeof(int64),
											FLOAT8PASSBYVAL, TYPALIGN_DOUBLE))
		};
		DestReceiver *dest = EventRowsDest(rows);

		PushActiveSnapshot(snapshot);
		ExecKeptPlanInto(KeptPlan(&skipped_events_plan,
								  "SELECT * FROM eventstore.events"
								  " WHERE global_position = ANY ($1)"
								  " ORDER BY transaction_id, global_position",
								  1, event_argtypes),
						 event_values, NULL, dest, 0);
		PopActiveSnapshot();
		dest->rDestroy(dest);
	}
	UnregisterSnapshot(snapshot);

	parking.parked = palloc0(sizeof(bool) * Max(EventRowsCount(rows), 1));
	done = ApplyInLogOrder(p, rows, EventRowsCount(rows), stream != NULL, NULL, 0,
						   &parking, &error);
	/* a row parked meanwhile stays pending, behind its stream's dead letter */
	applied = palloc(sizeof(int64) * Max(done, 1));
	for (int i = 0; i < done; i++)
		if (!parking.parked[i])
			applied[napplied++] = EventRowsPosition(rows, i);
	MarkSkipsDrained(p, applied, napplied, true);
	SaveProjectionProgress(p, napplied);
	*applied_count = napplied;
	if (error != NULL)
	{
		RecordProjectionFailure(p, error, EventRowsPosition(rows, done),
								EventRowsId(rows, done));
		*failed = true;
	}
	return narchived + done;
}

/*
 * The replay reached the head: mark the projection active.  Taking its
 * apply lock exclusively waits for every inline application in flight, so
 * the skips they record are visible to the drain that follows; appends
 * granted the lock after this transaction commits see the projection
 * active.
 */
static void
Activate(Projection *p)
{
	LockProjection(p->id, PROJECTION_APPLY_LOCK, ExclusiveLock, true);
	p->caught_up = true;
	SetProjectionStatus(p, PROJECTION_ACTIVE);
}

/*
 * run_projection's work for one projection, also the worker's: apply what
 * the projection has not applied yet.  Takes the projection's runner lock,
 * waiting for it when `wait`, else returning 0 at once with *busy set when
 * another transaction has it.  A replay split in partitions (parallel) is
 * run by RunPartitions, starting with partition first_partition (modulo
 * their number), then, once they are joined, as one.  The caller is
 * connected to SPI and runs as the extension's owner.  Returns the events
 * applied (and dead-lettered, and drained); *exhausted when max_events
 * ended the run.
 */
int64
RunProjection(Projection *p, int64 max_events, bool wait, int first_partition,
			  bool *busy, bool *exhausted)
{
	int64		applied = 0;
	int64		budget_used;
	bool		at_head = false;
	bool		activated;
	ErrorData  *missing;

	*exhausted = false;
	/*
	 * A split build from the start also begins with its backfill, once,
	 * before any partition: the partitions start from the checkpoint it
	 * leaves (RunPartitions never starts one behind the projection's).
	 */
	if (ReplayIsSplit(p) && BackfillPending(p))
	{
		*busy = !LockProjection(p->id, PROJECTION_RUNNER_LOCK, ExclusiveLock,
								wait);
		if (*busy)
			return 0;
		p = ReloadProjection(p->id);
		if (p == NULL || p->status == PROJECTION_FAILED ||
			p->status == PROJECTION_STOPPED)
			return 0;
		if ((missing = MissingOwnerCode(p)) != NULL)
		{
			RecordProjectionFailure(p, missing, -1, NULL);
			return 0;
		}
		if (BackfillPending(p) && !Backfill(p))
			return 0;
	}
	if (!ReplayIsSplit(p))
	{
		*busy = !LockProjection(p->id, PROJECTION_RUNNER_LOCK, ExclusiveLock,
								wait);
		if (*busy)
			return 0;
		/* what another runner did before we got the lock counts */
		p = ReloadProjection(p->id);
		if (p == NULL)
			return 0;
	}
	/* (or a rebuild that committed while we waited split it) */
	if (ReplayIsSplit(p))
	{
		if (!RunPartitions(p, max_events, wait, first_partition, &applied,
						   busy, exhausted))
			return applied;
		/* joined: on as one, holding RUNNER exclusive */
		p = ReloadProjection(p->id);
		if (p == NULL)
			return applied;
	}
	if (p->status == PROJECTION_FAILED || p->status == PROJECTION_STOPPED)
		return applied;
	if ((missing = MissingOwnerCode(p)) != NULL)
	{
		/* not any event's fault: no error position */
		RecordProjectionFailure(p, missing, -1, NULL);
		return applied;
	}
	if (max_events > 0 && applied >= max_events)
	{
		*exhausted = true;
		return applied;
	}
	if (!(p->inline_mode && p->caught_up))
	{
		/* a build from the start begins with its backfill (backfill.c) */
		if (BackfillPending(p) && !Backfill(p))
			return applied;
		applied += Replay(p, max_events > 0 ? max_events - applied : 0, NULL,
						  &at_head);
	}
	budget_used = applied;
	if (p->status == PROJECTION_FAILED)
		return applied;
	activated = at_head && !p->caught_up;
	if (activated)
		Activate(p);
	/*
	 * Drain a page at a time, up to max_events skips (archived or applied:
	 * each page's query and updates are the work to bound).
	 */
	while (p->inline_mode && p->caught_up && p->status == PROJECTION_ACTIVE)
	{
		int			page = ProjectionBatchSize;
		int64		dealt;
		int64		drained;
		bool		failed;

		if (max_events > 0 && max_events - budget_used < page)
			page = (int) (max_events - budget_used);
		if (page <= 0)
			break;
		dealt = DrainSkips(p, page, NULL, &drained, &failed);
		applied += drained;
		budget_used += dealt;
		if (failed || dealt < page)
			break;
	}
	/* stopped by max_events rather than by running out: more may wait */
	*exhausted = max_events > 0 && budget_used >= max_events;
	/*
	 * At the head: promote => 'auto' runs its checks and promotes, when the
	 * version has just reached it or its promotion is pending.
	 */
	if (p->status == PROJECTION_ACTIVE && p->caught_up)
		AutoPromote(p, activated);
	return applied;
}

/*
 * Release the events a dead letter of stream `stream` parked: apply them
 * in log order, a page at a time, until none is left that is not parked
 * behind another.
 */
static void
ReleaseStream(Projection *p, text *stream)
{
	for (;;)
	{
		int64		drained;
		bool		failed;
		int64		dealt = DrainSkips(p, ProjectionBatchSize, stream, &drained,
									   &failed);

		if (failed || dealt < ProjectionBatchSize)
			return;
	}
}

/*
 * retry_dead_letters (retry) and discard_dead_letters for one projection:
 * its unresolved dead letters (of `stream`, or all when NULL), in log
 * order, are applied again (one that fails again keeps its new error) or
 * given up, recorded as resolved by role `by`; under on_error = 'park' the
 * events parked behind each resolved one are then applied, in order.  Runs
 * under the projection's runner lock, so never together with a batch, a
 * drain or a replay of it.  The caller is connected to SPI and runs as the
 * extension's owner.  Returns the dead letters resolved.
 */
int64
ResolveDeadLetters(Projection *p, text *stream, bool retry, const char *by)
{
	Oid			argtypes[2] = {INT4OID, TEXTOID};
	Datum		values[2] = {Int32GetDatum(p->id), PointerGetDatum(stream)};
	char		nulls[2] = {' ', stream == NULL ? 'n' : ' '};
	Snapshot	snapshot;
	EventRows  *rows;
	int64	   *ids;
	int			n;
	int64		resolved = 0;
	DestReceiver *dest;

	LockProjection(p->id, PROJECTION_RUNNER_LOCK, ExclusiveLock, true);
	/* what a runner did before we got the lock counts */
	p = ReloadProjection(p->id);
	if (p == NULL)
		return 0;

#define UNRESOLVED(columns) \
	"SELECT " columns " FROM eventstore.projection_dead_letters d" \
	" JOIN eventstore.events e USING (global_position)" \
	" WHERE d.projection_id = $1 AND d.resolution IS NULL" \
	" AND ($2::text IS NULL OR d.stream_id = $2)" \
	" ORDER BY e.transaction_id, e.global_position, d.dead_letter_id"
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	QueryKeptPlanThrough(KeptPlan(&dead_letters_plan, UNRESOLVED("d.dead_letter_id"),
								  2, argtypes),
						 values, nulls, snapshot, 0);
	n = (int) SPI_processed;
	ids = palloc(sizeof(int64) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		bool		isnull;

		ids[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
											 SPI_tuptable->tupdesc, 1, &isnull));
	}
	SPI_freetuptable(SPI_tuptable);
	rows = EventRowsCreate(n);
	dest = EventRowsDest(rows);
	PushActiveSnapshot(snapshot);
	ExecKeptPlanInto(KeptPlan(&dead_letter_events_plan, UNRESOLVED("e.*"),
							  2, argtypes),
					 values, nulls, dest, 0);
	PopActiveSnapshot();
	dest->rDestroy(dest);
	UnregisterSnapshot(snapshot);
	Assert(EventRowsCount(rows) == n);

	for (int i = 0; i < n; i++)
	{
		CHECK_FOR_INTERRUPTS();
		if (retry)
		{
			/* replayed if the build from the start applies it again */
			bool		replayed = CompareLogPlaces(EventRowsPlace(rows, i),
													p->replayed_through) <= 0;
			ErrorData  *error = RetryEvent(p, rows, i, replayed);

			if (error != NULL)
			{
				RecordRetryFailure(ids[i], error);
				FreeErrorData(error);
				continue;
			}
		}
		ResolveDeadLetter(p, ids[i], retry ? RESOLUTION_RETRIED : RESOLUTION_DISCARDED,
						  by);
		resolved++;
		if (p->park_errors)
			ReleaseStream(p, DatumGetTextPP(EventRowsColumn(rows, i, EVENTS_STREAM_ID)));
	}
	/* the retried dead letters count as applied (DrainSkips counts its own) */
	if (retry && resolved > 0)
		SaveProjectionProgress(p, resolved);
	return resolved;
}
