/*
 * core/role.c
 *		Running as another role for a while.
 *
 * Either way the switch is a local user id change (SECURITY_LOCAL_USERID_
 * CHANGE): SET ROLE is refused meanwhile, and an error restores the
 * caller's user id and security context on abort.
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "core/catalog.h"
#include "core/role.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/guc.h"

/* Become `role` for bookkeeping: the caller's privileges no longer count. */
RoleSwitch
BecomeRole(Oid role)
{
	RoleSwitch	saved;

	GetUserIdAndSecContext(&saved.caller, &saved.context);
	saved.nestlevel = 0;
	SetUserIdAndSecContext(role, saved.context | SECURITY_LOCAL_USERID_CHANGE);
	return saved;
}

/*
 * Enter an owner's context for running its code (a handler, on_reset): its
 * user id, a security-restricted operation (as maintenance commands run a
 * table owner's code), and a GUC nesting level with the API's search_path,
 * so that nothing the code SETs outlives it (RestoreRole undoes every
 * setting made meanwhile, as REFRESH MATERIALIZED VIEW does).
 */
RoleSwitch
EnterOwnerCode(Oid owner)
{
	RoleSwitch	saved;

	GetUserIdAndSecContext(&saved.caller, &saved.context);
	SetUserIdAndSecContext(owner, saved.context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	saved.nestlevel = NewGUCNestLevel();
	/* the API's functions and the worker have it already: the usual case */
	if (strcmp(namespace_search_path, API_SEARCH_PATH) != 0)
		(void) set_config_option("search_path", API_SEARCH_PATH,
								 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
								 true, 0, false);
	return saved;
}

/* Back to who ran before the switch, ending owner code's settings. */
void
RestoreRole(RoleSwitch saved)
{
	if (saved.nestlevel > 0)
		AtEOXact_GUC(false, saved.nestlevel);
	SetUserIdAndSecContext(saved.caller, saved.context);
}

/*
 * Set the API's search_path until AtEOXact_GUC(true, the level returned),
 * as a SET clause would, for code that must first read its caller's or
 * runs inside another statement (the utility hook).
 */
int
PinApiSearchPath(void)
{
	int			nestlevel = NewGUCNestLevel();

	(void) set_config_option("search_path", API_SEARCH_PATH, PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	return nestlevel;
}

/* May `role` execute `function`? */
bool
RoleMayExecute(Oid role, Oid function)
{
#if PG_VERSION_NUM >= 160000
	return object_aclcheck(ProcedureRelationId, function, role, ACL_EXECUTE) == ACLCHECK_OK;
#else
	return pg_proc_aclcheck(function, role, ACL_EXECUTE) == ACLCHECK_OK;
#endif
}
