/*
 * worker/notify.c
 *		Push for outside consumers: a worker sends NOTIFY eventstore_events,
 *		with the database's readable head as payload, when new events become
 *		readable, so that clients LISTEN instead of polling read_all.
 *
 * The readable head is the global_position of the last event, in log
 * order, below the read horizon (the events read_all returns now: see
 * log/read.c); it only moves forward in log order, though its position
 * number may be lower than the one before.  The first worker of a database
 * (rank 0 of WorkerShare) looks once per turn and notifies when the head
 * moved, so at most one notification per turn and database; appends wake
 * it at commit (append_counts.c).  A commit is not readable while an older
 * transaction still runs: the worker then notes that transaction and, while
 * it sleeps, checks every HOLDER_CHECK_INTERVAL ms whether it ended
 * (nobody wakes the worker at the end of a transaction that appended
 * nothing).  A worker that starts, or becomes the first of its database,
 * notifies the head it finds, so none is lost across a restart (a client
 * may receive a head twice).
 *
 * Never from the append path: NOTIFY takes a global lock at commit.  The
 * worker's notifying transaction needs a transaction id (the queue entry
 * carries one) and commits asynchronously: nothing is lost if it is lost.
 */
#include "postgres.h"

#include "access/transam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "core/catalog.h"
#include "core/kept_plans.h"
#include "core/settings.h"
#include "log/log.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "storage/procarray.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"
#include "worker/worker.h"

/* The channel; README: The background worker, Push. */
#define NOTIFY_CHANNEL "eventstore_events"
/* How often a sleeping worker checks whether the horizon's holder ended. */
#define HOLDER_CHECK_INTERVAL 10

/* The last head notified, in log order, while this worker notifies. */
static bool notifying = false;
static bool head_known = false;
static FullTransactionId head_xid;
static int64 head_position;

/* The transaction that holds committed events back; invalid: none. */
static TransactionId holder = InvalidTransactionId;

static SPIPlanPtr held_plan;

/*
 * The readable head through the active snapshot, whose horizon is
 * `horizon`: false when no event is readable.  *held when committed
 * events wait at or above the horizon.  Both queries follow the log-order
 * index (ORDER BY): a plan for any horizon could otherwise scan the whole
 * log for a first event at or above it.
 */
static bool
FindReadableHead(FullTransactionId horizon, FullTransactionId *xid,
				 int64 *position, bool *held)
{
	Oid			argtypes[1] = {XID8OID};
	Datum		values[1] = {FullTransactionIdGetDatum(horizon)};
	LogPlace	head;
	bool		found = LastPlaceBelow(horizon, GetActiveSnapshot(), &head);

	if (found)
	{
		*xid = head.xid;
		*position = head.position;
	}
	ExecKeptPlan(KeptPlan(&held_plan,
						  "SELECT FROM eventstore.events WHERE transaction_id >= $1"
						  " ORDER BY transaction_id LIMIT 1",
						  1, argtypes),
				 values, NULL, true, 1);
	*held = SPI_processed == 1;
	return found;
}

/* Is (xid, position) after the head last notified, in log order? */
static bool
AfterNotifiedHead(FullTransactionId xid, int64 position)
{
	if (!head_known)
		return true;
	if (!FullTransactionIdEquals(xid, head_xid))
		return FullTransactionIdFollows(xid, head_xid);
	return position > head_position;
}

/*
 * In the worker's transaction: note whether committed events are held
 * back, and queue the notification of the readable head if it moved since
 * the last one; true (with the head in *xid, *position) when it did.
 */
static bool
QueueNewHead(FullTransactionId *xid, int64 *position)
{
	Snapshot	snapshot = GetActiveSnapshot();
	bool		held;
	bool		found;
	char		payload[32];

	holder = InvalidTransactionId;
	if (!RegistryExists())
	{
		head_known = false;		/* a new extension's log starts afresh */
		return false;
	}
	pgstat_report_activity(STATE_RUNNING, "pg_eventstore: looking for a new readable head");
	ConnectSpi();
	found = FindReadableHead(LogHorizonOf(snapshot), xid, position, &held);
	SPI_finish();
	if (held)
		holder = snapshot->xmin;
	if (!found || !AfterNotifiedHead(*xid, *position))
		return false;
	snprintf(payload, sizeof(payload), INT64_FORMAT, *position);
	Async_Notify(NOTIFY_CHANNEL, payload);
	/* the notification needs no durable commit */
	(void) set_config_option("synchronous_commit", "off",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
	return true;
}

/*
 * Once per turn: notify the readable head if it moved since the last
 * notification (pg_eventstore.notify on, and this the database's first
 * worker).  An error is logged and rolled back; the next turn tries again.
 */
void
NotifyReadableHead(WorkerAssignment *a)
{
	int			rank;
	int			count;
	volatile bool sent = false;
	struct
	{
		FullTransactionId xid;
		int64		position;
	}			head;

	if (WorkerNotify)
		WorkerShare(a->slot, &rank, &count);
	if (!WorkerNotify || rank != 0)
	{
		/* when it notifies again, it starts with the head it finds */
		notifying = false;
		head_known = false;
		holder = InvalidTransactionId;
		return;
	}
	notifying = true;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		PushActiveSnapshot(GetTransactionSnapshot());
		sent = QueueNewHead(&head.xid, &head.position);
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		RecoverFromError();
		sent = false;
		holder = InvalidTransactionId;
	}
	PG_END_TRY();
	if (sent)
	{
		head_known = true;
		head_xid = head.xid;
		head_position = head.position;
	}
}

/*
 * The worker's sleep, up to `timeout` ms or until its latch is set; while
 * committed events wait behind a running transaction, also until that
 * transaction ends.
 */
void
WaitForWork(long timeout)
{
	TimestampTz start = GetCurrentTimestamp();

	for (;;)
	{
		long		wait = timeout;
		int			rc;

		if (notifying && TransactionIdIsValid(holder))
		{
			long		elapsed = (long) ((GetCurrentTimestamp() - start) / 1000);

			if (elapsed >= timeout)
				return;
			wait = Min(timeout - elapsed, HOLDER_CHECK_INTERVAL);
		}
		rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					   wait, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		if ((rc & WL_LATCH_SET) || wait == timeout)
			return;
		/* the holder ended: the horizon moved past it */
		if (!TransactionIdIsInProgress(holder))
			return;
	}
}
