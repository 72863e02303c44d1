/*
 * module.c
 *		Module entry point of pg_eventstore: its settings, shared memory and
 *		the launcher of its background workers (src/worker).
 */
#include "postgres.h"

#include <limits.h>

#include "core/settings.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "projections/projections.h"
#include "retention/archival.h"
#include "core/kept_plans.h"
#include "utility_hook.h"
#include "utils/guc.h"
#include "utils/varlena.h"
#include "worker/worker.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/* The settings' variables, with their defaults. */
char	   *WorkerDatabases = NULL;
int			WorkerMaxWorkers = 2;
int			ProjectionBatchSize = 1000;
int			WorkerPollInterval = 1000;
int			WorkerRebuildThrottle = 0;
int			WorkerRetryInterval = 10000;
int			UnregisteredTypes = UNREGISTERED_ALLOW;
bool		WorkerNotify = true;

static const struct config_enum_entry unregistered_types_options[] = {
	{"allow", UNREGISTERED_ALLOW, false},
	{"warn", UNREGISTERED_WARN, false},
	{"refuse", UNREGISTERED_REFUSE, false},
	{NULL, 0, false}
};

/* Refuse a pg_eventstore.databases that is not a list of names. */
static bool
CheckDatabases(char **newval, void **extra, GucSource source)
{
	char	   *copy = pstrdup(*newval ? *newval : "");
	List	   *names = NIL;
	bool		ok = SplitGUCList(copy, ',', &names);

	list_free(names);
	pfree(copy);
	if (!ok)
	{
		GUC_check_errdetail("The value is not a comma-separated list of database names.");
		GUC_check_errhint("Separate the names with commas, for example 'app, reports'; quote a name with double quotes.");
	}
	return ok;
}

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
							   CheckDatabases, NULL, NULL);
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
	DefineCustomEnumVariable("pg_eventstore.unregistered_types",
							 "What an append does with an event of a type that has no registered schema: allow, warn or refuse.",
							 "Superusers (and roles granted SET on it) may SET it; ALTER DATABASE or ALTER ROLE ... SET and a reload apply it to new sessions.",
							 &UnregisteredTypes,
							 UNREGISTERED_ALLOW, unregistered_types_options,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);
	DefineCustomBoolVariable("pg_eventstore.notify",
							 "Whether a worker sends NOTIFY eventstore_events with the readable head when new events become readable.",
							 "On, every append wakes the workers at commit.  A reload applies it.",
							 &WorkerNotify,
							 true,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
	DefineMaintenanceSettings();
	MarkGUCPrefixReserved("pg_eventstore");
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
	InstallUtilityHook();
	InstallOwnerGuard();
	InstallKeptPlanHooks();
	if (IsBinaryUpgrade)
		return;
	InstallWorkerShmemHooks();
	InstallAppendCountHooks();
	RegisterLauncher();
}
