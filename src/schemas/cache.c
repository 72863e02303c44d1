/*
 * schemas/cache.c
 *		The event schema registry as each backend keeps it: every registered
 *		type with its versions and its latest schema compiled, loaded at the
 *		first use after a change.
 *
 * A statement trigger on eventstore.event_schema_versions sends a relcache
 * invalidation of the table at the end of every transaction that changed
 * it (through the API, a restore's COPY or by hand); the relcache callback
 * here marks the cache stale, and the next LockSchemaRegistry, whose lock
 * acquisition processes pending invalidations, reloads it through the
 * latest snapshot.  Appends take RowExclusiveLock on the table and
 * registrations ShareRowExclusiveLock, so a registration waits for the
 * appends in flight and appends wait for a registration to commit (see
 * README: Evolving events).
 */
#include "postgres.h"

#include "commands/trigger.h"
#include "core/catalog.h"
#include "core/kept_plans.h"
#include "core/role.h"
#include "schemas/schemas.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

PG_FUNCTION_INFO_V1(eventstore_event_schemas_changed);

static MemoryContext cache_context = NULL;
static RegisteredType *types = NULL;	/* sorted by (len, bytes) */
static int	ntypes = 0;
static bool cache_valid = false;
static Oid	registry_relid = InvalidOid;
static bool registry_looked_up = false; /* registry_relid is current */
static bool callback_registered = false;
static SPIPlanPtr load_plan = NULL;

/* Relcache callback: the registry changed, or everything is being reset. */
static void
InvalidateSchemaCache(Datum arg, Oid relid)
{
	/* without a registry, any new relation may be it (an update) */
	if (relid == InvalidOid || relid == registry_relid ||
		!OidIsValid(registry_relid))
	{
		cache_valid = false;
		registry_looked_up = false;
	}
}

/* Context for errors in a stored schema: which one it is. */
static void
CompilingContext(void *arg)
{
	SchemaVersion *v = arg;

	errcontext("compiling the registered schema version %d", v->version);
}

/* Order of registered types: their names' (len, bytes), as CompareKeys. */
static int
CompareTypes(const void *a, const void *b)
{
	const RegisteredType *ta = a;
	const RegisteredType *tb = b;

	return CompareKeys(ta->type, ta->len, tb->type, tb->len);
}

/*
 * Load the registry through the latest snapshot, as the extension's owner
 * (who alone reads its table) and with the API's search_path (upcast()
 * does not pin it for every call), into a new context.
 */
static void
LoadSchemaCache(void)
{
	MemoryContext context = AllocSetContextCreate(CurrentMemoryContext,
												  "pg_eventstore schema cache",
												  ALLOCSET_SMALL_SIZES);
	int			nestlevel = PinApiSearchPath();
	RoleSwitch	caller = BecomeRole(ExtensionOwner());
	MemoryContext old;
	RegisteredType *loaded;
	int			nloaded = 0;

	ConnectSpi();
	QueryKeptPlanThrough(KeptPlan(&load_plan,
								  "SELECT event_type, version, schema, upcast,"
								  " upcast_owner, registered_by"
								  " FROM eventstore.event_schema_versions"
								  " ORDER BY event_type, version",
								  0, NULL),
						 NULL, NULL, GetLatestSnapshot(), 0);
	old = MemoryContextSwitchTo(context);
	loaded = palloc0(sizeof(RegisteredType) * Max(SPI_processed, 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	row = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		char	   *type = TextDatumGetCString(SPI_getbinval(row, desc, 1, &isnull));
		int32		version = DatumGetInt32(SPI_getbinval(row, desc, 2, &isnull));
		RegisteredType *t = nloaded > 0 ? &loaded[nloaded - 1] : NULL;
		SchemaVersion *v;

		if (t == NULL || strcmp(t->type, type) != 0)
		{
			t = &loaded[nloaded++];
			t->type = type;
			t->len = strlen(type);
			t->versions = palloc0(sizeof(SchemaVersion) * (SPI_processed - i));
		}
		/* versions are registered in order from 1, without a gap */
		if (version != t->latest + 1)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("event type \"%s\" has schema version %d registered after version %d",
							type, version, t->latest),
					 errhint("The versions of a type in eventstore.event_schema_versions must run from 1 without a gap; restore the missing ones.")));
		v = &t->versions[version - 1];
		v->version = version;
		v->upcast_name = SPI_getvalue(row, desc, 4);
		v->upcast_owner = SPI_getvalue(row, desc, 5);
		v->registered_by = SPI_getvalue(row, desc, 6);
		t->latest = version;
		if (i + 1 == SPI_processed ||
			strcmp(type, TextDatumGetCString(SPI_getbinval(SPI_tuptable->vals[i + 1],
															desc, 1, &isnull))) != 0)
		{
			ErrorContextCallback callback = {error_context_stack, CompilingContext, v};

			error_context_stack = &callback;
			t->latest_schema = CompileSchema(DatumGetJsonbP(SPI_getbinval(row, desc, 3,
																		  &isnull)));
			error_context_stack = callback.previous;
		}
	}
	qsort(loaded, nloaded, sizeof(RegisteredType), CompareTypes);
	MemoryContextSwitchTo(old);
	SPI_finish();
	RestoreRole(caller);
	AtEOXact_GUC(true, nestlevel);

	MemoryContextSetParent(context, CacheMemoryContext);
	if (cache_context != NULL)
		MemoryContextDelete(cache_context);
	cache_context = context;
	types = loaded;
	ntypes = nloaded;
	cache_valid = true;
}

/*
 * Lock the registry in `mode` and make sure the cache is current; false
 * when this database's extension has no registry (a version before 0.3.0).
 */
bool
LockSchemaRegistry(LOCKMODE mode)
{
	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(InvalidateSchemaCache, (Datum) 0);
		callback_registered = true;
	}
	if (!registry_looked_up)
	{
		registry_relid = OptionalEventstoreRelid("event_schema_versions");
		registry_looked_up = true;
		cache_valid = false;
	}
	if (!OidIsValid(registry_relid))
		return false;
	/* granting the lock processes pending invalidations */
	LockRelationOid(registry_relid, mode);
	if (!cache_valid)
		LoadSchemaCache();
	return true;
}

/* Is the cache as loaded still current (no change seen since)? */
bool
SchemaCacheCurrent(void)
{
	return cache_valid;
}

/* The registered type named type[0 .. len), NULL when it has no schema. */
RegisteredType *
FindRegisteredType(const char *type, int len)
{
	int			lo = 0,
				hi = ntypes - 1;

	Assert(cache_valid);
	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;
		int			c = CompareKeys(type, len, types[mid].type, types[mid].len);

		if (c == 0)
			return &types[mid];
		if (c < 0)
			hi = mid - 1;
		else
			lo = mid + 1;
	}
	return NULL;
}

/* How many event types have a schema. */
int
RegisteredTypeCount(void)
{
	Assert(cache_valid);
	return ntypes;
}

/*
 * Trigger: the registry changed.  Every backend's cache (this one's too)
 * is invalidated when the change commits.
 */
Datum
eventstore_event_schemas_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigger = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "eventstore.event_schemas_changed() must be called as a trigger");
	CacheInvalidateRelcacheByRelid(RelationGetRelid(trigger->tg_relation));
	return PointerGetDatum(NULL);
}
