/*
 * retention/maintenance_log.c
 *		The record of every removal from the log: eventstore.maintenance_log,
 *		one row per call of a maintenance function or per retention run.
 *
 * A row is written when the work starts, so that work spread over several
 * transactions shows as running with its count so far, and finished when it
 * ends.  The caller is connected to SPI and runs as the extension's owner.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "core/kept_plans.h"
#include "retention/retention.h"
#include "utils/builtins.h"

static SPIPlanPtr start_plan;
static SPIPlanPtr finish_plan;

/*
 * Record that `action` starts on `target` (a stream id, a prefix, a time;
 * NULL: none), for `reason` (NULL: none given), at the request of role
 * `performed_by`.  Returns the row's maintenance_id.
 */
int64
StartMaintenance(const char *action, const char *target, const char *reason,
				 const char *performed_by)
{
	Oid			argtypes[4] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	Datum		id;

	values[0] = CStringGetTextDatum(action);
	values[1] = target != NULL ? CStringGetTextDatum(target) : (Datum) 0;
	nulls[1] = target != NULL ? ' ' : 'n';
	values[2] = reason != NULL ? CStringGetTextDatum(reason) : (Datum) 0;
	nulls[2] = reason != NULL ? ' ' : 'n';
	values[3] = CStringGetTextDatum(performed_by);
	ExecKeptPlan(KeptPlan(&start_plan,
						  "INSERT INTO eventstore.maintenance_log"
						  " (action, target, reason, performed_by, started_at)"
						  " VALUES ($1, $2, $3, $4, clock_timestamp())"
						  " RETURNING maintenance_id",
						  4, argtypes),
				 values, nulls, false, 1);
	if (!GetFirstResult(&id))
		elog(ERROR, "maintenance_log insert returned no row");
	return DatumGetInt64(id);
}

/*
 * Record that the work of `maintenance_id` is done: `events` events dealt
 * with, and what else it has to say as a JSON object (NULL: nothing).
 */
void
FinishMaintenance(int64 maintenance_id, int64 events, const char *details_json)
{
	Oid			argtypes[3] = {INT8OID, INT8OID, TEXTOID};
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};

	values[0] = Int64GetDatum(maintenance_id);
	values[1] = Int64GetDatum(events);
	values[2] = details_json != NULL ? CStringGetTextDatum(details_json) : (Datum) 0;
	nulls[2] = details_json != NULL ? ' ' : 'n';
	ExecKeptPlan(KeptPlan(&finish_plan,
						  "UPDATE eventstore.maintenance_log"
						  " SET events = $2, details = $3::jsonb,"
						  "  finished_at = clock_timestamp()"
						  " WHERE maintenance_id = $1",
						  3, argtypes),
				 values, nulls, false, 0);
}
