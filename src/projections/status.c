/*
 * projections/status.c
 *		What projection_status shows of a projection's lag and rebuild
 *		progress, for the roles that may read the view.
 *
 * The view calls eventstore.projection_progress for each projection as its
 * reader (a view runs its functions as the role that reads it), and the
 * work reads the log, which the reader may not: so the function lets in
 * whoever may SELECT from projection_status and runs the work,
 * eventstore.projection_progress_of (SQL, never JIT-compiled), as the
 * extension's owner.  Nobody else learns a projection's lag from it.
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

static SPIPlanPtr progress_plan;

/* projection_progress(projection_id): the row, NULL when there is none. */
Datum
eventstore_projection_progress(PG_FUNCTION_ARGS)
{
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1] = {PG_GETARG_DATUM(0)};
	TupleDesc	desc;
	RoleSwitch	caller;
	Datum		result = (Datum) 0;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "projection_progress must return a row");
	if (pg_class_aclcheck(EventstoreRelid("projection_status"), GetUserId(),
						  ACL_SELECT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for view projection_status"),
				 errdetail("eventstore.projection_progress shows what eventstore.projection_status shows, to the roles that may read it."),
				 errhint("Ask the extension's owner to GRANT SELECT ON eventstore.projection_status to the role.")));
	ConnectSpi();
	caller = BecomeRole(ExtensionOwner());
	ExecKeptPlan(KeptPlan(&progress_plan,
						  "SELECT * FROM eventstore.projection_progress_of($1)",
						  1, argtypes),
				 values, NULL, true, 1);
	if (SPI_processed == 1)
		result = PointerGetDatum(SPI_returntuple(SPI_tuptable->vals[0], desc));
	RestoreRole(caller);
	SPI_finish();
	if (result == (Datum) 0)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(result);
}
