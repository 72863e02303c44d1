/*
 * retention/log_guard.c
 *		The permission that lets a maintenance function, and nothing else,
 *		past the append-only trigger of eventstore.events.
 *
 * The permission is backend-local and set only from C: SQL cannot grant it
 * to itself, whatever the role.  A maintenance function allows exactly the
 * change it makes around the statements that make it:
 *
 *		previous = AllowLogChange(LOG_CHANGE_DELETE);
 *		PG_TRY(); { ...DELETE... } PG_FINALLY(); { RestoreLogChange(previous); }
 *
 * and the end of the transaction takes it back in any case, so an error
 * that escapes before RestoreLogChange cannot leave the log open.
 */
#include "postgres.h"

#include "access/xact.h"
#include "retention/retention.h"

static LogChange allowed_changes = LOG_CHANGE_NONE;
static bool callback_registered = false;

static void
LogGuardXactCallback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_COMMIT ||
		event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PREPARE)
		allowed_changes = LOG_CHANGE_NONE;
}

/* Allow `changes` until RestoreLogChange; returns what was allowed before. */
LogChange
AllowLogChange(LogChange changes)
{
	LogChange	previous = allowed_changes;

	if (!callback_registered)
	{
		RegisterXactCallback(LogGuardXactCallback, NULL);
		callback_registered = true;
	}
	allowed_changes = previous | changes;
	return previous;
}

void
RestoreLogChange(LogChange previous)
{
	allowed_changes = previous;
}

/* Whether the append-only trigger lets `change` through now. */
bool
LogChangeAllowed(LogChange change)
{
	return (allowed_changes & change) == change && change != LOG_CHANGE_NONE;
}
