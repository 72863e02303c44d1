/*
 * role_changes.c
 *		Projections and processors follow their owner role through DROP
 *		ROLE, REASSIGN OWNED and DROP OWNED, as objects owned by a role do.
 *
 * The registry names each projection's owner, and its handler's, by role
 * name, and eventstore.checkpoints each processor's.  PostgreSQL keeps no
 * dependency of a role on a row of a table, so a ProcessUtility hook does
 * what shared dependencies do for catalog objects, in the current database
 * (where REASSIGN OWNED and DROP OWNED act too): DROP ROLE of a role that
 * owns projections or processors here is refused; REASSIGN OWNED gives them
 * (and the handlers it reassigns) to the new role; DROP OWNED drops them.
 * A role dropped from another database, where they are not seen, leaves its
 * projections failing with "the owner role ... does not exist" (never run
 * as anyone else) and its processors to superusers.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "consumers/consumers.h"
#include "core/catalog.h"
#include "core/kept_plans.h"
#include "core/role.h"
#include "nodes/parsenodes.h"
#include "projections/projections.h"
#include "role_changes.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "miscadmin.h"


/* The registry of this database in 0.3.0's form (owners by name), or none. */
static bool
NamedRegistryExists(void)
{
	return RegistryExists() && !RegistryKeepsOids();
}

/* The names a list of RoleSpec gives, skipping roles that do not exist. */
static List *
RoleNames(List *roles)
{
	List	   *names = NIL;
	ListCell   *lc;

	foreach(lc, roles)
	{
		/* DROP ROLE IF EXISTS of a missing role: PostgreSQL's business */
		Oid			role = get_rolespec_oid(lfirst(lc), true);

		if (OidIsValid(role))
			names = lappend(names, GetUserNameFromId(role, false));
	}
	return names;
}

/*
 * Refuse DROP ROLE of roles (their names) that own projections or
 * processors in this database: checked once PostgreSQL dropped them, in the
 * same transaction, so that whoever may not drop them learns nothing here.
 * The caller is connected to SPI and is the extension's owner.
 */
static void
RefuseDropOfOwners(List *names)
{
	ListCell   *lc;

	foreach(lc, names)
	{
		const char *name = lfirst(lc);
		char	   *owned = ProjectionsOwnedBy(name);

		if (owned == NULL)
			owned = ProcessorsOwnedBy(name);
		if (owned != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
					 errmsg("role \"%s\" cannot be dropped because it owns projections or processors", name),
					 errdetail("owner of %s", owned),
					 errhint("REASSIGN OWNED BY %s TO another role, or DROP OWNED BY %s, gives them away or drops them, as for its other objects.",
							 quote_identifier(name), quote_identifier(name))));
	}
}

/*
 * After REASSIGN OWNED and DROP OWNED, which PostgreSQL allowed: the same
 * for the roles' projections and processors (role `to`, or NULL to drop
 * them).  The caller is connected to SPI and is the extension's owner.
 */
static void
FollowOwnedRoles(List *roles, RoleSpec *to)
{
	List	   *names = RoleNames(roles);
	ListCell   *lc;

	foreach(lc, names)
	{
		if (to != NULL)
		{
			ReassignProjections(lfirst(lc), get_rolespec_name(to));
			ReassignProcessors(lfirst(lc), get_rolespec_name(to));
		}
		else
		{
			DropProjectionsOwnedBy(lfirst(lc));
			DropProcessorsOwnedBy(lfirst(lc));
		}
	}
}

/*
 * Before and after a utility statement runs (utility_hook.c): refuse DROP
 * ROLE of an owner; follow REASSIGN OWNED and DROP OWNED once PostgreSQL
 * allowed them (the same privileges apply).
 */
List *
RoleChangesBefore(Node *statement)
{
	/* the names of the roles to drop, while they exist */
	if (IsA(statement, DropRoleStmt))
		return RoleNames(((DropRoleStmt *) statement)->roles);
	return NIL;
}

void
RoleChangesAfter(Node *statement, List *dropped)
{
	int			nestlevel;
	RoleSwitch	caller;

	if (!(IsA(statement, DropRoleStmt) || IsA(statement, ReassignOwnedStmt) ||
		  IsA(statement, DropOwnedStmt)) ||
		!NamedRegistryExists())
		return;

	/*
	 * The statement runs with the caller's search_path: not our queries,
	 * which run as the extension's owner.
	 */
	nestlevel = PinApiSearchPath();
	ConnectSpi();
	caller = BecomeRole(ExtensionOwner());
	if (IsA(statement, DropRoleStmt))
		RefuseDropOfOwners(dropped);
	else if (IsA(statement, ReassignOwnedStmt))
		FollowOwnedRoles(((ReassignOwnedStmt *) statement)->roles,
						 ((ReassignOwnedStmt *) statement)->newrole);
	else
		FollowOwnedRoles(((DropOwnedStmt *) statement)->roles, NULL);
	RestoreRole(caller);
	SPI_finish();
	AtEOXact_GUC(true, nestlevel);
}
