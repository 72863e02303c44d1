/*
 * core/catalog.c
 *		Finding the extension's own objects.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "commands/extension.h"
#include "core/catalog.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

/*
 * The extension's relations by name, looked up once per backend: an append
 * finds several of them on every call.  An entry holds what the catalog
 * said, a relation or none (InvalidOid), and stays right because every
 * change of a pg_class row (create, drop, rename, a move to another schema)
 * invalidates the syscache entries of its name, old and new, and so calls
 * ForgetRelids with that name's hash: the entry is dropped and looked up
 * again on next use.  A change of pg_namespace forgets them all (the
 * schema's oid is cached with them).  The invalidations of this
 * transaction's own changes are seen after each command, as the syscache
 * sees them, and those of an aborted subtransaction at its abort.
 */
typedef struct CachedRelid
{
	char	   *name;
	uint32		hash;			/* of (name, schema) in RELNAMENSP */
	Oid			relid;
	bool		valid;
} CachedRelid;

#define MAX_CACHED_RELIDS 32

static CachedRelid cached_relids[MAX_CACHED_RELIDS];
static int	ncached_relids = 0;
static Oid	cached_schema = InvalidOid;
static bool cached_schema_valid = false;
static bool relid_callbacks_registered = false;

/* Syscache callback: a pg_class row named by `hashvalue` changed. */
static void
ForgetRelids(Datum arg, int cacheid, uint32 hashvalue)
{
	for (int i = 0; i < ncached_relids; i++)
		if (hashvalue == 0 || cached_relids[i].hash == hashvalue)
			cached_relids[i].valid = false;
}

/* Syscache callback: a schema changed; forget the schema and every name. */
static void
ForgetSchema(Datum arg, int cacheid, uint32 hashvalue)
{
	cached_schema_valid = false;
	ForgetRelids(arg, cacheid, 0);
}

/* The oid of the extension's schema, InvalidOid when there is none. */
static Oid
EventstoreSchema(void)
{
	if (!relid_callbacks_registered)
	{
		CacheRegisterSyscacheCallback(RELNAMENSP, ForgetRelids, (Datum) 0);
		CacheRegisterSyscacheCallback(NAMESPACENAME, ForgetSchema, (Datum) 0);
		relid_callbacks_registered = true;
	}
	if (!cached_schema_valid)
	{
		cached_schema = get_namespace_oid(EVENTSTORE_SCHEMA, true);
		cached_schema_valid = true;
	}
	return cached_schema;
}

/* eventstore.<name>'s oid, InvalidOid when it has none; cached. */
static Oid
CachedEventstoreRelid(const char *name)
{
	Oid			schema = EventstoreSchema();
	CachedRelid *entry = NULL;

	if (!OidIsValid(schema))
		return InvalidOid;
	for (int i = 0; i < ncached_relids && entry == NULL; i++)
		if (strcmp(cached_relids[i].name, name) == 0)
			entry = &cached_relids[i];
	if (entry == NULL)
	{
		/* the names are the library's own: a few */
		if (ncached_relids == MAX_CACHED_RELIDS)
			return get_relname_relid(name, schema);
		entry = &cached_relids[ncached_relids];
		entry->name = MemoryContextStrdup(TopMemoryContext, name);
		entry->valid = false;
		ncached_relids++;
	}
	if (!entry->valid)
	{
		/* the hash first: an invalidation during the lookup drops it */
		entry->hash = GetSysCacheHashValue2(RELNAMENSP, PointerGetDatum(entry->name),
											ObjectIdGetDatum(schema));
		entry->valid = true;
		entry->relid = get_relname_relid(entry->name, schema);
	}
	return entry->relid;
}

/* The OID of relation eventstore.<name>; the extension must exist. */
Oid
EventstoreRelid(const char *name)
{
	Oid			relid;

	if (!OidIsValid(EventstoreSchema()))
		(void) get_namespace_oid(EVENTSTORE_SCHEMA, false); /* its error */
	relid = CachedEventstoreRelid(name);
	if (!OidIsValid(relid))
		elog(ERROR, "relation " EVENTSTORE_SCHEMA ".%s does not exist", name);
	return relid;
}

/* The role that owns the extension's tables, and so its bookkeeping. */
Oid
ExtensionOwner(void)
{
	HeapTuple	tuple;
	Oid			owner;

	/* the log: every version has it */
	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(EventstoreRelid("events")));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for " EVENTSTORE_SCHEMA ".events");
	owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);
	return owner;
}

/*
 * The OID of relation eventstore.<name>, InvalidOid when this database has
 * none: an older version of the extension, or none at all.
 */
Oid
OptionalEventstoreRelid(const char *name)
{
	return CachedEventstoreRelid(name);
}

/* The OID of eventstore.projections, InvalidOid when there is no registry. */
Oid
RegistryRelid(void)
{
	return OptionalEventstoreRelid("projections");
}

/*
 * Is pg_eventstore installed here at a version with a projection registry?
 * The workers serve databases that may have none, or an older one.
 */
bool
RegistryExists(void)
{
	return OidIsValid(get_extension_oid("pg_eventstore", true)) &&
		OidIsValid(RegistryRelid());
}
