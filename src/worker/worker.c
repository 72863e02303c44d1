/*
 * worker/worker.c
 *		A worker: drives one database's async projections, rebuilds and
 *		drains with run_projection's code.
 *
 * Each worker runs one batch of each projection it serves per turn, every
 * batch and its checkpoint in a transaction of their own, so one slow
 * projection delays the others by at most one batch.  A database served by
 * n running workers gives the k-th of them the projections whose
 * projection_id % n == k (WorkerShare).  A replay split in stream-hash
 * partitions (parallel) is listed by every worker: each takes a batch of a
 * partition nobody else runs, worker k starting its search at partition
 * k + turn * n, so that the workers spread over the partitions and, when
 * there are more partitions than workers, rotate through them.  So a
 * parallel => p replay is applied by min(p, n) workers at once; no worker
 * is started for it.
 * An append that touches an async projection (or any append, with
 * pg_eventstore.notify on) sets the workers' latches at commit; otherwise
 * they wake every poll_interval.  Each turn starts with the push of the
 * readable head (notify.c).
 */
#include "postgres.h"

#include "access/xact.h"
#include "core/catalog.h"
#include "core/errors.h"
#include "core/kept_plans.h"
#include "core/settings.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "projections/projections.h"
#include "retention/archival.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "worker/worker.h"

/* Rebuild throttle: events a rebuild may still apply now (token bucket). */
static double rebuild_tokens = 0;
static TimestampTz tokens_at = 0;

/* This worker's share of its database (WorkerShare) and its turns. */
static int share_rank = 0;
static int share_count = 1;
static uint32 turns = 0;

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

/*
 * In a PG_CATCH of the worker: log the error, roll its transaction back
 * and go on, rather than let it turn FATAL.
 */
void
RecoverFromError(void)
{
	HOLD_INTERRUPTS();
	EmitErrorReport();
	AbortOutOfAnyTransaction();
	FlushErrorState();
	RESUME_INTERRUPTS();
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
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, "pg_eventstore: listing projections");
		if (RegistryExists())
		{
			int			rank;
			int			count;

			WorkerShare(a->slot, &rank, &count);
			share_rank = rank;
			share_count = count;
			ConnectSpi();
			due = ReadDueProjections(rank, count, context);
			SPI_finish();
		}
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
			NoteBatchStarts(p->id, ReplayMark(p));
			applied = RunProjection(p, limit, false,
									share_rank + (int) (turns % MAX_REPLAY_PARTITIONS) * share_count,
									&held, &exhausted);
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
	NoteBatchEnded();
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
		/*
		 * Each of the workers that share a split replay keeps to its part
		 * of the throttle.
		 */
		if (d->rebuilding && WorkerRebuildThrottle > 0)
			rebuild_tokens -= (double) applied * Max(Min(d->parallel, share_count), 1);
		if (full)
			more = true;
	}
	/* archival and retention: src/retention/enforce.c */
	if (RunMaintenanceTurn(a, context))
		more = true;
	pgstat_report_activity(STATE_IDLE, NULL);
	turns++;
	return more;
}

/*
 * Fail the projections whose batches ended too many workers at the same
 * checkpoint (in_flight.c), if they are still there.
 */
static void
FailCasualties(MemoryContext context)
{
	List	   *casualties = TakeCasualties();
	ListCell   *lc;

	foreach(lc, casualties)
	{
		WorkerCasualty *c = (WorkerCasualty *) lfirst(lc);

		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PG_TRY();
		{
			PushActiveSnapshot(GetTransactionSnapshot());
			if (RegistryExists())
			{
				Projection *p;

				ConnectSpi();
				p = ReloadProjection(c->projection_id);
				if (p != NULL && ReplayMark(p) == c->position &&
					(p->status == PROJECTION_ACTIVE ||
					 p->status == PROJECTION_REBUILDING))
				{
					ErrorData  *error = palloc0(sizeof(ErrorData));

					error->sqlerrcode = ERRCODE_ES_HANDLER_ENDED_WORKER;
					error->message = psprintf("%d workers applying its batch after position " INT64_FORMAT " ended (a FATAL error, a termination or a crash: see the server log)",
											  c->deaths, c->position);
					RecordProjectionFailure(p, error, -1, NULL);
				}
				SPI_finish();
			}
			PopActiveSnapshot();
			CommitTransactionCommand();
		}
		PG_CATCH();
		{
			RecoverFromError();
		}
		PG_END_TRY();
		MemoryContextSwitchTo(context);
	}
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
	WatchInFlightBatches();
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(a.database, NULL, 0);
	SetConfigOption("application_name", "pg_eventstore worker",
					PGC_USERSET, PGC_S_SESSION);
	pgstat_report_appname("pg_eventstore worker");
	/* the search_path the API pins, for the worker's own statements too */
	SetConfigOption("search_path", API_SEARCH_PATH,
					PGC_USERSET, PGC_S_SESSION);
	PublishWorker(a.slot);
	generation = LauncherGeneration();
	FailCasualties(TopMemoryContext);

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
		NotifyReadableHead(&a);
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
		WaitForWork(timeout);
	}
}
