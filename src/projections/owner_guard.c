/*
 * projections/owner_guard.c
 *		What a projection's code may not do to the session that runs it.
 *
 * Handlers and on_reset run inside someone else's session: an appender's,
 * a runner's, a worker's.  PostgreSQL's security-restricted operation
 * already keeps them from SET ROLE, temporary objects, LISTEN, DISCARD and
 * the like, and their settings end with the call (role.c).  Of what it
 * leaves them, these statements are refused here while the owner's code
 * runs: SET CONSTRAINTS (which would change the rest of the appender's
 * transaction), and prepared statements, holdable cursors and LOAD, which
 * outlive the call.  (Built-in functions pass no hook: the session's
 * processor claims, which pg_advisory_unlock_all() drops, are checked
 * after each call instead, see KeepClaimsThroughOwnerCode.)
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "nodes/parsenodes.h"
#include "projections/projections.h"
#include "utils/memutils.h"

/* How deep in owner code this backend is: handlers may append. */
static int	owner_code_depth = 0;

/* The depth at each open subtransaction's start, to go back to on abort. */
static List *depth_at_subxact = NIL;

/* An error in owner code leaves it without LeftOwnerCode. */
static void
OwnerCodeXactCallback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_PREPARE)
	{
		owner_code_depth = 0;
		depth_at_subxact = NIL;		/* in TopTransactionContext: gone */
	}
}

static void
OwnerCodeSubXactCallback(SubXactEvent event, SubTransactionId mySubid,
						 SubTransactionId parentSubid, void *arg)
{
	MemoryContext old;

	switch (event)
	{
		case SUBXACT_EVENT_START_SUB:
			old = MemoryContextSwitchTo(TopTransactionContext);
			depth_at_subxact = lcons_int(owner_code_depth, depth_at_subxact);
			MemoryContextSwitchTo(old);
			break;
		case SUBXACT_EVENT_ABORT_SUB:
			if (depth_at_subxact != NIL)
				owner_code_depth = linitial_int(depth_at_subxact);
			/* FALLTHROUGH */
		case SUBXACT_EVENT_COMMIT_SUB:
			if (depth_at_subxact != NIL)
				depth_at_subxact = list_delete_first(depth_at_subxact);
			break;
		default:
			break;
	}
}

/* The owner's code starts running (a handler call, on_reset). */
void
EnteredOwnerCode(void)
{
	static bool callbacks_registered = false;

	if (!callbacks_registered)
	{
		RegisterXactCallback(OwnerCodeXactCallback, NULL);
		RegisterSubXactCallback(OwnerCodeSubXactCallback, NULL);
		callbacks_registered = true;
	}
	owner_code_depth++;
}

/* ... and returned normally. */
void
LeftOwnerCode(void)
{
	Assert(owner_code_depth > 0);
	owner_code_depth--;
}

/* The name of a utility statement owner code may not run, or NULL. */
static const char *
RefusedInOwnerCode(Node *statement)
{
	switch (nodeTag(statement))
	{
		case T_ConstraintsSetStmt:
			return "SET CONSTRAINTS";
		case T_PrepareStmt:
			return "PREPARE";
		case T_DeallocateStmt:
			return "DEALLOCATE";
		case T_LoadStmt:
			return "LOAD";
		case T_DeclareCursorStmt:
			if (((DeclareCursorStmt *) statement)->options & CURSOR_OPT_HOLD)
				return "DECLARE CURSOR WITH HOLD";
			return NULL;
		default:
			return NULL;
	}
}

/*
 * Refuse a utility statement that owner code may not run, when it runs
 * (from the extension's ProcessUtility hook, utility_hook.c).
 */
void
RefuseInOwnerCode(Node *statement)
{
	const char *refused;

	if (owner_code_depth > 0 && (refused = RefusedInOwnerCode(statement)) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("a projection's handler may not run %s", refused),
				 errdetail("It would change the session or transaction applying the projection beyond the handler's call.")));
}
