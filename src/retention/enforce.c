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
 * previous one ended.  A batch holds row locks on the events it moves and,
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
 * One batch in a transaction of its own; an error is logged and rolled
 * back.  Returns true when there is more of it to do at once.
 */
static bool
RunMaintenanceStep(MaintenanceStep step, MemoryContext context)
{
	volatile bool more = false;

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
				(void) RunArchivalBatch(MaintenanceBatchSize, &found);
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
				(void) RunRetentionBatch(pass, MaintenanceBatchSize, &done);
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
		if (RunMaintenanceStep(STEP_ARCHIVAL, context))
			more = true;
		else
			next_archival_look = TimestampTzPlusMilliseconds(now, WorkerPollInterval);
	}
	if (now >= next_pass)
	{
		if (RunMaintenanceStep(STEP_RETENTION, context))
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
