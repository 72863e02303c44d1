/*
 * schemas/registry.c
 *		register_event_schema and drop_event_schema: the versions of each
 *		event type's schema, in order from 1, and the check of a new
 *		version against a sample of the stored events of its type.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "core/args.h"
#include "core/catalog.h"
#include "core/errors.h"
#include "core/kept_plans.h"
#include "core/role.h"
#include "miscadmin.h"
#include "retention/retention.h"
#include "schemas/schemas.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/regproc.h"
#include "utils/syscache.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(eventstore_register_event_schema);
PG_FUNCTION_INFO_V1(eventstore_drop_event_schema);

/* Stored events a new version is checked against, at most. */
#define SAMPLE_SIZE 100

static SPIPlanPtr bounds_plan = NULL;
static SPIPlanPtr sample_plan = NULL;
static SPIPlanPtr insert_plan = NULL;
static SPIPlanPtr used_plan = NULL;
static SPIPlanPtr delete_plan = NULL;

/* A new version being registered. */
typedef struct NewVersion
{
	char	   *type;
	int32		version;
	SchemaNode *schema;
	Oid			upcast;			/* InvalidOid: none */
	char	   *upcast_name;
	char	   *upcast_owner;
	char	   *registrant;
} NewVersion;

/*
 * Check the upcaster argument: a function (data jsonb) RETURNS jsonb the
 * caller may execute.  Fills in its signature and owner.
 */
static void
CheckUpcaster(NewVersion *nv)
{
	HeapTuple	proc = SearchSysCache1(PROCOID, ObjectIdGetDatum(nv->upcast));
	Form_pg_proc form;

	if (!HeapTupleIsValid(proc))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("function with oid %u does not exist", nv->upcast),
				 errhint("Pass the upcaster as 'schema.name(jsonb)'.")));
	form = (Form_pg_proc) GETSTRUCT(proc);
	if (form->prokind != PROKIND_FUNCTION || form->pronargs != 1 ||
		form->proargtypes.values[0] != JSONBOID || form->prorettype != JSONBOID ||
		form->proretset)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("upcaster %s must take one jsonb argument and return jsonb",
						format_procedure(nv->upcast)),
				 errhint("Declare it as CREATE FUNCTION ...(data jsonb) RETURNS jsonb, turning the previous version's data into this version's.")));
	nv->upcast_owner = GetUserNameFromId(form->proowner, false);
	ReleaseSysCache(proc);
	if (!RoleMayExecute(GetUserId(), nv->upcast))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for function %s", format_procedure(nv->upcast)),
				 errdetail("The upcaster runs as the role that registers it."),
				 errhint("Register the version as a role with EXECUTE on the function.")));
	nv->upcast_name = format_procedure_qualified(nv->upcast);
}

/* What the check of a stored event is doing, for its errors' context. */
typedef struct SampleEvent
{
	int64		position;
	char	   *event_id;
	int32		version;
} SampleEvent;

/* Error context: which stored event the check was upcasting. */
static void
SampleContext(void *arg)
{
	SampleEvent *e = arg;

	errcontext("upcasting the stored event %s (global_position " INT64_FORMAT ") for the check of version %d",
			   e->event_id, e->position, e->version);
}

/*
 * Check one stored event of the type: its data brought to the new version
 * (through the registered upcasters, then the new one) must match the new
 * schema.
 */
static void
CheckStoredEvent(NewVersion *nv, RegisteredType *t, HeapTuple row,
				 TupleDesc desc)
{
	bool		isnull;
	SampleEvent e;
	Datum		version;
	Jsonb	   *data;
	char	   *path;
	char	   *rule;
	ErrorContextCallback callback = {error_context_stack, SampleContext, &e};

	e.position = DatumGetInt64(SPI_getbinval(row, desc, 1, &isnull));
	e.event_id = SPI_getvalue(row, desc, 2);
	e.version = nv->version;
	data = DatumGetJsonbP(SPI_getbinval(row, desc, 3, &isnull));
	version = SPI_getbinval(row, desc, 4, &isnull);
	error_context_stack = &callback;
	if (t != NULL)
		data = UpcastData(t, isnull ? 1 : DatumGetInt32(version), data);
	if (OidIsValid(nv->upcast))
		data = CallUpcaster(nv->upcast, nv->upcast_name, nv->registrant, data);
	error_context_stack = callback.previous;
	if (!ValidateJsonb(nv->schema, data, &path, &rule))
		ereport(ERROR,
				(errcode(ERRCODE_ES_SCHEMA_VIOLATION),
				 errmsg("version %d of event type \"%s\" does not accept the stored event %s",
						nv->version, nv->type, e.event_id),
				 errdetail("The event at global_position " INT64_FORMAT ", written with %s, brought to version %d: at %s: %s.",
						   e.position,
						   isnull ? "no schema version" : psprintf("version %d", DatumGetInt32(version)),
						   nv->version, path, rule),
				 errhint("%s",
						 OidIsValid(nv->upcast) ?
						 "Fix the upcaster or the schema: the upcaster must turn every stored event of the previous versions into valid data." :
						 nv->version == 1 ?
						 "Write the schema so that the type's stored events match it, or register a looser version 1 and a stricter version 2 with an upcaster." :
						 "The change is not additive: register the version with an upcaster that turns the previous version's data into this one's.")));
}

/*
 * Check the new version against up to SAMPLE_SIZE stored events of its
 * type, spread over the log: the span of positions is cut into as many
 * ranges, and in each the first event of the type is taken through the
 * primary key.  A common type costs a probe per range; a rare one at most
 * a scan of the log's index once.  Redacted events (redact_events) are left
 * out: their data is a marker, which no schema is asked to describe.
 */
static void
CheckSample(NewVersion *nv, RegisteredType *t)
{
	Oid			argtypes[3] = {INT8OID, INT8OID, TEXTOID};
	Datum		values[3];
	int64		low,
				high,
				step;
	bool		isnull;

	/* through the latest snapshot: every append we waited for is in it */
	QueryKeptPlanThrough(KeptPlan(&bounds_plan,
								  "SELECT min(global_position), max(global_position)"
								  " FROM eventstore.events", 0, NULL),
						 NULL, NULL, GetLatestSnapshot(), 0);
	low = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (isnull)
		return;					/* an empty log */
	high = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	step = (high - low) / SAMPLE_SIZE + 1;
	values[2] = CStringGetTextDatum(nv->type);
	for (int64 from = low; from <= high; from += step)
	{
		values[0] = Int64GetDatum(from);
		values[1] = Int64GetDatum(from + step);
		QueryKeptPlanThrough(KeptPlan(&sample_plan,
									  "SELECT global_position, event_id, data, schema_version"
									  " FROM eventstore.events"
									  " WHERE global_position >= $1 AND global_position < $2"
									  " AND event_type = $3"
									  /* redact_events left it unfit for any schema */
									  " AND NOT " DATA_IS_REDACTED("data")
									  " ORDER BY global_position LIMIT 1",
									  3, argtypes),
							 values, NULL, GetLatestSnapshot(), 1);
		if (SPI_processed == 1)
		{
			SPITupleTable *rows = SPI_tuptable;

			CheckStoredEvent(nv, t, rows->vals[0], rows->tupdesc);
			SPI_freetuptable(rows);
		}
		CHECK_FOR_INTERRUPTS();
	}
}

/* Insert the new version's row. */
static void
InsertVersion(NewVersion *nv, Jsonb *schema)
{
	Oid			argtypes[7] = {TEXTOID, INT4OID, JSONBOID, TEXTOID, TEXTOID,
	TEXTOID, TIMESTAMPTZOID};
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};

	values[0] = CStringGetTextDatum(nv->type);
	values[1] = Int32GetDatum(nv->version);
	values[2] = JsonbPGetDatum(schema);
	if (nv->upcast_name)
	{
		values[3] = CStringGetTextDatum(nv->upcast_name);
		values[4] = CStringGetTextDatum(nv->upcast_owner);
	}
	else
		nulls[3] = nulls[4] = 'n';
	values[5] = CStringGetTextDatum(nv->registrant);
	values[6] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	ExecKeptPlan(KeptPlan(&insert_plan,
						  "INSERT INTO eventstore.event_schema_versions"
						  " (event_type, version, schema, upcast, upcast_owner,"
						  "  registered_by, registered_at)"
						  " VALUES ($1, $2, $3, $4, $5, $6, $7)",
						  7, argtypes),
				 values, nulls, false, 0);
}

/*
 * SQL: register_event_schema(event_type, version, schema, upcast): the
 * type's next version (1 for a new type).  The schema is compiled first
 * (an unsupported keyword is refused), then checked against a sample of
 * the type's stored events brought to the new version.
 */
Datum
eventstore_register_event_schema(PG_FUNCTION_ARGS)
{
	NewVersion	nv = {0};
	Jsonb	   *schema;
	RoleSwitch	caller;
	RegisteredType *t;
	int32		next;

	nv.type = text_to_cstring(RequireEventType(fcinfo, 0));
	RequireArgNotNull(fcinfo, 1, "version", "Pass the version, 1 for a type's first schema.");
	RequireArgNotNull(fcinfo, 2, "schema", "Pass a JSON Schema, for example '{\"type\": \"object\"}'.");
	nv.version = PG_GETARG_INT32(1);
	schema = PG_GETARG_JSONB_P(2);
	if (nv.version < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("version must be at least 1"),
				 errdetail("Got %d.", nv.version),
				 errhint("A type's first schema is version 1; each next one adds 1.")));
	nv.schema = CompileSchema(schema);
	nv.registrant = GetUserNameFromId(GetUserId(), false);
	if (!PG_ARGISNULL(3))
	{
		if (nv.version == 1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("version 1 of a type cannot have an upcaster"),
					 errdetail("An upcaster turns the previous version's data into its version's, and version 1 has none before it."),
					 errhint("Register version 1 without upcast.")));
		nv.upcast = PG_GETARG_OID(3);
		CheckUpcaster(&nv);
	}

	caller = BecomeRole(ExtensionOwner());
	ConnectSpi();
	/* waits for appends in flight; appends of the type wait for our commit */
	LockSchemaRegistry(ShareRowExclusiveLock);
	t = FindRegisteredType(nv.type, strlen(nv.type));
	next = t ? t->latest + 1 : 1;
	if (nv.version < next)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("event type \"%s\" already has schema version %d", nv.type, nv.version),
				 errdetail("Its latest version is %d.", next - 1),
				 errhint("Register the changed schema as version %d; registered versions never change.", next)));
	if (nv.version > next)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the next schema version of event type \"%s\" is %d, not %d",
						nv.type, next, nv.version),
				 errhint("Versions are registered in order, from 1, without a gap.")));
	CheckSample(&nv, t);
	InsertVersion(&nv, schema);
	SPI_finish();
	RestoreRole(caller);
	PG_RETURN_VOID();
}

/*
 * SQL: drop_event_schema(event_type, version): remove the type's latest
 * version, which no stored event was written with (a registration undone);
 * the version before it becomes the latest again.
 */
Datum
eventstore_drop_event_schema(PG_FUNCTION_ARGS)
{
	char	   *type = text_to_cstring(RequireEventType(fcinfo, 0));
	int32		version;
	RoleSwitch	caller;
	RegisteredType *t;
	Oid			argtypes[2] = {TEXTOID, INT4OID};
	Datum		values[2];

	RequireArgNotNull(fcinfo, 1, "version", "Pass the version to drop, the type's latest.");
	version = PG_GETARG_INT32(1);
	caller = BecomeRole(ExtensionOwner());
	ConnectSpi();
	LockSchemaRegistry(ShareRowExclusiveLock);
	t = FindRegisteredType(type, strlen(type));
	if (t == NULL || version < 1 || version > t->latest)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("event type \"%s\" has no schema version %d", type, version),
				 t ? errdetail("Its versions are 1 to %d.", t->latest) :
				 errdetail("The type has no registered schema."),
				 errhint("See eventstore.event_schemas for the registered versions.")));
	if (version != t->latest)
		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("schema version %d of event type \"%s\" is not its latest", version, type),
				 errdetail("Version %d upcasts from it.", version + 1),
				 errhint("Drop the later versions first, latest first.")));
	values[0] = CStringGetTextDatum(type);
	values[1] = Int32GetDatum(version);
	QueryKeptPlanThrough(KeptPlan(&used_plan,
								  "SELECT global_position FROM eventstore.events"
								  " WHERE event_type = $1 AND schema_version = $2 LIMIT 1",
								  2, argtypes),
						 values, NULL, GetLatestSnapshot(), 1);
	if (SPI_processed > 0)
	{
		bool		isnull;

		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("schema version %d of event type \"%s\" is in use", version, type),
				 errdetail("Stored events were written with it, the first at global_position " INT64_FORMAT ".",
						   DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
													   SPI_tuptable->tupdesc, 1, &isnull))),
				 errhint("Stored events keep the version they were written with; register a new version instead.")));
	}
	ExecKeptPlan(KeptPlan(&delete_plan,
						  "DELETE FROM eventstore.event_schema_versions"
						  " WHERE event_type = $1 AND version = $2",
						  2, argtypes),
				 values, NULL, false, 0);
	SPI_finish();
	RestoreRole(caller);
	PG_RETURN_VOID();
}
