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
 * outlive the call; and queries parsed in owner code may not call the
 * session-level advisory lock functions.  (A plan parsed before, outside,
 * is not seen again: the session's processor claims, which
 * pg_advisory_unlock_all() drops, are also checked after each call, see
 * KeepClaimsThroughOwnerCode.)
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "nodes/nodeFuncs.h"
#include "nodes/parsenodes.h"
#include "parser/analyze.h"
#include "projections/projections.h"
#include "utils/fmgroids.h"
#include "utils/memutils.h"

/* How deep in owner code this backend is: handlers may append. */
static int	owner_code_depth = 0;

/*
 * The subtransactions begun inside owner code and the depth at their start,
 * innermost first, to go back to on abort; one begun outside, which is not
 * recorded (the usual case: no work for sessions that never run owner
 * code), goes back to depth 0.
 */
static List *subxact_ids = NIL;
static List *depth_at_subxact = NIL;

static post_parse_analyze_hook_type previous_parse_hook = NULL;

/* An error in owner code leaves it without LeftOwnerCode. */
static void
OwnerCodeXactCallback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_PREPARE)
	{
		owner_code_depth = 0;
		/* in TopTransactionContext: gone */
		subxact_ids = NIL;
		depth_at_subxact = NIL;
	}
}

static void
OwnerCodeSubXactCallback(SubXactEvent event, SubTransactionId mySubid,
						 SubTransactionId parentSubid, void *arg)
{
	MemoryContext old;

	bool		recorded = subxact_ids != NIL &&
		(SubTransactionId) linitial_int(subxact_ids) == mySubid;

	switch (event)
	{
		case SUBXACT_EVENT_START_SUB:
			if (owner_code_depth == 0)
				break;
			old = MemoryContextSwitchTo(TopTransactionContext);
			subxact_ids = lcons_int((int) mySubid, subxact_ids);
			depth_at_subxact = lcons_int(owner_code_depth, depth_at_subxact);
			MemoryContextSwitchTo(old);
			break;
		case SUBXACT_EVENT_ABORT_SUB:
			owner_code_depth = recorded ? linitial_int(depth_at_subxact) : 0;
			/* FALLTHROUGH */
		case SUBXACT_EVENT_COMMIT_SUB:
			if (recorded)
			{
				subxact_ids = list_delete_first(subxact_ids);
				depth_at_subxact = list_delete_first(depth_at_subxact);
			}
			break;
		default:
			break;
	}
}

/* The owner's code starts running (a handler call, on_reset). */
void
EnteredOwnerCode(void)
{
	owner_code_depth++;
}

/* ... and returned normally. */
void
LeftOwnerCode(void)
{
	Assert(owner_code_depth > 0);
	owner_code_depth--;
}

/* The session-level advisory lock functions. */
static bool
IsSessionAdvisoryLockFunction(Oid fn_oid)
{
	switch (fn_oid)
	{
		case F_PG_ADVISORY_LOCK_INT8:
		case F_PG_ADVISORY_LOCK_SHARED_INT8:
		case F_PG_TRY_ADVISORY_LOCK_INT8:
		case F_PG_TRY_ADVISORY_LOCK_SHARED_INT8:
		case F_PG_ADVISORY_UNLOCK_INT8:
		case F_PG_ADVISORY_UNLOCK_SHARED_INT8:
		case F_PG_ADVISORY_LOCK_INT4_INT4:
		case F_PG_ADVISORY_LOCK_SHARED_INT4_INT4:
		case F_PG_TRY_ADVISORY_LOCK_INT4_INT4:
		case F_PG_TRY_ADVISORY_LOCK_SHARED_INT4_INT4:
		case F_PG_ADVISORY_UNLOCK_INT4_INT4:
		case F_PG_ADVISORY_UNLOCK_SHARED_INT4_INT4:
		case F_PG_ADVISORY_UNLOCK_ALL:
			return true;
		default:
			return false;
	}
}

static bool
CallsSessionAdvisoryLocks(Node *node, void *context)
{
	if (node == NULL)
		return false;
	if (IsA(node, FuncExpr) &&
		IsSessionAdvisoryLockFunction(((FuncExpr *) node)->funcid))
		return true;
	if (IsA(node, Query))
		return query_tree_walker((Query *) node, CallsSessionAdvisoryLocks,
								 context, 0);
	return expression_tree_walker(node, CallsSessionAdvisoryLocks, context);
}

/*
 * post_parse_analyze_hook: a query parsed while owner code runs (every
 * query of a handler, plpgsql's simple expressions included, is parsed
 * there) may not call the session-level advisory lock functions: they
 * would outlive the call, or drop the session's processor claims.  Built-in
 * functions pass no function-manager hook, so this is where they are seen.
 */
static void
OwnerGuardParseHook(ParseState *pstate, Query *query, JumbleState *jstate)
{
	if (previous_parse_hook)
		previous_parse_hook(pstate, query, jstate);
	if (owner_code_depth > 0 &&
		CallsSessionAdvisoryLocks((Node *) query, NULL))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("a projection's handler may not take or release session-level advisory locks"),
				 errdetail("They belong to the session applying the projection, and would outlive the handler's call."),
				 errhint("Use pg_advisory_xact_lock, which ends with the transaction.")));
}

/* Install the parse hook and the callbacks; from _PG_init at preload. */
void
InstallOwnerGuard(void)
{
	previous_parse_hook = post_parse_analyze_hook;
	post_parse_analyze_hook = OwnerGuardParseHook;
	/* from the start: a subtransaction begun before owner code counts */
	RegisterXactCallback(OwnerCodeXactCallback, NULL);
	RegisterSubXactCallback(OwnerCodeSubXactCallback, NULL);
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
