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
 * nothing they SET outlives the call.  They run with the settings captured
 * from the creator's session (owner_settings.c), whoever drives them.
 * Unless the projection was created with upcast => false, they receive
 * events upcast to their type's latest schema version (UpcastRows).
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_proc.h"
#include "consumers/consumers.h"
#include "core/catalog.h"
#include "core/role.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/inval.h"
#include "projections/projections.h"
#include "schemas/schemas.h"
#include "storage/lockdefs.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

/*
 * What keeps the projection's code from running now, as the error to fail
 * it with: its handler function or its owner role missing (dropped, or not
 * restored with the registry, which names them), a function of the
 * handler's name owned by another role than at creation, an owner no longer
 * allowed to execute the handler, or a handler given a search_path of its
 * own that does not end with pg_temp since; NULL when none.
 */
/*
 * Bumped by every syscache invalidation of what MissingOwnerCode reads:
 * pg_proc (the handler's row: owner, ACL, SET clauses), pg_authid (roles,
 * their names and superuser flags), pg_auth_members (memberships, through
 * which EXECUTE may be held) and pg_database (the database's owner, a
 * member of pg_database_owner).  The syscaches and acl.c's cache of
 * memberships answer from the same invalidations; so a check found passing
 * while this stays the same passes again, and is not repeated: the answer
 * is the one a lookup would give at each application.
 */
static uint64 owner_code_changed = 1;

static void
NoteOwnerCodeChanged(Datum arg, int cacheid, uint32 hashvalue)
{
	owner_code_changed++;
}

ErrorData *
MissingOwnerCode(Projection *p)
{
	static bool callbacks_registered = false;
	uint64		checking_at;
	ErrorData  *error;
	HeapTuple	proc;
	char	   *proc_owner = NULL;
	char	   *unsafe_path = NULL;

	if (!callbacks_registered)
	{
		CacheRegisterSyscacheCallback(PROCOID, NoteOwnerCodeChanged, (Datum) 0);
		CacheRegisterSyscacheCallback(AUTHOID, NoteOwnerCodeChanged, (Datum) 0);
		CacheRegisterSyscacheCallback(AUTHMEMROLEMEM, NoteOwnerCodeChanged, (Datum) 0);
		CacheRegisterSyscacheCallback(AUTHMEMMEMROLE, NoteOwnerCodeChanged, (Datum) 0);
		CacheRegisterSyscacheCallback(DATABASEOID, NoteOwnerCodeChanged, (Datum) 0);
		callbacks_registered = true;
	}
	if (p->owner_code_passed_at == owner_code_changed)
		return NULL;
	/* an invalidation during the lookups makes the next call check again */
	checking_at = owner_code_changed;
	error = palloc0(sizeof(ErrorData));
	proc = OidIsValid(p->handler)
		? SearchSysCache1(PROCOID, ObjectIdGetDatum(p->handler)) : NULL;
	if (HeapTupleIsValid(proc))
	{
		proc_owner = GetUserNameFromId(((Form_pg_proc) GETSTRUCT(proc))->proowner,
									   false);
		unsafe_path = UnsafeSearchPathOf(proc);
		ReleaseSysCache(proc);
	}
	if (proc_owner == NULL)
	{
		error->sqlerrcode = ERRCODE_UNDEFINED_FUNCTION;
		error->message = psprintf("the handler %s of projection \"%s\" version %d does not exist",
								  p->handler_name, p->name, p->version);
	}
	else if (!OidIsValid(p->owner) ||
			 !SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(p->owner)))
	{
		error->sqlerrcode = ERRCODE_UNDEFINED_OBJECT;
		error->message = psprintf("the owner role \"%s\" of projection \"%s\" version %d does not exist",
								  p->owner_name, p->name, p->version);
	}

	/*
	 * A function found by its name is the one the projection was created
	 * with only if the same role owns it: another role that could create a
	 * function of that name once the first was dropped (or not restored)
	 * must not get its code run as the projection's owner.
	 */
	else if (p->handler_owner != NULL && strcmp(proc_owner, p->handler_owner) != 0)
	{
		error->sqlerrcode = ERRCODE_INSUFFICIENT_PRIVILEGE;
		error->message = psprintf("the handler %s of projection \"%s\" version %d is owned by role \"%s\", not by \"%s\" as when the projection was created",
								  p->handler_name, p->name, p->version,
								  proc_owner, p->handler_owner);
	}
	/* a revoked EXECUTE counts from the next application on */
	else if (!RoleMayExecute(p->owner, p->handler))
	{
		error->sqlerrcode = ERRCODE_INSUFFICIENT_PRIVILEGE;
		error->message = psprintf("the owner role \"%s\" of projection \"%s\" version %d may not execute its handler %s",
								  p->owner_name, p->name, p->version,
								  p->handler_name);
	}
	else if (unsafe_path != NULL)
	{
		error->sqlerrcode = ERRCODE_INVALID_FUNCTION_DEFINITION;
		error->message = psprintf("the handler %s of projection \"%s\" version %d sets search_path to \"%s\", which does not end with pg_temp",
								  p->handler_name, p->name, p->version,
								  unsafe_path);
	}
	else
	{
		pfree(error);
		p->owner_code_passed_at = checking_at;
		return NULL;
	}
	return error;
}

/*
 * Enter the projection owner's code context with the settings captured from
 * its creator (a 0.2.0 registry recorded none: the API's search_path): for
 * its handler, on_reset, and its checks and views (read_models/).
 */
RoleSwitch
EnterProjectionOwner(Projection *p)
{
	RoleSwitch	saved = EnterOwnerCode(p->owner);

	if (p->settings != NULL)
		ApplyOwnerSettings(p->settings, &p->settings_cache,
						   GetMemoryChunkContext(p));
	EnteredOwnerCode();
	return saved;
}

/* Back from the owner's code to the caller. */
void
LeaveProjectionOwner(RoleSwitch saved)
{
	LeftOwnerCode();
	RestoreRole(saved);
	KeepClaimsThroughOwnerCode();
}

/*
 * Bumped whenever a function changes (ALTER FUNCTION, CREATE OR REPLACE,
 * DROP, a grant): prepared calls are set up again, so a changed handler's
 * SECURITY DEFINER and SET clauses take effect at its next call in every
 * session, not only in those that had not called it yet.
 */
static uint64 functions_changed = 1;

static void
NoteFunctionsChanged(Datum arg, int cacheid, uint32 hashvalue)
{
	functions_changed++;
}

/* The projection's prepared handler call, set up on first use. */
static FmgrInfo *
HandlerCall(Projection *p)
{
	static bool callback_registered = false;

	if (!callback_registered)
	{
		CacheRegisterSyscacheCallback(PROCOID, NoteFunctionsChanged, (Datum) 0);
		callback_registered = true;
	}
	if (p->call != NULL && p->call_prepared_at != functions_changed)
		p->call = NULL;
	if (p->call == NULL)
	{
		MemoryContext context = GetMemoryChunkContext(p);
		FmgrInfo   *call = MemoryContextAlloc(context, sizeof(FmgrInfo));

		ErrorData  *missing = MissingOwnerCode(p);

		if (missing != NULL)
			ereport(ERROR,
					(errcode(missing->sqlerrcode),
					 errmsg_internal("%s", missing->message),
					 errhint("Create the missing function or role, or drop the projection and create it again.")));
		fmgr_info_cxt(p->handler, call, context);
		p->call = call;			/* only once it is complete */
		p->call_prepared_at = functions_changed;
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
 * rows[first .. first + count) as the projection's handler receives them,
 * when it receives upcast events: each event of a type with versions after
 * its own made anew at the latest (schemas/upcast.c: data and
 * schema_version replaced, the rest as it is), the others the rows
 * themselves; NULL when none needs it, or the projection takes events as
 * stored (upcast => false).  Done before the handler runs, outside its
 * owner's code: each upcaster runs as its registrant.  An upcaster's error
 * is the event's, as the handler's would be (on_error deals with it).  The
 * registry is locked as upcast() locks it, to the transaction's end.
 */
static Datum *
UpcastRows(Projection *p, EventRows *rows, int first, int count)
{
	TupleDesc	desc = EventRowsRowType(rows);
	Datum	   *events = NULL;

	/*
	 * the usual case of a store without schemas costs the registry's lock
	 * (after the first, a look in the local lock table) and a cache look
	 */
	if (!p->upcast || desc->natts < EVENTS_SCHEMA_VERSION ||
		!LockSchemaRegistry(AccessShareLock) || RegisteredTypeCount() == 0)
		return NULL;
	for (int i = first; i < first + count; i++)
	{
		HeapTuple	upcast = UpcastEvent((HeapTupleHeader) DatumGetPointer(EventRowsDatum(rows, i)),
										 desc);

		if (upcast == NULL && events == NULL)
			continue;
		if (events == NULL)
		{
			events = palloc(sizeof(Datum) * count);
			for (int k = first; k < i; k++)
				events[k - first] = EventRowsDatum(rows, k);
		}
		if (upcast == NULL)
			events[i - first] = EventRowsDatum(rows, i);
		else
		{
			events[i - first] = heap_copy_tuple_as_datum(upcast, desc);
			heap_freetuple(upcast);
		}
	}
	return events;
}

/*
 * Call the handler on rows[first .. first + count), upcast (UpcastRows),
 * as the projection's owner: once per event, or once with them all for a
 * batch handler.
 */
void
CallHandler(Projection *p, EventRows *rows, int first, int count)
{
	FmgrInfo   *call = HandlerCall(p);
	Datum	   *upcast = UpcastRows(p, rows, first, count);
	Datum		batch = (Datum) 0;
	RoleSwitch	saved;

	if (p->batch_handler)
		batch = upcast != NULL ? EventsArray(rows, upcast, count)
			: EventRowsArray(rows, first, count);
	saved = EnterProjectionOwner(p);
	if (p->batch_handler)
		CallVoid(call, batch);
	else
	{
		for (int i = first; i < first + count; i++)
			CallVoid(call, upcast != NULL ? upcast[i - first]
					 : EventRowsDatum(rows, i));
	}
	LeaveProjectionOwner(saved);
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
	saved = EnterProjectionOwner(p);
	rc = SPI_execute(p->on_reset, false, 0);
	if (rc < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("on_reset of projection \"%s\" failed: %s",
						p->name, SPI_result_code_string(rc)),
				 errhint("on_reset is SQL such as TRUNCATE my_schema.my_table, without transaction control.")));
	LeaveProjectionOwner(saved);
}
