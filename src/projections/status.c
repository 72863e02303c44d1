/*
 * projections/status.c
 *		What the monitoring views show of the log's backlogs, for the roles
 *		that may read them: projection_status (a projection's lag and
 *		rebuild progress), processors (a processor's lag) and metrics.
 *
 * A view calls its functions as the role that reads it, and the work reads
 * the log, which the reader may not: so each function here lets in whoever
 * may SELECT from its view and runs the work (an SQL function never
 * JIT-compiled: projection_progress_of, processor_progress_of,
 * metrics_of) as the extension's owner.  Nobody else learns a lag from
 * them.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "core/catalog.h"
#include "core/kept_plans.h"
#include "core/role.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"

PG_FUNCTION_INFO_V1(eventstore_projection_progress);
PG_FUNCTION_INFO_V1(eventstore_processor_progress);
PG_FUNCTION_INFO_V1(eventstore_metrics_rows);

static SPIPlanPtr projection_plan;
static SPIPlanPtr processor_plan;
static SPIPlanPtr metrics_plan;

/* 42501 unless the current role may SELECT from eventstore.<view>. */
static void
RequireViewReader(const char *view, const char *function)
{
	if (pg_class_aclcheck(EventstoreRelid(view), GetUserId(),
						  ACL_SELECT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for view %s", view),
				 errdetail("eventstore.%s shows what eventstore.%s shows, to the roles that may read it.",
						   function, view),
				 errhint("Ask the extension's owner to GRANT SELECT ON eventstore.%s to the role.",
						 view)));
}

/*
 * The one row of a kept query run as the extension's owner, for a reader
 * of `view`; NULL when there is none.
 */
static Datum
RowAsOwner(FunctionCallInfo fcinfo, const char *view, const char *function,
		   SPIPlanPtr *plan, const char *sql, int nargs, const Oid *argtypes)
{
	Datum		values[2];
	TupleDesc	desc;
	RoleSwitch	caller;
	Datum		result = (Datum) 0;

	Assert(nargs <= (int) lengthof(values));
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "%s must return a row", function);
	RequireViewReader(view, function);
	for (int i = 0; i < nargs; i++)
		values[i] = PG_GETARG_DATUM(i);
	ConnectSpi();
	caller = BecomeRole(ExtensionOwner());
	ExecKeptPlan(KeptPlan(plan, sql, nargs, argtypes), values, NULL, true, 1);
	if (SPI_processed == 1)
		result = PointerGetDatum(SPI_returntuple(SPI_tuptable->vals[0], desc));
	RestoreRole(caller);
	SPI_finish();
	if (result == (Datum) 0)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(result);
}

/* projection_progress(projection_id): the row, NULL when there is none. */
Datum
eventstore_projection_progress(PG_FUNCTION_ARGS)
{
	static const Oid argtypes[1] = {INT4OID};

	return RowAsOwner(fcinfo, "projection_status", "projection_progress",
					  &projection_plan,
					  "SELECT * FROM eventstore.projection_progress_of($1)",
					  1, argtypes);
}

/*
 * processor_progress(processor_id, partition), STRICT: the row, NULL when
 * there is no such checkpoint row.
 */
Datum
eventstore_processor_progress(PG_FUNCTION_ARGS)
{
	static const Oid argtypes[2] = {TEXTOID, TEXTOID};

	return RowAsOwner(fcinfo, "processors", "processor_progress",
					  &processor_plan,
					  "SELECT * FROM eventstore.processor_progress_of($1, $2)",
					  2, argtypes);
}

/* metrics_rows(): the rows of eventstore.metrics, for its readers. */
Datum
eventstore_metrics_rows(PG_FUNCTION_ARGS)
{
	RoleSwitch	caller;

	RequireViewReader("metrics", "metrics_rows");
	InitMaterializedSRF(fcinfo, 0);
	ConnectSpi();
	caller = BecomeRole(ExtensionOwner());
	ExecKeptPlanIntoSRF(fcinfo,
						KeptPlan(&metrics_plan,
								 "SELECT * FROM eventstore.metrics_of()",
								 0, NULL),
						NULL, NULL, 0);
	RestoreRole(caller);
	SPI_finish();
	return (Datum) 0;
}
