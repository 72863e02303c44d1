/*
 * common/catalog.c
 *		Finding the extension's own objects, and the names of the statuses
 *		its registry records.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "commands/extension.h"
#include "common/catalog.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

static const char *const status_names[] = {
	[PROJECTION_ACTIVE] = STATUS_ACTIVE,
	[PROJECTION_REBUILDING] = STATUS_REBUILDING,
	[PROJECTION_FAILED] = STATUS_FAILED,
	[PROJECTION_STOPPED] = STATUS_STOPPED
};

/* The status as the registry spells it. */
const char *
ProjectionStatusName(ProjectionStatus status)
{
	return status_names[status];
}

/* The status the registry spells `name`. */
ProjectionStatus
ParseProjectionStatus(const char *name)
{
	for (int i = 0; i < (int) lengthof(status_names); i++)
		if (strcmp(name, status_names[i]) == 0)
			return (ProjectionStatus) i;
	elog(ERROR, "unknown projection status \"%s\"", name);
	return PROJECTION_FAILED;	/* keep the compiler quiet */
}

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

	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(EventstoreRelid("projections")));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for " EVENTSTORE_SCHEMA ".projections");
	owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);
	return owner;
}

/*
 * Is pg_eventstore installed here at a version with a projection registry?
 * The workers serve databases that may have none, or an older one.
 */
bool
RegistryExists(void)
{
	Oid			schema = get_namespace_oid(EVENTSTORE_SCHEMA, true);

	return OidIsValid(get_extension_oid("pg_eventstore", true)) &&
		OidIsValid(schema) &&
		OidIsValid(get_relname_relid("projections", schema));
}
