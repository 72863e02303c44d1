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
#include "utils/lsyscache.h"
#include "utils/syscache.h"

/* The OID of relation eventstore.<name>; the extension must exist. */
Oid
EventstoreRelid(const char *name)
{
	Oid			relid = get_relname_relid(name,
										  get_namespace_oid(EVENTSTORE_SCHEMA, false));

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
	Oid			schema = get_namespace_oid(EVENTSTORE_SCHEMA, true);

	return OidIsValid(schema) ? get_relname_relid(name, schema) : InvalidOid;
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
