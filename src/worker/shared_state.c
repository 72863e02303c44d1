/*
 * worker/shared_state.c
 *		The workers' shared state: which worker serves which database, the
 *		latch an append sets at commit to wake it, and each projection's
 *		throughput over the last minute.
 */
#include "postgres.h"

#include "access/xact.h"
#include "core/settings.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "worker/worker.h"

PG_FUNCTION_INFO_V1(eventstore_worker_activity);

/* The projections whose throughput is kept, across all databases. */
#define MAX_TRACKED_PROJECTIONS 1024
/* Throughput is kept in this many one-second buckets... */
#define RATE_SECONDS 60
/* ...and shown over the last this many of them (or fewer, since it began). */
#define RATE_WINDOW_SECONDS 10

/* A worker serving a database. */
typedef struct WorkerSlot
{
	Oid			database;
	pid_t		pid;			/* 0: slot free */
	Latch	   *latch;
} WorkerSlot;

/* Events one worker applied to one projection, per second. */
typedef struct ProjectionRate
{
	Oid			database;		/* InvalidOid: entry free */
	int32		projection_id;
	pid_t		pid;			/* the worker that applied them */
	int64		second[RATE_SECONDS];	/* events in second s % RATE_SECONDS */
	int64		latest;			/* the last second with events counted */
	int64		since;			/* the first second of this run of activity */
} ProjectionRate;

typedef struct WorkerShared
{
	LWLock	   *lock;
	uint64		launcher_generation;	/* bumped by each launcher start */
	WorkerSlot	workers[ES_MAX_WORKERS];
	ProjectionRate rates[MAX_TRACKED_PROJECTIONS];
} WorkerShared;

static WorkerShared *shared = NULL;
static shmem_request_hook_type previous_request_hook = NULL;
static shmem_startup_hook_type previous_startup_hook = NULL;

/* This backend's pending wake-up, done when its transaction commits. */
static bool wake_at_commit = false;
static bool wake_callback_registered = false;

/* Ask for the shared memory and the lock (shmem_request_hook). */
static void
RequestWorkerShmem(void)
{
	if (previous_request_hook)
		previous_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(WorkerShared)));
	RequestNamedLWLockTranche("pg_eventstore", 1);
}

/* Attach to (or create) the shared state (shmem_startup_hook). */
static void
AttachWorkerShmem(void)
{
	bool		found;

	if (previous_startup_hook)
		previous_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("pg_eventstore", sizeof(WorkerShared), &found);
	if (!found)
	{
		memset(shared, 0, sizeof(WorkerShared));
		shared->lock = &(GetNamedLWLockTranche("pg_eventstore"))->lock;
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Install the hooks; called from _PG_init at preload. */
void
InstallWorkerShmemHooks(void)
{
	previous_request_hook = shmem_request_hook;
	shmem_request_hook = RequestWorkerShmem;
	previous_startup_hook = shmem_startup_hook;
	shmem_startup_hook = AttachWorkerShmem;
}

/* Forget this worker's slot when it exits. */
static void
ReleaseWorkerSlot(int code, Datum arg)
{
	WorkerSlot *slot = &shared->workers[DatumGetInt32(arg)];

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	if (slot->pid == MyProcPid)
	{
		slot->pid = 0;
		slot->latch = NULL;
		slot->database = InvalidOid;
	}
	LWLockRelease(shared->lock);
}

/* Publish this worker (slot `index`) and its latch for MyDatabaseId. */
void
PublishWorker(int index)
{
	WorkerSlot *slot = &shared->workers[index];

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	slot->database = MyDatabaseId;
	slot->pid = MyProcPid;
	slot->latch = MyLatch;
	LWLockRelease(shared->lock);
	on_shmem_exit(ReleaseWorkerSlot, Int32GetDatum(index));
}

/*
 * This worker's share of its database's projections: it serves those whose
 * projection_id % *count == *rank, where *count is the number of workers
 * serving the database now and *rank this one's place among them (in slot
 * order, which is the launcher's member order).  Worked out afresh each
 * turn, so the projections of a worker that could not start (too few
 * max_worker_processes) or is restarting are served by the others; two
 * workers that briefly see different shares are kept apart by each
 * projection's runner lock.
 */
void
WorkerShare(int slot, int *rank, int *count)
{
	*rank = 0;
	*count = 0;
	LWLockAcquire(shared->lock, LW_SHARED);
	for (int i = 0; i < ES_MAX_WORKERS; i++)
	{
		if (shared->workers[i].pid == 0 ||
			shared->workers[i].database != MyDatabaseId)
			continue;
		if (i < slot)
			(*rank)++;
		(*count)++;
	}
	LWLockRelease(shared->lock);
	/* our own slot is published before the first turn */
	Assert(*count > 0);
}

/*
 * A launcher starting (again, after its own crash or SIGTERM) takes a new
 * generation and wakes every worker: those of the previous launcher see
 * they are orphans and exit, and the new launcher starts their successors.
 */
void
StartLauncherGeneration(void)
{
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	shared->launcher_generation++;
	for (int i = 0; i < ES_MAX_WORKERS; i++)
		if (shared->workers[i].pid != 0)
			SetLatch(shared->workers[i].latch);
	LWLockRelease(shared->lock);
}

/* The current launcher's generation. */
uint64
LauncherGeneration(void)
{
	uint64		generation;

	LWLockAcquire(shared->lock, LW_SHARED);
	generation = shared->launcher_generation;
	LWLockRelease(shared->lock);
	return generation;
}

/* Set the latch of every worker serving this database. */
static void
WakeWorkers(void)
{
	if (shared == NULL)
		return;
	LWLockAcquire(shared->lock, LW_SHARED);
	for (int i = 0; i < ES_MAX_WORKERS; i++)
		if (shared->workers[i].pid != 0 &&
			shared->workers[i].database == MyDatabaseId)
			SetLatch(shared->workers[i].latch);
	LWLockRelease(shared->lock);
}

/* At commit, wake the workers; an abort has nothing for them. */
static void
WakeAtCommit(XactEvent event, void *arg)
{
	if (!wake_at_commit)
		return;
	if (event == XACT_EVENT_COMMIT)
	{
		wake_at_commit = false;
		WakeWorkers();
	}
	else if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PREPARE)
		wake_at_commit = false;
}

/*
 * Wake this database's workers when the current transaction commits: it
 * appended events an async projection takes, or changed the registry.
 * Nothing to do when the library was not preloaded (no workers).
 */
void
WakeWorkersAtCommit(void)
{
	if (shared == NULL)
		return;
	if (!wake_callback_registered)
	{
		RegisterXactCallback(WakeAtCommit, NULL);
		wake_callback_registered = true;
	}
	wake_at_commit = true;
}

/* The tracked entry of a projection, claiming a free one if needed. */
static ProjectionRate *
RateEntry(int32 projection_id, int64 now)
{
	ProjectionRate *free_entry = NULL;

	for (int i = 0; i < MAX_TRACKED_PROJECTIONS; i++)
	{
		ProjectionRate *r = &shared->rates[i];

		if (r->database == MyDatabaseId && r->projection_id == projection_id)
			return r;
		/* free, or idle for a minute: nothing of it would show */
		if (free_entry == NULL &&
			(r->database == InvalidOid || r->latest <= now - RATE_SECONDS))
			free_entry = r;
	}
	if (free_entry != NULL)
	{
		memset(free_entry, 0, sizeof(ProjectionRate));
		free_entry->database = MyDatabaseId;
		free_entry->projection_id = projection_id;
		free_entry->since = now;
	}
	return free_entry;
}

/* Count `events` a worker just applied to the projection. */
void
CountWorkerEvents(int32 projection_id, int64 events)
{
	int64		now = GetCurrentTimestamp() / USECS_PER_SEC;
	ProjectionRate *r;

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	r = RateEntry(projection_id, now);
	if (r != NULL)
	{
		/* clear the buckets of the seconds that passed without events */
		for (int64 s = Max(r->latest + 1, now - RATE_SECONDS + 1); s <= now; s++)
			r->second[s % RATE_SECONDS] = 0;
		/* idle for a whole window: the rate starts again from now */
		if (r->latest <= now - RATE_WINDOW_SECONDS)
			r->since = now;
		r->latest = Max(r->latest, now);
		r->second[now % RATE_SECONDS] += events;
		r->pid = MyProcPid;
	}
	LWLockRelease(shared->lock);
}

/*
 * SQL: worker_activity(): per projection of this database that a worker
 * drove in the last minute, the worker's pid and the events per second it
 * applied over the last RATE_WINDOW_SECONDS seconds, or over the seconds
 * since it began applying when that is less (so a projection busy for 3 s
 * shows its rate, not a tenth of it); 0 once it has been idle that long.
 */
Datum
eventstore_worker_activity(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int64		now = GetCurrentTimestamp() / USECS_PER_SEC;

	InitMaterializedSRF(fcinfo, 0);
	if (shared == NULL)
		return (Datum) 0;
	LWLockAcquire(shared->lock, LW_SHARED);
	for (int i = 0; i < MAX_TRACKED_PROJECTIONS; i++)
	{
		ProjectionRate *r = &shared->rates[i];
		Datum		values[3];
		bool		nulls[3] = {false, false, false};
		int64		first = Max(now - RATE_WINDOW_SECONDS + 1, r->since);
		int64		total = 0;

		if (r->database != MyDatabaseId || r->latest <= now - RATE_SECONDS)
			continue;
		for (int64 s = first; s <= Min(now, r->latest); s++)
			total += r->second[s % RATE_SECONDS];
		values[0] = Int32GetDatum(r->projection_id);
		values[1] = Int32GetDatum(r->pid);
		/* the current second counts as a whole one: a slight underestimate */
		values[2] = Float8GetDatum((double) total / (now - first + 1));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	LWLockRelease(shared->lock);
	return (Datum) 0;
}
