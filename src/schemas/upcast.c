/*
 * schemas/upcast.c
 *		Upcasting: an event's data brought from the version it was written
 *		with to its type's latest, through each later version's upcaster.
 *		Stored events never change; eventstore.upcast(e) returns a new row.
 *
 * An upcaster runs as the role that registered it, in owner code (core/
 * role.c: a security-restricted operation with the API's search_path, its
 * settings undone after the call), whoever reads: a reader granted
 * eventstore.upcast is never made to run another role's code as itself.
 * It is found by the signature the registry keeps, and run only while the
 * role that owned it at registration still owns it.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_proc.h"
#include "core/catalog.h"
#include "core/role.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "projections/projections.h"
#include "retention/retention.h"
#include "schemas/schemas.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

PG_FUNCTION_INFO_V1(eventstore_upcast);

/*
 * The upcaster registered for `type` version `version` by its signature,
 * as long as `owner` still owns it; an error naming what is missing
 * otherwise.
 */
Oid
ResolveUpcaster(const char *name, const char *owner, const char *type,
				int32 version)
{
	Oid			fn = DatumGetObjectId(DirectFunctionCall1(to_regprocedure,
														  CStringGetTextDatum(name)));
	HeapTuple	proc;
	Oid			proowner;

	if (!OidIsValid(fn))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("the upcaster %s of event type \"%s\" version %d does not exist",
						name, type, version),
				 errhint("Create the function again (the registry keeps it by its signature), or register the version again.")));
	proc = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	if (!HeapTupleIsValid(proc))
		elog(ERROR, "cache lookup failed for function %u", fn);
	proowner = ((Form_pg_proc) GETSTRUCT(proc))->proowner;
	ReleaseSysCache(proc);
	if (strcmp(GetUserNameFromId(proowner, true) ? GetUserNameFromId(proowner, true) : "",
			   owner) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("the upcaster %s of event type \"%s\" version %d is no longer owned by role \"%s\"",
						name, type, version, owner),
				 errdetail("A function of that signature owned by another role is never run as an upcaster."),
				 errhint("Give the function back to its owner at registration (ALTER FUNCTION ... OWNER TO), or register the type's schemas again.")));
	return fn;
}

/*
 * An upcaster as this backend has found it: its function, ready to call,
 * and its registrant's oid, valid until pg_proc or pg_authid changes (the
 * generation moves on); then found again by name, so a function dropped,
 * created again, renamed or given away is seen at its next call.
 */
typedef struct FoundUpcaster
{
	char	   *name;
	char	   *owner;
	char	   *run_as;
	uint64		generation;
	Oid			fn;
	Oid			role;
	FmgrInfo	flinfo;			/* its fn_extra keeps, say, an SQL function's plan */
	MemoryContext context;		/* of flinfo and the names */
	int			calls;			/* running now (an upcaster may upcast) */
} FoundUpcaster;

static List *found_upcasters = NIL;	/* in TopMemoryContext */
static uint64 catalog_generation = 1;
static bool callbacks_registered = false;

/* Syscache callback: a function or a role changed. */
static void
UpcastersChanged(Datum arg, int cacheid, uint32 hashvalue)
{
	catalog_generation++;
}

/* The upcaster of `type` version `version`, found (again) when needed. */
static FoundUpcaster *
FindUpcaster(SchemaVersion *sv, const char *type, int32 version)
{
	FoundUpcaster *u = NULL;
	ListCell   *lc;

	if (!callbacks_registered)
	{
		CacheRegisterSyscacheCallback(PROCOID, UpcastersChanged, (Datum) 0);
		CacheRegisterSyscacheCallback(AUTHOID, UpcastersChanged, (Datum) 0);
		callbacks_registered = true;
	}
	foreach(lc, found_upcasters)
	{
		FoundUpcaster *f = lfirst(lc);

		if (strcmp(f->name, sv->upcast_name) == 0 &&
			strcmp(f->owner, sv->upcast_owner) == 0 &&
			strcmp(f->run_as, sv->registered_by) == 0)
		{
			u = f;
			break;
		}
	}
	if (u != NULL && u->generation == catalog_generation)
		return u;
	/* one running (or left running by an error) keeps its state: a new one */
	if (u == NULL || u->calls > 0)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		if (u != NULL)
			found_upcasters = list_delete_ptr(found_upcasters, u);
		u = palloc0(sizeof(FoundUpcaster));
		u->context = AllocSetContextCreate(TopMemoryContext,
										   "pg_eventstore upcaster",
										   ALLOCSET_SMALL_SIZES);
		u->name = MemoryContextStrdup(u->context, sv->upcast_name);
		u->owner = MemoryContextStrdup(u->context, sv->upcast_owner);
		u->run_as = MemoryContextStrdup(u->context, sv->registered_by);
		found_upcasters = lappend(found_upcasters, u);
		MemoryContextSwitchTo(old);
	}
	/* invalid until found: an error below leaves it to be found again */
	u->generation = 0;
	u->fn = ResolveUpcaster(u->name, u->owner, type, version);
	u->role = get_role_oid(u->run_as, true);
	if (!OidIsValid(u->role))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role \"%s\", which registered the upcaster %s, does not exist",
						u->run_as, u->name),
				 errhint("Create the role again, or register the type's schemas again as another role.")));
	/* the previous call's state (fn_extra) goes with the old function */
	MemoryContextReset(u->context);
	u->name = MemoryContextStrdup(u->context, sv->upcast_name);
	u->owner = MemoryContextStrdup(u->context, sv->upcast_owner);
	u->run_as = MemoryContextStrdup(u->context, sv->registered_by);
	fmgr_info_cxt(u->fn, &u->flinfo, u->context);
	u->generation = catalog_generation;
	return u;
}

/*
 * Call an upcaster on data as `role` (its registrant), in owner code; its
 * result must be a JSON value, not NULL.
 */
static Jsonb *
CallFunctionAs(FmgrInfo *flinfo, Oid role, const char *name, Jsonb *data)
{
	RoleSwitch	saved;
	Datum		result;
	LOCAL_FCINFO(fcinfo, 1);

	InitFunctionCallInfoData(*fcinfo, flinfo, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = JsonbPGetDatum(data);
	fcinfo->args[0].isnull = false;
	saved = EnterOwnerCode(role);
	EnteredOwnerCode();
	result = FunctionCallInvoke(fcinfo);
	LeftOwnerCode();
	RestoreRole(saved);
	if (fcinfo->isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the upcaster %s returned NULL", name),
				 errhint("An upcaster must return the data of its version as a JSON value.")));
	return DatumGetJsonbP(result);
}

/*
 * Call upcaster `fn` (a version being registered, not yet in the registry)
 * on data as role `run_as`, its registrant.
 */
Jsonb *
CallUpcaster(Oid fn, const char *name, const char *run_as, Jsonb *data)
{
	FmgrInfo	flinfo;

	fmgr_info(fn, &flinfo);
	return CallFunctionAs(&flinfo, get_role_oid(run_as, false), name, data);
}

/*
 * Data of type t written with from_version brought to t's latest version
 * through the upcasters of the versions after it (a version without one
 * takes the data as it is).  What it needs of t is copied first: an
 * upcaster that appends may reload the cache, and t with it.  Data that
 * redact_events replaced whole is the marker at every version: no upcaster
 * sees it.
 */
Jsonb *
UpcastData(RegisteredType *t, int32 from_version, Jsonb *data)
{
	int32		latest = t->latest;
	char	   *type;
	SchemaVersion *versions;

	if (JsonbIsRedactionMarker(data))
		return data;
	type = pstrdup(t->type);
	versions = palloc(sizeof(SchemaVersion) * latest);

	for (int32 v = from_version + 1; v <= latest; v++)
	{
		SchemaVersion *sv = &t->versions[v - 1];

		versions[v - 1].upcast_name = sv->upcast_name ? pstrdup(sv->upcast_name) : NULL;
		versions[v - 1].upcast_owner = sv->upcast_owner ? pstrdup(sv->upcast_owner) : NULL;
		versions[v - 1].registered_by = pstrdup(sv->registered_by);
	}
	for (int32 v = from_version + 1; v <= latest; v++)
	{
		SchemaVersion *sv = &versions[v - 1];

		FoundUpcaster *u;

		if (sv->upcast_name == NULL)
			continue;
		u = FindUpcaster(sv, type, v);
		u->calls++;
		data = CallFunctionAs(&u->flinfo, u->role, u->name, data);
		u->calls--;
	}
	return data;
}

/*
 * The registered type whose upcasters bring an event of `type` at schema
 * version `version` (version_null: written before the type's first
 * version, taken as of version 1) to the latest; NULL when the event stays
 * as it is: a type without a schema, or an event at the latest version.
 * The caller has locked the registry in this transaction
 * (LockSchemaRegistry); a cache found stale since (an upcaster may have
 * processed invalidations) is loaded again.
 */
RegisteredType *
TypeToUpcast(text *type, int32 version, bool version_null)
{
	RegisteredType *t;

	if (!SchemaCacheCurrent() && !LockSchemaRegistry(AccessShareLock))
		return NULL;
	if ((t = FindRegisteredType(VARDATA_ANY(type), VARSIZE_ANY_EXHDR(type))) == NULL)
		return NULL;
	if (version_null)
		version = 1;
	else if (version == t->latest)
		return NULL;
	if (version > t->latest || version < 1)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("the event was written with version %d of event type \"%s\", which has versions 1 to %d",
						version, t->type, t->latest),
				 errhint("Register the type's missing versions again (a restore of the log without eventstore.event_schema_versions?).")));
	return t;
}

/*
 * The data of an event at `version` of type t (TypeToUpcast) brought to the
 * type's latest version through the upcasters.
 */
Jsonb *
UpcastDataFrom(RegisteredType *t, int32 version, bool version_null, Jsonb *data)
{
	int			nestlevel;

	/* the upcasters' owner code finds the API's search_path set: kept */
	nestlevel = PinApiSearchPath();
	data = UpcastData(t, version_null ? 1 : version, data);
	AtEOXact_GUC(true, nestlevel);
	return data;
}

/*
 * The event, a composite datum of row type desc (eventstore.events'), with
 * its data brought to its type's latest version and schema_version saying
 * so, as a new tuple in the current memory context; NULL when it stays as
 * it is (TypeToUpcast).  The caller has locked the registry in this
 * transaction (LockSchemaRegistry).
 */
HeapTuple
UpcastEvent(HeapTupleHeader event, TupleDesc desc)
{
	HeapTupleData tuple;
	bool		isnull;
	Datum		type;
	Datum		version_datum;
	bool		version_null;
	RegisteredType *t;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	int			columns[2] = {EVENTS_DATA, EVENTS_SCHEMA_VERSION};

	if (desc->natts < EVENTS_SCHEMA_VERSION)
		elog(ERROR, "eventstore.events has no schema_version column");
	tuple.t_len = HeapTupleHeaderGetDatumLength(event);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = event;
	type = heap_getattr(&tuple, EVENTS_EVENT_TYPE, desc, &isnull);
	if (isnull)
		return NULL;
	version_datum = heap_getattr(&tuple, EVENTS_SCHEMA_VERSION, desc, &version_null);
	t = TypeToUpcast(DatumGetTextPP(type),
					 version_null ? 0 : DatumGetInt32(version_datum), version_null);
	if (t == NULL)
		return NULL;
	values[0] = heap_getattr(&tuple, EVENTS_DATA, desc, &isnull);
	if (isnull)
		elog(ERROR, "an event without data");
	values[1] = Int32GetDatum(t->latest);
	values[0] = JsonbPGetDatum(UpcastDataFrom(t, version_null ? 0 : DatumGetInt32(version_datum),
											  version_null, DatumGetJsonbP(values[0])));
	return heap_modify_tuple_by_cols(&tuple, desc, 2, columns, values, nulls);
}

/*
 * What upcast() keeps between the calls of one query: the row type, and
 * the transaction in which it last locked the registry (the lock is held
 * to its end; until the cache is found stale, the query's later rows need
 * not take it again).
 */
typedef struct UpcastCall
{
	TupleDesc	desc;
	LocalTransactionId locked_in;
} UpcastCall;

#if PG_VERSION_NUM >= 170000
#define CURRENT_LXID (MyProc->vxid.lxid)
#else
#define CURRENT_LXID (MyProc->lxid)
#endif

/* SQL: upcast(event eventstore.events): see UpcastEvent. */
Datum
eventstore_upcast(PG_FUNCTION_ARGS)
{
	HeapTupleHeader event = PG_GETARG_HEAPTUPLEHEADER(0);
	UpcastCall *call = fcinfo->flinfo->fn_extra;
	HeapTuple	upcast;

	if (call == NULL || call->desc->tdtypeid != HeapTupleHeaderGetTypeId(event))
	{
		MemoryContext old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);

		call = palloc0(sizeof(UpcastCall));
		call->desc = lookup_rowtype_tupdesc_copy(HeapTupleHeaderGetTypeId(event),
												 HeapTupleHeaderGetTypMod(event));
		MemoryContextSwitchTo(old);
		fcinfo->flinfo->fn_extra = call;
	}
	if (call->locked_in != CURRENT_LXID || !SchemaCacheCurrent())
	{
		if (!LockSchemaRegistry(AccessShareLock))
			PG_RETURN_HEAPTUPLEHEADER(event);
		call->locked_in = CURRENT_LXID;
	}
	upcast = UpcastEvent(event, call->desc);
	if (upcast == NULL)
		PG_RETURN_HEAPTUPLEHEADER(event);
	PG_RETURN_DATUM(heap_copy_tuple_as_datum(upcast, call->desc));
}
