/*
 * utility_hook.c
 *		The extension's ProcessUtility hook: what it checks before a utility
 *		statement runs, and does after.
 */
#include "postgres.h"

#include "projections/projections.h"
#include "role_changes.h"
#include "tcop/utility.h"
#include "utility_hook.h"

static ProcessUtility_hook_type previous_utility_hook = NULL;

static void
EventstoreProcessUtility(PlannedStmt *pstmt, const char *queryString,
						 bool readOnlyTree, ProcessUtilityContext context,
						 ParamListInfo params, QueryEnvironment *queryEnv,
						 DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *statement = pstmt->utilityStmt;
	List	   *dropped;

	RefuseInOwnerCode(statement);
	dropped = RoleChangesBefore(statement);
	if (previous_utility_hook)
		previous_utility_hook(pstmt, queryString, readOnlyTree, context,
							  params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
	RoleChangesAfter(statement, dropped);
}

/* Install the hook; called from _PG_init at preload. */
void
InstallUtilityHook(void)
{
	previous_utility_hook = ProcessUtility_hook;
	ProcessUtility_hook = EventstoreProcessUtility;
}
