/*
 * retention/enforce.c
 *		The worker's share of archival and retention: after each turn's
 *		projection batches, one batch of queued archival or of the current
 *		retention pass, in a transaction of its own.
 *
 * Only the first worker of a database (rank 0) does it, and only while it
 * gets the maintenance lock at once (a session's run_maintenance may have
 * it).  Queued archival is looked for every poll_interval, or at once while
 * a batch found more; a retention pass starts retention_interval after the
 * previous one ended; pg_eventstore.maintenance_throttle bounds the events
 * per second both move or remove (a token bucket, as for rebuilds).  A batch holds row locks on the events it moves and,
 * for its few milliseconds, the log's read horizon; appends are never
 * waited for, and never wait.
 */
#include "postgres.h"

#include "access/xact.h"
#include "core/catalog.h"
#include "core/kept_plans.h"
#include "core/role.h"
#include "core/settings.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "retention/archival.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "worker/worker.h"

static TimestampTz next_archival_look = 0;

/* The throttle: events archival and retention may still move now. */
static double tokens = 0;
static TimestampTz tokens_at = 0;
static TimestampTz next_pass = 0;
static RetentionPass *pass = NULL;
static bool reconciled = false;

/* What one maintenance transaction is to do. */
typedef enum MaintenanceStep
{
	STEP_ARCHIVAL,
	STEP_RETENTION
} MaintenanceStep;

/*
 * Top the throttle's bucket up for the time passed (it holds one second's
 * worth), and return how many events the next batch may move: the batch
 * size, or less while pg_eventstore.maintenance_throttle is set.
 */
static int
BatchLimit(void)
{
	TimestampTz now = GetCurrentTimestamp();

	if (MaintenanceThrottle == 0)
		return MaintenanceBatchSize;
	if (tokens_at != 0)
		tokens += (double) (now - tokens_at) / USECS_PER_SEC * MaintenanceThrottle;
	tokens = Min(tokens, (double) MaintenanceThrottle);
	tokens_at = now;
	return (int) Min((double) MaintenanceBatchSize, tokens);
}

/*
 * One batch of at most `limit` events in a transaction of its own; an
 * error is logged and rolled back.  Returns true when there is more of it
 * to do at once; *done gets the events moved or removed.
 */
static bool
RunMaintenanceStep(MaintenanceStep step, int limit, MemoryContext context,
				   int64 *done)
{
	volatile bool more = false;
	volatile int64 moved = 0;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		PushActiveSnapshot(GetTransactionSnapshot());
		if (OidIsValid(OptionalEventstoreRelid("events_archive")) &&
			LockMaintenance(false))
		{
			RoleSwitch	saved;

			ConnectSpi();
			saved = BecomeRole(ExtensionOwner());
			if (!reconciled)
			{
				FinishInterruptedPasses();
				reconciled = true;
			}
			if (step == STEP_ARCHIVAL)
			{
				bool		found;

				pgstat_report_activity(STATE_RUNNING, "pg_eventstore: archiving events");
				moved = RunArchivalBatch(limit, &found);
				more = found;
			}
			else if (pass != NULL || RetentionRulesExist())
			{
				bool		done;

				pgstat_report_activity(STATE_RUNNING, "pg_eventstore: enforcing retention");
				if (pass == NULL)
				{
					pass = MemoryContextAllocZero(TopMemoryContext, sizeof(RetentionPass));
					pass->context = TopMemoryContext;
				}
				moved = RunRetentionBatch(pass, limit, &done);
				more = !done;
			}
			RestoreRole(saved);
			SPI_finish();
		}
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		RecoverFromError();
		more = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(context);
	pgstat_report_stat(false);
	*done = moved;
	if (MaintenanceThrottle > 0)
		tokens -= moved;
	return more;
}

/*
 * The maintenance part of a worker's turn.  Returns true when there is
 * more to do at once.
 */
bool
RunMaintenanceTurn(struct WorkerAssignment *a, MemoryContext context)
{
	TimestampTz now = GetCurrentTimestamp();
	int			rank;
	int			count;
	bool		more = false;

	WorkerShare(a->slot, &rank, &count);
	if (rank != 0)
		return false;

	if (now >= next_archival_look)
	{
		int			limit = BatchLimit();
		int64		moved;

		if (limit < 1)
			return false;		/* throttled: after the next sleep */
		if (RunMaintenanceStep(STEP_ARCHIVAL, limit, context, &moved))
			more = true;
		else
			next_archival_look = TimestampTzPlusMilliseconds(now, WorkerPollInterval);
	}
	if (now >= next_pass)
	{
		int			limit = BatchLimit();
		int64		removed;

		if (limit < 1)
			return false;
		if (RunMaintenanceStep(STEP_RETENTION, limit, context, &removed))
			more = true;
		else
		{
			/* the pass is over (or there are no rules): the next one later */
			if (pass != NULL)
			{
				if (pass->after_stream != NULL)
					pfree(pass->after_stream);
				pfree(pass);
				pass = NULL;
			}
			next_pass = TimestampTzPlusMilliseconds(now, RetentionInterval * 1000L);
		}
	}
	pgstat_report_activity(STATE_IDLE, NULL);
	return more;
}
