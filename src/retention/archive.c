/*
 * retention/archive.c
 *		archive_events, set_retention and run_maintenance, and the batches
 *		that archival and retention are made of.
 *
 * archive_events cannot commit inside a function, and one transaction
 * moving a million events would hold the log's read horizon (every
 * read_all, every projection) for as long as it ran.  So it only queues the
 * work: a row of eventstore.maintenance_log, running (finished_at NULL),
 * with its cutoff, the last position it covers and a cursor.  The worker
 * moves the events in batches of pg_eventstore.maintenance_batch_size, each
 * in a transaction of its own that also advances the cursor and the row's
 * count, so a crash anywhere loses and repeats nothing (run_maintenance
 * does the same batches in its caller's transaction).
 *
 * A batch walks the log by global_position from the cursor.  It moves an
 * event only as part of its stream's oldest events: a stream loses events
 * from its start, never from its middle, so read_stream always returns a
 * stream from some revision to its end without holes.  And it never moves
 * or removes an event a projection or a processor still has to apply (the
 * holds, below): it waits for them.
 *
 * Retention walks the streams instead (a pass every retention_interval),
 * each under the rule of the longest prefix of its id, removing each
 * stream's expired oldest events and leaving their log places in
 * eventstore.removed_log_places.  An archived event's place is its row in
 * the archive, so archival writes none there.
 */
#include "postgres.h"

#include <limits.h>

#include "catalog/pg_type.h"
#include "core/args.h"
#include "core/catalog.h"
#include "core/kept_plans.h"
#include "core/role.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "retention/archival.h"
#include "retention/retention.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"
#include "worker/worker.h"

PG_FUNCTION_INFO_V1(eventstore_archive_events);
PG_FUNCTION_INFO_V1(eventstore_set_retention);
PG_FUNCTION_INFO_V1(eventstore_run_maintenance);

/* The maintenance lock's advisory tag: field4 'MT', one per database. */
#define MAINTENANCE_LOCK_FIELD4 0x4D54

int			MaintenanceBatchSize = 1000;
int			RetentionInterval = 60;
int			MaintenanceThrottle = 0;

static SPIPlanPtr holds_plan;
static SPIPlanPtr job_plan;
static SPIPlanPtr move_plan;
static SPIPlanPtr progress_plan;
static SPIPlanPtr queue_plan;
static SPIPlanPtr rules_exist_plan;
static SPIPlanPtr streams_plan;
static SPIPlanPtr expire_plan;
static SPIPlanPtr interrupted_plan;

/* pg_eventstore.maintenance_batch_size and retention_interval */
void
DefineMaintenanceSettings(void)
{
	DefineCustomIntVariable("pg_eventstore.maintenance_batch_size",
							"Events archival and retention move or remove per transaction.",
							"Each batch commits on its own, holding row locks on at most this many events and the log's read horizon for its duration.  Sessions may set it for run_maintenance; a reload applies it to the workers.",
							&MaintenanceBatchSize,
							1000, 1, 100000,
							PGC_USERSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pg_eventstore.retention_interval",
							"How long the worker waits between the end of a retention pass and the next.",
							"A pass walks every stream once, enforcing eventstore.retention_rules.  A reload applies it.",
							&RetentionInterval,
							60, 1, 86400,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pg_eventstore.maintenance_throttle",
							"Most events per second the worker's archival and retention move or remove; 0 is unlimited.",
							"On a machine whose cores the appends need, a throttle leaves them their share.  A reload applies it.",
							&MaintenanceThrottle,
							0, 0, INT_MAX,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
}

/*
 * Take this database's maintenance lock until the end of the transaction:
 * one archival or retention batch at a time.  false when wait is false and
 * another transaction has it.
 */
bool
LockMaintenance(bool wait)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, 0, 0, MAINTENANCE_LOCK_FIELD4);
	return LockAcquire(&tag, ExclusiveLock, false, !wait) != LOCKACQUIRE_NOT_AVAIL;
}

/*
 * What archival and retention must leave in the live log: every event after
 * the least checkpoint of an async or rebuilding projection or of a
 * processor (kept_* is at or before it: the holder has applied it), and
 * every event at or after the first one a projection still has to apply
 * from its skips or dead letters (before_*).  Each with who holds it.
 */
typedef struct Holds
{
	bool		kept;			/* events after kept_place stay */
	Datum		kept_xid;
	Datum		kept_position;
	bool		before;			/* events at or after before_place stay */
	Datum		before_xid;
	Datum		before_position;
	Datum		holder;			/* text: the first of them; 0: none */
} Holds;

/*
 * The holds, read in the batch's snapshot: a checkpoint only moves on (or
 * back, by a rebuild or a reset, which then sees the log as it now is), so
 * an event at or before the least one has been applied by everyone.  An
 * inline projection that is active applies at append; only its pending
 * skips hold.
 */
static Holds
ReadHolds(void)
{
	Holds		h = {0};

	ExecKeptPlan(KeptPlan(&holds_plan,
						  "SELECT 1 AS kind, x, p, who FROM"
						  " (SELECT transaction_id AS x, \"position\" AS p,"
						  "   format('projection %s version %s', name, version) AS who"
						  "  FROM eventstore.projections"
						  "  WHERE mode = 'async' OR status <> 'active' OR NOT caught_up"
						  "  UNION ALL"
						  "  SELECT COALESCE(transaction_id, '0'), COALESCE(\"position\", 0),"
						  "   format('processor %s partition %s', processor_id, partition)"
						  "  FROM eventstore.checkpoints"
						  "  ORDER BY 1, 2 LIMIT 1) k"
						  " UNION ALL"
						  " SELECT 2, x, p, who FROM"
						  " (SELECT s.transaction_id AS x, s.global_position AS p,"
						  "   format('pending skips of projection %s version %s', q.name, q.version) AS who"
						  "  FROM eventstore.projection_skips s"
						  "   JOIN eventstore.projections q USING (projection_id)"
						  "  WHERE s.drained_at IS NULL"
						  "  UNION ALL"
						  "  SELECT e.transaction_id, e.global_position,"
						  "   format('dead letters of projection %s version %s', q.name, q.version)"
						  "  FROM eventstore.projection_dead_letters d"
						  "   JOIN eventstore.events e USING (global_position)"
						  "   JOIN eventstore.projections q USING (projection_id)"
						  "  WHERE d.resolution IS NULL"
						  "  ORDER BY 1, 2 LIMIT 1) b",
						  0, NULL),
				 NULL, NULL, true, 0);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	row = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		int32		kind = DatumGetInt32(SPI_getbinval(row, desc, 1, &isnull));
		Datum		x = SPI_datumTransfer(SPI_getbinval(row, desc, 2, &isnull), true, -1);
		Datum		p = SPI_getbinval(row, desc, 3, &isnull);
		Datum		who = SPI_datumTransfer(SPI_getbinval(row, desc, 4, &isnull), false, -1);

		if (kind == 1)
		{
			h.kept = true;
			h.kept_xid = x;
			h.kept_position = p;
		}
		else
		{
			h.before = true;
			h.before_xid = x;
			h.before_position = p;
		}
		if (h.holder == (Datum) 0)
			h.holder = who;
	}
	return h;
}

/* The SQL test that an event is free of the holds, with $n the first. */
#define FREE_OF_HOLDS(a, b, c, d) \
	"($" a " IS NULL OR (transaction_id, global_position) <= ($" a ", $" b "))" \
	" AND ($" c " IS NULL OR (transaction_id, global_position) < ($" c ", $" d "))"

/* Put the holds into values/nulls from index `at` on (four arguments). */
static void
HoldArgs(const Holds *h, Datum *values, char *nulls, int at)
{
	values[at] = h->kept_xid;
	values[at + 1] = h->kept_position;
	values[at + 2] = h->before_xid;
	values[at + 3] = h->before_position;
	nulls[at] = nulls[at + 1] = h->kept ? ' ' : 'n';
	nulls[at + 2] = nulls[at + 3] = h->before ? ' ' : 'n';
}

/*
 * Add `events` to a maintenance_log row's count, set details' `key` to
 * `value` (text, a number when numeric; NULL: left as it is) and the holder
 * it waits for (NULL: none), and when `finish`, mark the row finished.
 */
static void
NoteProgress(int64 maintenance_id, int64 events, const char *key,
			 const char *value, bool numeric, Datum holder, bool finish)
{
	Oid			argtypes[7] = {INT8OID, INT8OID, TEXTOID, TEXTOID, BOOLOID,
	TEXTOID, BOOLOID};
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};

	values[0] = Int64GetDatum(maintenance_id);
	values[1] = Int64GetDatum(events);
	values[2] = CStringGetTextDatum(key);
	values[3] = value != NULL ? CStringGetTextDatum(value) : (Datum) 0;
	nulls[3] = value != NULL ? ' ' : 'n';
	values[4] = BoolGetDatum(numeric);
	values[5] = holder;
	nulls[5] = holder != (Datum) 0 ? ' ' : 'n';
	values[6] = BoolGetDatum(finish);
	ExecKeptPlan(KeptPlan(&progress_plan,
						  "UPDATE eventstore.maintenance_log"
						  " SET events = events + $2,"
						  "  details = (COALESCE(details, '{}') - 'waiting_for')"
						  "   || jsonb_strip_nulls(jsonb_build_object("
						  "        $3, CASE WHEN $5 THEN to_jsonb($4::numeric) ELSE to_jsonb($4) END,"
						  "        'waiting_for', $6)),"
						  "  finished_at = CASE WHEN $7 THEN clock_timestamp() END"
						  " WHERE maintenance_id = $1",
						  7, argtypes),
				 values, nulls, false, 0);
}

/*
 * Run a kept statement that deletes from the log, allowed past its
 * append-only trigger for that statement only (log_guard.c).
 */
static void
ExecRemoval(SPIPlanPtr plan, Datum *values, const char *nulls)
{
	LogChange	previous = AllowLogChange(LOG_CHANGE_DELETE);

	PG_TRY();
	{
		ExecKeptPlan(plan, values, nulls, false, 0);
	}
	PG_FINALLY();
	{
		RestoreLogChange(previous);
	}
	PG_END_TRY();
}

/*
 * One batch of the oldest queued archive_events: up to `limit` events of
 * the log after its cursor (by global_position, up to the last position it
 * covers) examined, those created before its cutoff moved to the archive.
 * The caller is connected to SPI as the extension's owner and holds the
 * maintenance lock.  Returns the events moved; *more when the job (or a
 * later one) has more to do at once, false when none is queued or it waits
 * for a holder.
 */
int64
RunArchivalBatch(int limit, bool *more)
{
	Holds		holds;
	int64		id;
	Datum		before;
	Datum		through;
	Datum		cursor;
	bool		isnull;
	Oid			argtypes[8] = {INT8OID, INT8OID, INT8OID, TIMESTAMPTZOID,
	XID8OID, INT8OID, XID8OID, INT8OID};
	Datum		values[8];
	char		nulls[8] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	int64		moved;
	int64		examined;
	bool		waits;
	Datum		next;

	*more = false;
	ExecKeptPlan(KeptPlan(&job_plan,
						  "SELECT maintenance_id, (details->>'before')::timestamptz,"
						  "  (details->>'through_position')::bigint,"
						  "  COALESCE((details->>'cursor')::bigint, 0)"
						  " FROM eventstore.maintenance_log"
						  " WHERE action = 'archive_events' AND finished_at IS NULL"
						  " ORDER BY maintenance_id LIMIT 1 FOR UPDATE",
						  0, NULL),
				 NULL, NULL, false, 0);
	if (SPI_processed == 0)
		return 0;
	id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	before = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	through = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull);
	cursor = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4, &isnull);

	holds = ReadHolds();
	values[0] = cursor;
	values[1] = through;
	values[2] = Int64GetDatum(limit);
	values[3] = before;
	HoldArgs(&holds, values, nulls, 4);

	/*
	 * c: the events examined.  wait: the first old one a holder still has
	 * to apply; the batch stops before it.  A stream's events among those
	 * examined are consecutive revisions (its positions grow with its
	 * revisions): they move while each and all before it are old, and only
	 * if the stream's event before the first of them is gone already.
	 */
	ExecRemoval(KeptPlan(&move_plan,
						  "WITH c AS ("
						  "  SELECT global_position, stream_id, revision, created_at < $4 AS old,"
						  "   " FREE_OF_HOLDS("5", "6", "7", "8") " AS free"
						  "  FROM eventstore.events"
						  "  WHERE global_position > $1 AND global_position <= $2"
						  "  ORDER BY global_position LIMIT $3),"
						  " wait AS (SELECT min(global_position) AS at FROM c WHERE old AND NOT free),"
						  " w AS ("
						  "  SELECT c.global_position, c.stream_id,"
						  "   bool_and(c.old) OVER s AS run,"
						  "   first_value(c.revision) OVER s AS first_revision"
						  "  FROM c, wait WHERE wait.at IS NULL OR c.global_position < wait.at"
						  "  WINDOW s AS (PARTITION BY c.stream_id ORDER BY c.revision)),"
						  " moving AS ("
						  "  SELECT global_position FROM w"
						  "  WHERE run AND (first_revision = 0 OR NOT EXISTS ("
						  "   SELECT FROM eventstore.events p"
						  "   WHERE p.stream_id = w.stream_id AND p.revision = w.first_revision - 1))),"
						  " moved AS ("
						  "  DELETE FROM eventstore.events e USING moving m"
						  "  WHERE e.global_position = m.global_position RETURNING e.*),"
						  " archived AS ("
						  "  INSERT INTO eventstore.events_archive SELECT * FROM moved RETURNING 1)"
						  " SELECT (SELECT count(*) FROM archived), (SELECT count(*) FROM c),"
						  "  (SELECT at FROM wait), (SELECT max(global_position) FROM c)",
						  8, argtypes),
				values, nulls);
	{
		HeapTuple	row = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		no_wait;
		bool		none;

		moved = DatumGetInt64(SPI_getbinval(row, desc, 1, &isnull));
		examined = DatumGetInt64(SPI_getbinval(row, desc, 2, &isnull));
		next = SPI_getbinval(row, desc, 3, &no_wait);
		waits = !no_wait;
		if (waits)
			next = Int64GetDatum(DatumGetInt64(next) - 1);
		else
		{
			next = SPI_getbinval(row, desc, 4, &none);
			if (none)
				next = cursor;
		}
	}

	/* done once it examined fewer than it could, without waiting */
	NoteProgress(id, moved, "cursor",
				 psprintf(INT64_FORMAT, DatumGetInt64(next)), true,
				 waits ? holds.holder : (Datum) 0, !waits && examined < limit);
	*more = !waits;
	return moved;
}

/* Are there retention rules to enforce? */
bool
RetentionRulesExist(void)
{
	ExecKeptPlan(KeptPlan(&rules_exist_plan,
						  "SELECT FROM eventstore.retention_rules LIMIT 1", 0, NULL),
				 NULL, NULL, true, 0);
	return SPI_processed > 0;
}

/*
 * Remove the expired oldest events of one stream, at most `budget`, as its
 * rule says (max_age: NULL or an interval; keep_from: events at or below
 * this revision are over max_count; NULL: none), leaving their places in
 * removed_log_places.  *held_by is the holder when an expired event had to
 * stay for it.
 */
static int64
ExpireStream(Datum stream_id, Datum max_age, bool no_age, Datum keep_from,
			 bool no_count, int64 budget, const Holds *holds, bool *held)
{
	Oid			argtypes[8] = {TEXTOID, INTERVALOID, INT8OID, INT8OID,
	XID8OID, INT8OID, XID8OID, INT8OID};
	Datum		values[8];
	char		nulls[8] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	bool		isnull;
	bool		held_null;
	int64		removed;

	values[0] = stream_id;
	values[1] = max_age;
	nulls[1] = no_age ? 'n' : ' ';
	values[2] = keep_from;
	nulls[2] = no_count ? 'n' : ' ';
	values[3] = Int64GetDatum(budget);
	HoldArgs(holds, values, nulls, 4);
	ExecRemoval(KeptPlan(&expire_plan,
						  "WITH c AS ("
						  "  SELECT global_position, revision,"
						  "   ($2 IS NOT NULL AND created_at < now() - $2)"
						  "   OR ($3 IS NOT NULL AND revision <= $3) AS expired,"
						  "   " FREE_OF_HOLDS("5", "6", "7", "8") " AS free"
						  "  FROM eventstore.events WHERE stream_id = $1"
						  "  ORDER BY revision LIMIT $4),"
						  " w AS (SELECT global_position, revision, expired, free,"
						  "  bool_and(expired AND free) OVER (ORDER BY revision) AS run FROM c),"
						  " gone AS ("
						  "  DELETE FROM eventstore.events e USING w"
						  "  WHERE w.run AND e.global_position = w.global_position"
						  "  RETURNING e.global_position, e.transaction_id),"
						  " kept AS ("
						  "  INSERT INTO eventstore.removed_log_places SELECT * FROM gone RETURNING 1)"
						  " SELECT (SELECT count(*) FROM kept),"
						  "  (SELECT expired AND NOT free FROM w WHERE NOT run"
						  "   ORDER BY revision LIMIT 1)",
						  8, argtypes),
				values, nulls);
	removed = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	*held = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &held_null));
	if (held_null)
		*held = false;
	return removed;
}

/*
 * One batch of a retention pass: up to `limit` streams after the pass's
 * last one examined, at most `limit` events removed.  The caller is
 * connected to SPI as the extension's owner and holds the maintenance
 * lock.  Returns the events removed; *done when the pass has reached the
 * last stream (its maintenance_log row, if it removed anything, finished).
 */
int64
RunRetentionBatch(RetentionPass *pass, int limit, bool *done)
{
	Oid			argtypes[2] = {TEXTOID, INT8OID};
	Datum		values[2];
	char		nulls[2] = {' ', ' '};
	Holds		holds = ReadHolds();
	SPITupleTable *streams;
	uint64		nstreams;
	int64		removed = 0;
	bool		any_held = false;
	char	   *last_done = pass->after_stream;
	bool		stopped = false;

	values[0] = pass->after_stream ? CStringGetTextDatum(pass->after_stream) : (Datum) 0;
	nulls[0] = pass->after_stream ? ' ' : 'n';
	values[1] = Int64GetDatum(limit);
	ExecKeptPlan(KeptPlan(&streams_plan,
						  "SELECT s.stream_id, r.max_age, s.revision - r.max_count"
						  " FROM (SELECT stream_id, revision FROM eventstore.streams"
						  "       WHERE $1 IS NULL OR stream_id > $1"
						  "       ORDER BY stream_id LIMIT $2) s"
						  "  LEFT JOIN LATERAL (SELECT max_age, max_count"
						  "   FROM eventstore.retention_rules r"
						  "   WHERE starts_with(s.stream_id, r.stream_prefix)"
						  "   ORDER BY length(r.stream_prefix) DESC LIMIT 1) r ON true"
						  " ORDER BY s.stream_id",
						  2, argtypes),
				 values, nulls, true, 0);
	streams = SPI_tuptable;
	nstreams = SPI_processed;
	for (uint64 i = 0; i < nstreams; i++)
	{
		HeapTuple	row = streams->vals[i];
		bool		stream_null;
		bool		no_age;
		bool		no_count;
		Datum		stream_id = SPI_getbinval(row, streams->tupdesc, 1, &stream_null);
		Datum		max_age = SPI_getbinval(row, streams->tupdesc, 2, &no_age);
		Datum		keep_from = SPI_getbinval(row, streams->tupdesc, 3, &no_count);
		int64		budget = limit - removed;

		/* under a rule, and (by count) with more events than it keeps */
		if (!(no_age && no_count) &&
			!(no_age && DatumGetInt64(keep_from) < 0))
		{
			bool		held;
			int64		n = ExpireStream(stream_id, max_age, no_age, keep_from,
										 no_count, budget, &holds, &held);

			removed += n;
			any_held |= held;
			if (n == budget)
			{
				/* it may have more: the next batch starts at it again */
				stopped = true;
				break;
			}
		}
		last_done = TextDatumGetCString(stream_id);
	}

	if (removed > 0 && pass->maintenance_id == 0)
		pass->maintenance_id = StartMaintenance("retention", NULL, NULL,
												GetUserNameFromId(GetUserId(), false));
	*done = !stopped && nstreams < (uint64) limit;
	if (pass->maintenance_id != 0)
		NoteProgress(pass->maintenance_id, removed, "after_stream", last_done,
					 false, any_held ? holds.holder : (Datum) 0, *done);
	pass->removed += removed;
	if (last_done != pass->after_stream)
	{
		MemoryContext old = MemoryContextSwitchTo(pass->context);

		pass->after_stream = pstrdup(last_done);
		MemoryContextSwitchTo(old);
	}
	return removed;
}

/*
 * Finish the maintenance_log rows of retention passes that a worker's
 * crash or stop left running (a pass's row is written by its first batch
 * that removes something and finished by its last): their counts stand.
 */
void
FinishInterruptedPasses(void)
{
	ExecKeptPlan(KeptPlan(&interrupted_plan,
						  "UPDATE eventstore.maintenance_log"
						  " SET finished_at = clock_timestamp(),"
						  "  details = COALESCE(details, '{}') || '{\"interrupted\": true}'"
						  " WHERE action = 'retention' AND finished_at IS NULL",
						  0, NULL),
				 NULL, NULL, false, 0);
}

/* The caller's role name, for maintenance_log.performed_by. */
static const char *
CallerName(void)
{
	return GetUserNameFromId(GetUserId(), false);
}

/*
 * SQL: archive_events(before) RETURNS bigint
 * Queue the move of the live log's events created before `before` into the
 * archive, for the worker (or run_maintenance); returns how many there are
 * now.  The work covers the log up to its last position now: later events
 * are for a later call.
 */
Datum
eventstore_archive_events(PG_FUNCTION_ARGS)
{
	const char *caller;
	RoleSwitch	saved;
	Datum		before;
	Oid			argtypes[2] = {INT8OID, TIMESTAMPTZOID};
	Datum		values[2];
	int64		id;
	int64		queued;
	bool		isnull;
	char	   *before_text;

	RequireArgNotNull(fcinfo, 0, "before",
					  "Pass the time before which events are archived, for example now() - interval '1 year'.");
	before = PG_GETARG_DATUM(0);
	caller = CallerName();
	before_text = DatumGetCString(DirectFunctionCall1(timestamptz_out, before));

	ConnectSpi();
	saved = BecomeRole(ExtensionOwner());
	id = StartMaintenance("archive_events", before_text, NULL, caller);
	values[0] = Int64GetDatum(id);
	values[1] = before;
	ExecKeptPlan(KeptPlan(&queue_plan,
						  "WITH n AS (SELECT count(*) AS queued,"
						  "  (SELECT COALESCE(max(global_position), 0) FROM eventstore.events) AS through"
						  "  FROM eventstore.events WHERE created_at < $2)"
						  " UPDATE eventstore.maintenance_log l"
						  " SET details = jsonb_build_object('before', $2, 'through_position', n.through,"
						  "  'cursor', 0, 'queued', n.queued)"
						  " FROM n WHERE l.maintenance_id = $1"
						  " RETURNING n.queued",
						  2, argtypes),
				 values, NULL, false, 0);
	queued = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	RestoreRole(saved);
	SPI_finish();
	WakeWorkersAtCommit();
	PG_RETURN_INT64(queued);
}

/*
 * SQL: set_retention(stream_prefix, max_age, max_count)
 * Set the rule of a stream-id prefix; NULL max_age and max_count remove it.
 */
Datum
eventstore_set_retention(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr set_plan;
	static SPIPlanPtr remove_plan;
	Oid			argtypes[4] = {TEXTOID, INTERVALOID, INT8OID, TEXTOID};
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	const char *caller;
	RoleSwitch	saved;

	RequireArgNotNull(fcinfo, 0, "stream_prefix",
					  "Pass the start of the stream ids the rule is for, or '' for every stream.");
	if (!PG_ARGISNULL(1))
	{
		Interval   *age = PG_GETARG_INTERVAL_P(1);
		Interval	zero = {0};

		if (DatumGetInt32(DirectFunctionCall2(interval_cmp, IntervalPGetDatum(age),
											  IntervalPGetDatum(&zero))) <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("max_age must be a positive interval"),
					 errhint("Pass for example interval '30 days', or NULL for no age limit.")));
	}
	if (!PG_ARGISNULL(2) && PG_GETARG_INT64(2) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_count must be 0 or more"),
				 errdetail("Got " INT64_FORMAT ".", PG_GETARG_INT64(2)),
				 errhint("Pass the number of events each stream keeps, or NULL for no count limit.")));
	caller = CallerName();
	values[0] = PG_GETARG_DATUM(0);
	values[1] = PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1);
	nulls[1] = PG_ARGISNULL(1) ? 'n' : ' ';
	values[2] = PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2);
	nulls[2] = PG_ARGISNULL(2) ? 'n' : ' ';
	values[3] = CStringGetTextDatum(caller);

	ConnectSpi();
	saved = BecomeRole(ExtensionOwner());
	if (PG_ARGISNULL(1) && PG_ARGISNULL(2))
	{
		if (ExecKeptPlan(KeptPlan(&remove_plan,
								  "DELETE FROM eventstore.retention_rules"
								  " WHERE stream_prefix = $1",
								  1, argtypes),
						 values, nulls, false, 0) == 0)
			ereport(NOTICE,
					(errmsg("no retention rule for stream prefix \"%s\"",
							TextDatumGetCString(values[0])),
					 errdetail("Nothing was removed.")));
	}
	else
		ExecKeptPlan(KeptPlan(&set_plan,
							  "INSERT INTO eventstore.retention_rules"
							  " (stream_prefix, max_age, max_count, set_by, set_at)"
							  " VALUES ($1, $2, $3, $4, now())"
							  " ON CONFLICT (stream_prefix) DO UPDATE"
							  " SET max_age = $2, max_count = $3, set_by = $4, set_at = now()",
							  4, argtypes),
					 values, nulls, false, 0);
	RestoreRole(saved);
	SPI_finish();
	WakeWorkersAtCommit();
	PG_RETURN_VOID();
}

/*
 * SQL: run_maintenance(max_events) RETURNS bigint
 * The queued archival, then a whole retention pass, in the caller's
 * transaction (waiting for a worker's batch to end), at most max_events
 * events moved or removed (NULL: no limit).  Returns how many.
 */
Datum
eventstore_run_maintenance(PG_FUNCTION_ARGS)
{
	int64		max_events = PG_ARGISNULL(0) ? PG_INT64_MAX : PG_GETARG_INT64(0);
	int64		total = 0;
	RoleSwitch	saved;
	bool		more = true;

	if (!PG_ARGISNULL(0))
		RequireAtLeastOne(max_events, "max_events",
						  "Pass NULL to do all the queued work.");
	ConnectSpi();
	saved = BecomeRole(ExtensionOwner());
	LockMaintenance(true);
	while (more && total < max_events)
	{
		CHECK_FOR_INTERRUPTS();
		total += RunArchivalBatch((int) Min(MaintenanceBatchSize, max_events - total),
								  &more);
	}
	if (total < max_events && RetentionRulesExist())
	{
		RetentionPass pass = {NULL, 0, 0, CurrentMemoryContext};
		bool		done = false;

		while (!done && total < max_events)
		{
			CHECK_FOR_INTERRUPTS();
			total += RunRetentionBatch(&pass, (int) Min(MaintenanceBatchSize, max_events - total),
									   &done);
		}
		/* a pass cut short by max_events still finishes its row */
		if (!done && pass.maintenance_id != 0)
			NoteProgress(pass.maintenance_id, 0, "after_stream", pass.after_stream,
						 false, (Datum) 0, true);
	}
	RestoreRole(saved);
	SPI_finish();
	PG_RETURN_INT64(total);
}
