/*
 * log/append_only.c
 *		The trigger that keeps the event log append-only for every role: only
 *		the maintenance functions of retention/ get past it.
 */
#include "postgres.h"

#include "commands/trigger.h"
#include "core/errors.h"
#include "fmgr.h"
#include "retention/retention.h"
#include "utils/rel.h"

PG_FUNCTION_INFO_V1(eventstore_refuse_log_change);

/*
 * Statement trigger on UPDATE, DELETE and TRUNCATE of eventstore.events and
 * eventstore.events_archive.
 */
Datum
eventstore_refuse_log_change(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	const char *operation;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "refuse_log_change must be called as a trigger");

	/*
	 * Only a maintenance function's own statements pass (log_guard.c).  A
	 * statement trigger returns a null pointer, not SQL NULL, which the
	 * executor refuses from any trigger.
	 */
	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
	{
		if (LogChangeAllowed(LOG_CHANGE_UPDATE))
			return PointerGetDatum(NULL);
		operation = "UPDATE";
	}
	else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
	{
		if (LogChangeAllowed(LOG_CHANGE_DELETE))
			return PointerGetDatum(NULL);
		operation = "DELETE";
	}
	else
		operation = "TRUNCATE";

	ereport(ERROR,
			(errcode(ERRCODE_ES_APPEND_ONLY),
			 errmsg("the event log is append-only: %s of eventstore.%s is not allowed",
					operation, RelationGetRelationName(trigdata->tg_relation)),
			 errdetail("Stored events are facts; they are never changed or removed in place."),
			 errhint("Append a compensating event to the stream instead; events are removed or erased only by eventstore.delete_stream, eventstore.redact_events, eventstore.archive_events and retention (eventstore.set_retention).")));
	PG_RETURN_NULL();
}
