/*
 * worker/append_counts.c
 *		What a committed append leaves for monitoring and push: the counts of
 *		appends and events each database committed since the server started
 *		(eventstore.metrics' two counters), and, with pg_eventstore.notify
 *		on, the wake-up at commit of the workers, one of which then pushes
 *		the new readable head to LISTENing clients (notify.c).
 *
 * An append counts its events in the backend, per subtransaction level (a
 * savepoint rolled back takes its appends with it); the top transaction's
 * commit adds them to the database's shared counters with two atomic
 * additions.  Nothing is counted for an abort, nor for a prepared
 * transaction (COMMIT PREPARED runs in a backend that knows nothing of its
 * appends).
 */
#include "postgres.h"

#include "access/xact.h"
#include "core/settings.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "worker/worker.h"

PG_FUNCTION_INFO_V1(eventstore_append_counts);

/* Databases counted at once; those beyond (since the start) are not. */
#define MAX_COUNTED_DATABASES 256

typedef struct DatabaseCounts
{
	Oid			database;		/* InvalidOid: entry free */
	pg_atomic_uint64 appends;
	pg_atomic_uint64 events;
} DatabaseCounts;

typedef struct AppendCounts
{
	slock_t		mutex;			/* taking an entry */
	DatabaseCounts databases[MAX_COUNTED_DATABASES];
} AppendCounts;

/* Appends counted in one (sub)transaction, not yet committed. */
typedef struct PendingCounts
{
	int			level;			/* its transaction nesting level */
	int64		appends;
	int64		events;
} PendingCounts;

static AppendCounts *counts = NULL;
static DatabaseCounts *own_entry = NULL;
static shmem_request_hook_type previous_request_hook = NULL;
static shmem_startup_hook_type previous_startup_hook = NULL;

/* By increasing level; the innermost is last. */
static PendingCounts *pending = NULL;
static int	pending_used = 0;
static int	pending_size = 0;
static bool callbacks_registered = false;

/* Ask for the counters' shared memory (shmem_request_hook). */
static void
RequestAppendCounts(void)
{
	if (previous_request_hook)
		previous_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(AppendCounts)));
}

/* Attach to (or create) the counters (shmem_startup_hook). */
static void
AttachAppendCounts(void)
{
	bool		found;

	if (previous_startup_hook)
		previous_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	counts = ShmemInitStruct("pg_eventstore append counts",
							 sizeof(AppendCounts), &found);
	if (!found)
	{
		memset(counts, 0, sizeof(AppendCounts));
		SpinLockInit(&counts->mutex);
		for (int i = 0; i < MAX_COUNTED_DATABASES; i++)
		{
			pg_atomic_init_u64(&counts->databases[i].appends, 0);
			pg_atomic_init_u64(&counts->databases[i].events, 0);
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Install the hooks; called from _PG_init at preload. */
void
InstallAppendCountHooks(void)
{
	previous_request_hook = shmem_request_hook;
	shmem_request_hook = RequestAppendCounts;
	previous_startup_hook = shmem_startup_hook;
	shmem_startup_hook = AttachAppendCounts;
}

/*
 * This database's counters, taking a free entry when `take` and it has
 * none yet; NULL when it has none (or every entry is taken).  A backend
 * serves one database, so it keeps the answer once it has one.
 */
static DatabaseCounts *
DatabaseEntry(bool take)
{
	DatabaseCounts *entry = NULL;

	if (own_entry != NULL || counts == NULL)
		return own_entry;
	SpinLockAcquire(&counts->mutex);
	for (int i = 0; i < MAX_COUNTED_DATABASES && entry == NULL; i++)
		if (counts->databases[i].database == MyDatabaseId)
			entry = &counts->databases[i];
	for (int i = 0; i < MAX_COUNTED_DATABASES && entry == NULL && take; i++)
		if (counts->databases[i].database == InvalidOid)
		{
			entry = &counts->databases[i];
			entry->database = MyDatabaseId;
		}
	SpinLockRelease(&counts->mutex);
	own_entry = entry;
	return entry;
}

/* At the top transaction's end: count its appends if it committed. */
static void
CountAtCommit(XactEvent event, void *arg)
{
	int64		appends = 0;
	int64		events = 0;
	DatabaseCounts *entry;

	if (pending_used == 0)
		return;
	if (event != XACT_EVENT_COMMIT && event != XACT_EVENT_ABORT &&
		event != XACT_EVENT_PREPARE)
		return;
	if (event == XACT_EVENT_COMMIT)
		for (int i = 0; i < pending_used; i++)
		{
			appends += pending[i].appends;
			events += pending[i].events;
		}
	pending_used = 0;
	if (appends == 0 || (entry = DatabaseEntry(true)) == NULL)
		return;
	pg_atomic_fetch_add_u64(&entry->appends, (uint64) appends);
	pg_atomic_fetch_add_u64(&entry->events, (uint64) events);
}

/*
 * At a subtransaction's end: its appends go to its parent when it commits,
 * and with it when it rolls back.
 */
static void
CountAtSubCommit(SubXactEvent event, SubTransactionId subid,
				 SubTransactionId parent, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();
	PendingCounts *innermost;

	if (pending_used == 0 || pending[pending_used - 1].level != level)
		return;
	innermost = &pending[pending_used - 1];
	if (event == SUBXACT_EVENT_ABORT_SUB)
		pending_used--;
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		if (pending_used > 1 && pending[pending_used - 2].level == level - 1)
		{
			pending[pending_used - 2].appends += innermost->appends;
			pending[pending_used - 2].events += innermost->events;
			pending_used--;
		}
		else
			innermost->level = level - 1;
	}
}

/*
 * An append of `events` events (more than none) in the current
 * transaction: count it when the transaction commits, and wake the workers
 * then if they push the readable head.
 */
void
CountAppend(int64 events)
{
	int			level = GetCurrentTransactionNestLevel();

	if (counts == NULL)
		return;					/* not preloaded: nobody reads them */
	if (!callbacks_registered)
	{
		RegisterXactCallback(CountAtCommit, NULL);
		RegisterSubXactCallback(CountAtSubCommit, NULL);
		callbacks_registered = true;
	}
	if (pending_used == 0 || pending[pending_used - 1].level != level)
	{
		if (pending_used == pending_size)
		{
			pending_size = Max(8, pending_size * 2);
			pending = pending == NULL
				? MemoryContextAlloc(TopMemoryContext, pending_size * sizeof(PendingCounts))
				: repalloc(pending, pending_size * sizeof(PendingCounts));
		}
		pending[pending_used].level = level;
		pending[pending_used].appends = 0;
		pending[pending_used].events = 0;
		pending_used++;
	}
	pending[pending_used - 1].appends++;
	pending[pending_used - 1].events += events;
	if (WorkerNotify)
		WakeWorkersAtCommit();
}

/*
 * SQL: append_counts(): the appends and events this database committed
 * since the server started (0 and 0 when it committed none, or when more
 * than MAX_COUNTED_DATABASES databases appended since).
 */
Datum
eventstore_append_counts(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[2] = {Int64GetDatum(0), Int64GetDatum(0)};
	bool		nulls[2] = {false, false};
	DatabaseCounts *entry = DatabaseEntry(false);

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "append_counts must return a row");
	if (entry != NULL)
	{
		values[0] = Int64GetDatum((int64) pg_atomic_read_u64(&entry->appends));
		values[1] = Int64GetDatum((int64) pg_atomic_read_u64(&entry->events));
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc),
													  values, nulls)));
}
