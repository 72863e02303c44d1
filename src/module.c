/*
 * module.c
 *		Module entry point of pg_eventstore: its settings, shared memory and
 *		the launcher of its background workers.
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "pg_eventstore.h"
#include "postmaster/bgworker.h"
#include "utils/guc.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/* Define the settings; each says whether a reload applies it. */
static void
DefineSettings(void)
{
	DefineCustomStringVariable("pg_eventstore.databases",
							   "Comma-separated databases whose projections the workers drive.",
							   "A reload applies it: workers start for added databases and stop for removed ones.",
							   &WorkerDatabases,
							   "postgres",
							   PGC_SIGHUP, GUC_LIST_INPUT,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("pg_eventstore.max_workers",
							"Upper bound on projection workers at once, over all databases.",
							"Each served database gets at least one; the rest are spread evenly.  A reload applies it; each worker also needs a max_worker_processes slot.",
							&WorkerMaxWorkers,
							2, 1, ES_MAX_WORKERS,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pg_eventstore.batch_size",
							"Events a projection applies per batch.",
							"Each batch and the checkpoint after it commit together.  Sessions may set it for run_projection; a reload applies it to the workers.",
							&ProjectionBatchSize,
							1000, 1, 1000000,
							PGC_USERSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pg_eventstore.poll_interval",
							"How long an idle worker sleeps before looking for work.",
							"Appends wake the workers at commit anyway.  A reload applies it.",
							&WorkerPollInterval,
							1000, 10, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pg_eventstore.rebuild_throttle",
							"Most events per second a worker's rebuilds apply; 0 is unlimited.",
							"A reload applies it.",
							&WorkerRebuildThrottle,
							0, 0, INT_MAX,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pg_eventstore.retry_interval",
							"How long the launcher waits before restarting a worker that stopped.",
							"A worker stops when its database does not exist, or when it crashed.  A reload applies it.",
							&WorkerRetryInterval,
							10000, 100, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	MarkGUCPrefixReserved("pg_eventstore");
}

/* Register the launcher, which keeps the per-database workers running. */
static void
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

/*
 * The library must be preloaded: its workers, shared memory and the
 * wake-up at commit are set up when the server starts.
 */
void
_PG_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_eventstore can only be loaded via shared_preload_libraries"),
				 errhint("Add pg_eventstore to shared_preload_libraries in postgresql.conf and restart the server.")));
	DefineSettings();
	if (IsBinaryUpgrade)
		return;
	InstallWorkerShmemHooks();
	RegisterLauncher();
}
