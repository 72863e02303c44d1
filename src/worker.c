/*
 * worker.c
 *		The background workers: a launcher that keeps one or more workers
 *		running per served database, and the worker loop that drives that
 *		database's async projections and rebuilds with run_projection's code.
 *
 * Each worker runs one batch of each projection it serves per turn, every
 * batch and its checkpoint in a transaction of their own, so one slow
 * projection delays the others by at most one batch.  A database served by
 * n workers gives worker k the projections whose projection_id % n == k.
 * An append that touches an async projection sets the workers' latches at
 * commit; otherwise they wake every poll_interval.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "pg_eventstore.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

PGDLLEXPORT void eventstore_launcher_main(Datum arg);
PGDLLEXPORT void eventstore_worker_main(Datum arg);

/* Settings (module.c defines them). */
char	   *WorkerDatabases = NULL;
int			WorkerMaxWorkers = 2;
int			WorkerPollInterval = 1000;
int			WorkerRebuildThrottle = 0;
int			WorkerRetryInterval = 10000;

/* What the launcher tells a worker, in bgw_extra. */
typedef struct WorkerAssignment
{
	char		database[NAMEDATALEN];
	int			slot;			/* in the shared worker slots */
	int			member;			/* serves projection_id % members == member */
	int			members;
} WorkerAssignment;

/* The launcher's view of one worker slot. */
typedef struct LaunchedWorker
{
	WorkerAssignment assignment;
	BackgroundWorkerHandle *handle; /* NULL: not running */
	bool		terminating;	/* we asked it to stop */
	TimestampTz retry_at;		/* not before, after it stopped */
} LaunchedWorker;

static LaunchedWorker launched[ES_MAX_WORKERS];

/* Whether the current settings were checked (and warned about) already. */
static bool settings_checked = false;

/*
 * The workers the settings ask for: each served database gets
 * max_workers / ndatabases of them (the remainder going to the first ones),
 * at least one while max_workers lasts.  Returns how many slots are used.
 */
static int
WantedWorkers(WorkerAssignment *wanted)
{
	char	   *copy = pstrdup(WorkerDatabases ? WorkerDatabases : "");
	List	   *names = NIL;
	int			ndb;
	int			used = 0;

	bool		warn = !settings_checked;

	settings_checked = true;
	if (!SplitGUCList(copy, ',', &names))
	{
		if (warn)
			ereport(WARNING,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("pg_eventstore.databases is not a valid list of database names"),
					 errhint("Separate the names with commas, for example 'app, reports'.")));
		return 0;
	}
	ndb = list_length(names);
	if (ndb > WorkerMaxWorkers && warn)
		ereport(WARNING,
				(errmsg("pg_eventstore.databases names %d databases but pg_eventstore.max_workers is %d",
						ndb, WorkerMaxWorkers),
				 errdetail("Only the first %d databases are served.", WorkerMaxWorkers),
				 errhint("Raise pg_eventstore.max_workers (and max_worker_processes).")));
	for (int d = 0; d < ndb && d < WorkerMaxWorkers; d++)
	{
		int			members = WorkerMaxWorkers / ndb +
			(d < WorkerMaxWorkers % ndb ? 1 : 0);

		for (int m = 0; m < Max(members, 1); m++)
		{
			WorkerAssignment *a = &wanted[used];

			memset(a, 0, sizeof(WorkerAssignment));
			strlcpy(a->database, list_nth(names, d), NAMEDATALEN);
			a->slot = used;
			a->member = m;
			a->members = Max(members, 1);
			used++;
		}
	}
	return used;
}

/* Start the worker of slot s for its assignment. */
static void
StartWorker(LaunchedWorker *w, WorkerAssignment *a)
{
	BackgroundWorker worker;
	MemoryContext old;
	bool		registered;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(worker.bgw_library_name, "pg_eventstore", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "eventstore_worker_main", BGW_MAXLEN);
	snprintf(worker.bgw_name, BGW_MAXLEN, "pg_eventstore worker %d/%d for %s",
			 a->member + 1, a->members, a->database);
	strlcpy(worker.bgw_type, "pg_eventstore worker", BGW_MAXLEN);
	memcpy(worker.bgw_extra, a, sizeof(WorkerAssignment));
	worker.bgw_notify_pid = MyProcPid;

	w->assignment = *a;
	w->terminating = false;
	/* the handle outlives this turn's memory */
	old = MemoryContextSwitchTo(TopMemoryContext);
	registered = RegisterDynamicBackgroundWorker(&worker, &w->handle);
	MemoryContextSwitchTo(old);
	if (!registered)
	{
		w->handle = NULL;
		w->retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
												  WorkerRetryInterval);
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start a pg_eventstore worker for database \"%s\"",
						a->database),
				 errhint("Raise max_worker_processes.")));
	}
}

/*
 * Bring the running workers in line with the settings: stop those no longer
 * wanted (or assigned otherwise), restart stopped ones after the retry
 * interval (a missing database, a crash), start new ones.
 */
static void
ReconcileWorkers(void)
{
	WorkerAssignment wanted[ES_MAX_WORKERS];
	int			nwanted = WantedWorkers(wanted);
	TimestampTz now = GetCurrentTimestamp();

	for (int s = 0; s < ES_MAX_WORKERS; s++)
	{
		LaunchedWorker *w = &launched[s];
		bool		want = s < nwanted;

		if (w->handle != NULL)
		{
			pid_t		pid;

			if (GetBackgroundWorkerPid(w->handle, &pid) == BGWH_STOPPED)
			{
				pfree(w->handle);
				w->handle = NULL;
				/* a worker we did not stop ended: back off before retrying */
				w->retry_at = w->terminating ? now :
					TimestampTzPlusMilliseconds(now, WorkerRetryInterval);
			}
			else if (!w->terminating &&
					 (!want || memcmp(&w->assignment, &wanted[s],
									  sizeof(WorkerAssignment)) != 0))
			{
				TerminateBackgroundWorker(w->handle);
				w->terminating = true;
			}
		}
		if (w->handle == NULL && want && now >= w->retry_at)
			StartWorker(w, &wanted[s]);
	}
}

/* The launcher: started by the postmaster, restarted after a crash. */
void
eventstore_launcher_main(Datum arg)
{
	MemoryContext turn_context;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	memset(launched, 0, sizeof(launched));
	/* workers a previous launcher left running end themselves */
	StartLauncherGeneration();
	turn_context = AllocSetContextCreate(TopMemoryContext,
										 "pg_eventstore launcher turn",
										 ALLOCSET_SMALL_SIZES);

	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			settings_checked = false;
		}
		MemoryContextReset(turn_context);
		MemoryContextSwitchTo(turn_context);
		ReconcileWorkers();
		MemoryContextSwitchTo(TopMemoryContext);
		/* a worker starting or stopping sets our latch (bgw_notify_pid) */
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Min(WorkerRetryInterval, 1000), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/* Rebuild throttle: events a rebuild may still apply now (token bucket). */
static double rebuild_tokens = 0;
static TimestampTz tokens_at = 0;

/* Top the bucket up for the time passed; it holds one second's worth. */
static void
RefillRebuildTokens(void)
{
	TimestampTz now = GetCurrentTimestamp();

	if (tokens_at != 0)
		rebuild_tokens += (double) (now - tokens_at) / USECS_PER_SEC * WorkerRebuildThrottle;
	rebuild_tokens = Min(rebuild_tokens, (double) WorkerRebuildThrottle);
	tokens_at = now;
}

/* A projection due for work, as listed at the start of a turn. */
typedef struct DueProjection
{
	int32		id;
	bool		rebuilding;
} DueProjection;

static SPIPlanPtr due_plan;

/*
 * In a PG_CATCH of the worker: log the error, roll its transaction back
 * and go on, rather than let it turn FATAL.
 */
static void
RecoverFromError(void)
{
	HOLD_INTERRUPTS();
	EmitErrorReport();
	AbortOutOfAnyTransaction();
	FlushErrorState();
	RESUME_INTERRUPTS();
}

/* Read the due projections of this worker's share, into `context`. */
static List *
ReadDueProjections(WorkerAssignment *a, MemoryContext context)
{
	Oid			argtypes[2] = {INT4OID, INT4OID};
	Datum		values[2] = {Int32GetDatum(a->member), Int32GetDatum(a->members)};
	List	   *due = NIL;

	ConnectSpi();
	ExecKeptPlan(KeptPlan(&due_plan,
						  "SELECT projection_id, status = 'rebuilding'"
						  " FROM eventstore.projections p"
						  " WHERE projection_id % $2 = $1"
						  " AND (status = 'rebuilding'"
						  "  OR (status = 'active' AND (mode = 'async'"
						  "   OR EXISTS (SELECT FROM eventstore.projection_skips s"
						  "    WHERE s.projection_id = p.projection_id"
						  "      AND s.drained_at IS NULL))))"
						  " ORDER BY projection_id",
						  2, argtypes),
				 values, NULL, true, 0);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		MemoryContext old = MemoryContextSwitchTo(context);
		DueProjection *d = palloc(sizeof(DueProjection));
		bool		isnull;

		d->id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i],
											SPI_tuptable->tupdesc, 1, &isnull));
		d->rebuilding = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i],
												   SPI_tuptable->tupdesc, 2,
												   &isnull));
		due = lappend(due, d);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	return due;
}

/*
 * The projections this worker should look at now, in a transaction of its
 * own: async ones, rebuilds, and inline ones with skips to drain.  None
 * when this database has no (or an older) pg_eventstore.
 */
static List *
ListDueProjections(WorkerAssignment *a, MemoryContext context)
{
	List	   *volatile due = NIL;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		Oid			schema;

		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, "pg_eventstore: listing projections");
		schema = get_namespace_oid("eventstore", true);
		if (OidIsValid(get_extension_oid("pg_eventstore", true)) &&
			OidIsValid(schema) &&
			OidIsValid(get_relname_relid("projections", schema)))
			due = ReadDueProjections(a, context);
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		/* say, the extension dropped meanwhile: try again next turn */
		RecoverFromError();
		due = NIL;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(context);
	return due;
}

/*
 * One batch of one projection, with its checkpoint, in a transaction of
 * its own.  An error is logged and rolled back, never fatal to the worker.
 * Returns the events applied; *busy when another transaction (a session's
 * run_projection, a rebuild that woke us before its commit released its
 * locks) held the projection; *more when the batch was full.
 */
static int64
RunOneBatch(DueProjection *d, int limit, MemoryContext context, bool *busy,
			bool *more)
{
	volatile int64 applied = 0;
	volatile bool taken = false;
	volatile bool full = false;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		Projection *p;

		PushActiveSnapshot(GetTransactionSnapshot());
		ConnectSpi();
		p = ReloadProjection(d->id);
		if (p != NULL)
		{
			bool		held;
			bool		exhausted;

			pgstat_report_activity(STATE_RUNNING,
								   psprintf("pg_eventstore: %s projection %s version %d",
											d->rebuilding ? "rebuilding" : "applying",
											p->name, p->version));
			applied = RunProjection(p, limit, false, &held, &exhausted);
			taken = held;
			full = exhausted;
		}
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		RecoverFromError();
		applied = 0;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(context);
	*busy = taken;
	*more = full;
	if (applied > 0)
		CountWorkerEvents(d->id, applied);
	/* what the batch wrote counts for autovacuum and pg_stat_* */
	pgstat_report_stat(false);
	return applied;
}

/*
 * One turn: a batch of every due projection.  Returns true when there is
 * more to do at once; *retry_soon when a rebuild waits for its throttle or
 * a projection was held by another transaction.
 */
static bool
WorkOnce(WorkerAssignment *a, MemoryContext context, bool *retry_soon)
{
	List	   *due = ListDueProjections(a, context);
	ListCell   *lc;
	bool		more = false;

	*retry_soon = false;
	foreach(lc, due)
	{
		DueProjection *d = (DueProjection *) lfirst(lc);
		int			limit = ProjectionBatchSize;
		int64		applied;
		bool		busy;
		bool		full;

		CHECK_FOR_INTERRUPTS();
		if (d->rebuilding && WorkerRebuildThrottle > 0)
		{
			RefillRebuildTokens();
			if (rebuild_tokens < 1)
			{
				*retry_soon = true;
				continue;
			}
			limit = Min(limit, (int) rebuild_tokens);
		}
		applied = RunOneBatch(d, limit, context, &busy, &full);
		if (busy)
			*retry_soon = true;
		if (d->rebuilding && WorkerRebuildThrottle > 0)
			rebuild_tokens -= applied;
		if (full)
			more = true;
	}
	pgstat_report_activity(STATE_IDLE, NULL);
	return more;
}

/* A worker: drives the projections of one database until told to stop. */
void
eventstore_worker_main(Datum arg)
{
	WorkerAssignment a;
	MemoryContext turn_context;
	long		retry_delay = 5;
	uint64		generation;

	memcpy(&a, MyBgworkerEntry->bgw_extra, sizeof(WorkerAssignment));
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(a.database, NULL, 0);
	SetConfigOption("application_name", "pg_eventstore worker",
					PGC_USERSET, PGC_S_SESSION);
	pgstat_report_appname("pg_eventstore worker");
	/* the search_path the API pins, for the worker's own statements too */
	SetConfigOption("search_path", "pg_catalog, pg_temp",
					PGC_USERSET, PGC_S_SESSION);
	PublishWorker(a.slot);
	generation = LauncherGeneration();

	turn_context = AllocSetContextCreate(TopMemoryContext,
										 "pg_eventstore worker turn",
										 ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		bool		more;
		bool		retry_soon;
		long		timeout;

		CHECK_FOR_INTERRUPTS();
		if (LauncherGeneration() != generation)
		{
			ereport(LOG,
					(errmsg("pg_eventstore worker for database \"%s\" exits: its launcher restarted",
							a.database)));
			proc_exit(0);
		}
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		MemoryContextReset(turn_context);
		MemoryContextSwitchTo(turn_context);
		more = WorkOnce(&a, turn_context, &retry_soon);
		if (more)
			continue;
		/*
		 * Soon, but backing off while it lasts (a session's long
		 * run_projection holds its projection): 10 ms, doubling to 1 s.
		 */
		retry_delay = retry_soon ? Min(retry_delay * 2, 1000) : 5;
		timeout = retry_soon ? Min(WorkerPollInterval, retry_delay) : WorkerPollInterval;
		/* nothing to do for a while: flush the statistics held back */
		pgstat_report_stat(true);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
