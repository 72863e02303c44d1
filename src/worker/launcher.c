/*
 * worker/launcher.c
 *		The launcher: started by the postmaster, it keeps one or more workers
 *		running per database named in pg_eventstore.databases, spreading
 *		pg_eventstore.max_workers over them, restarting stopped ones after
 *		retry_interval and following reloads.
 */
#include "postgres.h"

#include "core/settings.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"
#include "worker/worker.h"

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
	/* the setting's check hook refuses anything else: serve nothing */
	if (!SplitGUCList(copy, ',', &names))
	{
		if (warn)
			ereport(WARNING,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("pg_eventstore.databases is not a valid list of database names")));
		return 0;
	}
	ndb = list_length(names);
	if (ndb > WorkerMaxWorkers && warn)
		ereport(WARNING,
				(errmsg("pg_eventstore.databases names %d databases but pg_eventstore.max_workers is %d",
						ndb, WorkerMaxWorkers),
				 errdetail("Only the first %d databases are served.", WorkerMaxWorkers),
				 errhint("Raise pg_eventstore.max_workers (and max_worker_processes).")));
	/*
	 * Member 0 of every database first, then member 1 of each, and so on:
	 * ReconcileWorkers starts them in this order, so when max_worker_processes
	 * runs short every served database has a worker before any has two.
	 */
	for (int m = 0; m < WorkerMaxWorkers && used < WorkerMaxWorkers; m++)
	{
		for (int d = 0; d < ndb && d < WorkerMaxWorkers; d++)
		{
			int			members = Max(WorkerMaxWorkers / ndb +
									  (d < WorkerMaxWorkers % ndb ? 1 : 0), 1);
			WorkerAssignment *a;

			if (m >= members)
				continue;
			a = &wanted[used];
			memset(a, 0, sizeof(WorkerAssignment));
			strlcpy(a->database, list_nth(names, d), NAMEDATALEN);
			a->slot = used;
			a->member = m;
			a->members = members;
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

/* Register the launcher, which keeps the per-database workers running. */
void
RegisterLauncher(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 1;
	strlcpy(worker.bgw_library_name, "pg_eventstore", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "eventstore_launcher_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "pg_eventstore launcher", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "pg_eventstore launcher", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

