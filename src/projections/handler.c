/*
 * projections/handler.c
 *		Running a projection owner's code: its handler on events, and its
 *		on_reset SQL.
 *
 * Handlers are called through the function manager with a call prepared
 * once per projection, never through SQL text.  They run with the user id
 * of the role that created the projection, in a security-restricted
 * operation (as maintenance commands run a table owner's code): no SET
 * ROLE, no temporary objects left behind in the caller's session, and
 * nothing they SET outlives the call.
 */
#include "postgres.h"

#include "core/role.h"
#include "executor/spi.h"
#include "projections/projections.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

/* Does the projection's handler function still exist? */
bool
HandlerExists(Projection *p)
{
	return SearchSysCacheExists1(PROCOID, ObjectIdGetDatum(p->handler));
}

/* The projection's prepared handler call, set up on first use. */
static FmgrInfo *
HandlerCall(Projection *p)
{
	if (p->call == NULL)
	{
		MemoryContext context = GetMemoryChunkContext(p);
		FmgrInfo   *call = MemoryContextAlloc(context, sizeof(FmgrInfo));

		if (!HandlerExists(p))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_FUNCTION),
					 errmsg("the handler of projection \"%s\" version %d no longer exists",
							p->name, p->version),
					 errhint("Create the projection again with an existing handler, or drop it.")));
		fmgr_info_cxt(p->handler, call, context);
		p->call = call;			/* only once it is complete */
	}
	return p->call;
}

/* Call a function of one argument returning void (NULL or not). */
static void
CallVoid(FmgrInfo *call, Datum arg)
{
	LOCAL_FCINFO(fcinfo, 1);

	InitFunctionCallInfoData(*fcinfo, call, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = arg;
	fcinfo->args[0].isnull = false;
	(void) FunctionCallInvoke(fcinfo);
}

/*
 * Call the handler on rows[first .. first + count), as the projection's
 * owner: once per event, or once with them all for a batch handler.
 */
void
CallHandler(Projection *p, EventRows *rows, int first, int count)
{
	FmgrInfo   *call = HandlerCall(p);
	RoleSwitch	saved = EnterOwnerCode(p->owner);

	if (p->batch_handler)
		CallVoid(call, EventRowsArray(rows, first, count));
	else
	{
		for (int i = first; i < first + count; i++)
			CallVoid(call, EventRowsDatum(rows, i));
	}
	RestoreRole(saved);
}

/*
 * Run the projection's on_reset SQL as its owner, in a security-restricted
 * operation like its handler.  The caller is connected to SPI.
 */
void
RunOnReset(Projection *p)
{
	RoleSwitch	saved;
	int			rc;

	if (p->on_reset == NULL)
		return;
	saved = EnterOwnerCode(p->owner);
	rc = SPI_execute(p->on_reset, false, 0);
	if (rc < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("on_reset of projection \"%s\" failed: %s",
						p->name, SPI_result_code_string(rc)),
				 errhint("on_reset is SQL such as TRUNCATE my_schema.my_table, without transaction control.")));
	RestoreRole(saved);
}
