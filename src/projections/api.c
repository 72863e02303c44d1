/*
 * projections/api.c
 *		The projections' SQL API: create_projection, drop_projection,
 *		rebuild_projection, run_projection, stop_projection,
 *		start_projection, retry_dead_letters and discard_dead_letters.
 *
 * These functions are not SECURITY DEFINER: the role calling
 * create_projection becomes the projection's owner, whose privileges its
 * handler and on_reset run with.  Each function does its bookkeeping as the
 * extension's owner, and only the projection's owner (or a member of that
 * role) may drop, rebuild, stop or start it, or deal with its dead letters.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/pg_proc.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "core/args.h"
#include "core/catalog.h"
#include "core/errors.h"
#include "core/kept_plans.h"
#include "core/role.h"
#include "miscadmin.h"
#include "projections/projections.h"
#include "read_models/read_models.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "parser/parser.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/syscache.h"

PG_FUNCTION_INFO_V1(eventstore_create_projection);
PG_FUNCTION_INFO_V1(eventstore_drop_projection);
PG_FUNCTION_INFO_V1(eventstore_rebuild_projection);
PG_FUNCTION_INFO_V1(eventstore_run_projection);
PG_FUNCTION_INFO_V1(eventstore_stop_projection);
PG_FUNCTION_INFO_V1(eventstore_start_projection);
PG_FUNCTION_INFO_V1(eventstore_retry_dead_letters);
PG_FUNCTION_INFO_V1(eventstore_discard_dead_letters);

static const char *const on_error_choices[] = {ON_ERROR_STOP, ON_ERROR_SKIP,
ON_ERROR_PARK};

/*
 * Connect to SPI and become the extension's owner for the bookkeeping;
 * returns who the caller was.  An error restores the caller on abort.
 */
RoleSwitch
EnterAsOwner(void)
{
	ConnectSpi();
	return BecomeRole(ExtensionOwner());
}

/* Back to the caller, disconnected from SPI. */
void
LeaveOwner(RoleSwitch caller)
{
	RestoreRole(caller);
	SPI_finish();
}

/* The name of the projection's owner role, saying so when it is missing. */
static const char *
OwnerName(Projection *p)
{
	return OidIsValid(p->owner) ? p->owner_name
		: psprintf("%s (missing)", p->owner_name);
}

/* Refuse a caller who is not the projection's owner or a member of it. */
void
RequireOwnership(RoleSwitch caller, Projection *p, const char *action)
{
	if (!has_privs_of_role(caller.caller, p->owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of projection \"%s\" to %s it",
						p->name, action),
				 errdetail("Projection \"%s\" version %d is owned by role %s.",
						   p->name, p->version, OwnerName(p)),
				 errhint("Ask its owner, or a member of that role, to do it.")));
}

/*
 * Check the handler: a function of one argument, eventstore.events or
 * eventstore.events[], returning void, that the caller may execute.
 * Returns whether it takes a batch, and sets *handler_owner to the role
 * owning the function.
 */
static bool
CheckHandler(Oid handler, Oid caller, Oid *handler_owner)
{
	Oid			rowtype = get_rel_type_id(EventstoreRelid("events"));
	Oid			arraytype = get_array_type(rowtype);
	HeapTuple	tuple;
	Form_pg_proc proc;
	bool		batch;
	bool		ok;

	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(handler));
	if (!HeapTupleIsValid(tuple))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("handler function %u does not exist", handler),
				 errhint("Create the handler function first.")));
	proc = (Form_pg_proc) GETSTRUCT(tuple);
	batch = proc->pronargs == 1 && proc->proargtypes.values[0] == arraytype;
	ok = proc->pronargs == 1 && proc->prorettype == VOIDOID &&
		proc->prokind == PROKIND_FUNCTION && !proc->proretset &&
		(batch || proc->proargtypes.values[0] == rowtype);
	*handler_owner = proc->proowner;
	ReleaseSysCache(tuple);
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("handler %s must take one eventstore.events or eventstore.events[] and return void",
						format_procedure(handler)),
				 errhint("Declare it as (event eventstore.events) RETURNS void, or (events eventstore.events[]) RETURNS void for batches.")));
	if (!RoleMayExecute(caller, handler))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for handler %s", format_procedure(handler)),
				 errdetail("The handler runs as the role creating the projection, %s.",
						   GetUserNameFromId(caller, false)),
				 errhint("Grant EXECUTE on the handler to that role.")));
	return batch;
}

/*
 * Parse on_reset now rather than first at a rebuild: SQL statements, none
 * of them transaction control (it runs inside the rebuild's transaction).
 */
/* SQL of the projection's owner checked at creation: on_reset or backfill */
typedef struct OwnerSql
{
	const char *sql;
	const char *argname;
} OwnerSql;

static void
OwnerSqlErrorContext(void *arg)
{
	OwnerSql   *owner_sql = (OwnerSql *) arg;
	int			position = geterrposition();

	/* a syntax error points into the argument, not into the caller's query */
	if (position > 0)
	{
		errposition(0);
		internalerrposition(position);
		internalerrquery(owner_sql->sql);
	}
	errcontext("%s of the projection", owner_sql->argname);
}

/*
 * Parse on_reset (SQL statements) or backfill (one statement): they run
 * inside the transaction that rebuilds or builds the projection.
 */
static void
CheckOwnerSql(const char *sql, const char *argname, bool one_statement)
{
	OwnerSql	owner_sql = {sql, argname};
	ErrorContextCallback context = {error_context_stack, OwnerSqlErrorContext,
	(void *) &owner_sql};
	List	   *statements;
	ListCell   *lc;

	error_context_stack = &context;
	statements = raw_parser(sql, RAW_PARSE_DEFAULT);
	error_context_stack = context.previous;

	if (statements == NIL || (one_statement && list_length(statements) != 1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg(one_statement ? "%s must be NULL or one SQL statement"
						: "%s must be NULL or SQL statements", argname),
				 one_statement
				 ? errhint("For example 'INSERT INTO my_schema.totals SELECT stream_id, count(*) FROM eventstore.backfill_events() GROUP BY stream_id', or NULL to build with the handler.")
				 : errhint("For example 'TRUNCATE my_schema.my_table', or NULL for nothing to reset.")));
	foreach(lc, statements)
	{
		Node	   *statement = lfirst_node(RawStmt, lc)->stmt;

		if (IsA(statement, TransactionStmt))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TRANSACTION_TERMINATION),
					 errmsg("%s may not control transactions", argname),
					 errdetail("It runs inside the transaction that builds or rebuilds the projection."),
					 errhint("Leave out BEGIN, COMMIT, ROLLBACK and SAVEPOINT.")));
	}
}

/*
 * An inline projection is applied by appends, which a subscriber of the log
 * does not have: its events arrive by replication.
 */
static void
RefuseInlineOnSubscriber(void)
{
	Relation	events = table_open(EventstoreRelid("events"), AccessShareLock);
	bool		subscriber = SubscriberModeOn(events);

	table_close(events, NoLock);
	if (subscriber)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("an inline projection cannot be created on a subscriber of the event log"),
				 errdetail("Inline projections are applied by appends; a subscriber's events arrive by replication."),
				 errhint("Create it with mode => 'async': the worker applies replicated events.")));
}

/* The event_types argument: NULL, or a non-empty array without NULLs. */
static Datum
CheckEventTypes(FunctionCallInfo fcinfo, int argno, char *null_flag)
{
	ArrayType  *types;

	*null_flag = PG_ARGISNULL(argno) ? 'n' : ' ';
	if (PG_ARGISNULL(argno))
		return (Datum) 0;
	types = PG_GETARG_ARRAYTYPE_P(argno);
	if (ArrayGetNItems(ARR_NDIM(types), ARR_DIMS(types)) == 0 ||
		array_contains_nulls(types) || ARR_NDIM(types) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event_types must be NULL or a one-dimensional array of event types without NULLs"),
				 errhint("Pass NULL to take every event type, or for example ARRAY['ItemAdded', 'ItemRemoved'].")));
	return PointerGetDatum(types);
}

/* The version argument: NULL when allowed, else at least 1. */
int32
GetVersion(FunctionCallInfo fcinfo, int argno, bool null_ok)
{
	int32		version;

	if (PG_ARGISNULL(argno))
	{
		if (!null_ok)
			RequireArgNotNull(fcinfo, argno, "version", "Pass 1 for a first version.");
		return 0;
	}
	version = PG_GETARG_INT32(argno);
	RequireAtLeastOne(version, "version", "Number a projection's versions from 1.");
	return version;
}

/*
 * SQL: create_projection(name, handler, event_types, mode, version,
 *						  on_reset, on_error, promote, upcast, backfill,
 *						  parallel)
 * Over an empty log the projection starts active; otherwise it starts
 * rebuilding, to be backfilled from the start.
 */
Datum
eventstore_create_projection(PG_FUNCTION_ARGS)
{
	NewProjection np;
	char		types_null;
	RoleSwitch	caller;
	char	   *unsafe_path;
	const char *name_owner;
	const char *promote;
	int			nestlevel;

	/*
	 * The creator's search_path is captured before the API's own is set for
	 * the rest of the call (this function has no SET clause for that
	 * reason); the other settings are the session's as they are.
	 */
	np.settings = CaptureCreatorSettings(namespace_search_path);
	nestlevel = PinApiSearchPath();

	np.name = RequireName(fcinfo, 0, "name");
	np.event_types = CheckEventTypes(fcinfo, 2, &types_null);
	np.mode = RequireChoice(fcinfo, 3, "mode", MODE_ASYNC, MODE_INLINE);
	if (strcmp(np.mode, MODE_INLINE) == 0)
		RefuseInlineOnSubscriber();
	np.version = GetVersion(fcinfo, 4, false);
	np.on_reset = PG_ARGISNULL(5) ? NULL : PG_GETARG_TEXT_PP(5);
	if (np.on_reset != NULL)
		CheckOwnerSql(text_to_cstring(np.on_reset), "on_reset", false);
	np.on_error = RequireOneOf(fcinfo, 6, "on_error", on_error_choices,
							   lengthof(on_error_choices));
	/* promote: a 0.2.0 schema's create_projection has no such argument */
	promote = PG_NARGS() > 7
		? RequireChoice(fcinfo, 7, "promote", PROMOTE_MANUAL, PROMOTE_AUTO)
		: PROMOTE_MANUAL;
	/* upcast: nor has a 0.2.0 schema's (whose log has no schemas either) */
	if (PG_NARGS() > 8)
		RequireArgNotNull(fcinfo, 8, "upcast",
						  "Pass true for handlers to receive events upcast to their type's latest schema version, false for them as stored.");
	np.upcast = PG_NARGS() > 8 ? PG_GETARG_BOOL(8) : true;
	/* backfill and parallel: nor has a 0.2.0 schema's */
	np.backfill = PG_NARGS() > 9 && !PG_ARGISNULL(9) ? PG_GETARG_TEXT_PP(9) : NULL;
	if (np.backfill != NULL)
		CheckOwnerSql(text_to_cstring(np.backfill), "backfill", true);
	np.parallel = 1;
	if (PG_NARGS() > 10)
	{
		RequireArgNotNull(fcinfo, 10, "parallel",
						  "Pass 1 for replays in one piece, or the number of stream-hash partitions to apply concurrently.");
		np.parallel = PG_GETARG_INT32(10);
		if (np.parallel < 1 || np.parallel > MAX_REPLAY_PARTITIONS)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("parallel must be between 1 and %d", MAX_REPLAY_PARTITIONS),
					 errdetail("parallel is the number of stream-hash partitions a replay is split into."),
					 errhint("Pass 1 for replays in one piece, or about the number of workers that can apply it at once.")));
	}
	RequireArgNotNull(fcinfo, 1, "handler",
					  "Pass a function such as 'my_schema.apply_event'::regproc.");
	np.handler = PG_GETARG_OID(1);
	caller = EnterAsOwner();
	np.owner = caller.caller;
	np.batch_handler = CheckHandler(np.handler, np.owner, &np.handler_owner);
	if ((unsafe_path = UnsafeHandlerSearchPath(np.handler)) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("handler %s sets search_path to \"%s\", which does not end with pg_temp",
						format_procedure(np.handler), unsafe_path),
				 errdetail("A temporary schema searched before the end lets any session that applies the projection put its own objects in the handler's way."),
				 errhint("Remove the handler's SET search_path (it runs with the search_path of the session that creates the projection), or end it with pg_temp.")));

	/*
	 * Wait for appends in flight (they hold RowExclusiveLock on the
	 * registry), so whether the log is empty is judged after them; appends
	 * that come later see the projection.
	 */
	LockRelationOid(EventstoreRelid("projections"), ShareRowExclusiveLock);
	name_owner = OwnerOfProjectionName(np.name);
	if (name_owner != NULL &&
		!has_privs_of_role(np.owner, get_role_oid(name_owner, true)))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("projection \"%s\" belongs to role %s",
						text_to_cstring(np.name), name_owner),
				 errdetail("Every version of a projection belongs to the owner of its name."),
				 errhint("Create it as a member of role %s, or choose another name.",
						 name_owner)));
	if (FindProjection(np.name, np.version) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_ES_PROJECTION_EXISTS),
				 errmsg("projection \"%s\" version %d already exists",
						text_to_cstring(np.name), np.version),
				 errhint("Create a new version for a changed projection, or drop this one first.")));
	np.replay_until = LastCommittedXid();
	InsertProjection(&np);
	SaveReadModelPromote(np.name, np.version, promote);
	LeaveOwner(caller);
	/* the pinned search_path ends with the call, as a SET clause's would */
	AtEOXact_GUC(true, nestlevel);
	PG_RETURN_VOID();
}

/* The projections an API call acts on: version NULL means every one. */
static List *
TargetProjections(FunctionCallInfo fcinfo, bool latest_when_null)
{
	text	   *name = RequireName(fcinfo, 0, "name");
	int32		version = GetVersion(fcinfo, 1, true);

	return LoadProjections(name, version == 0 && !latest_when_null, version,
						   version == 0 && latest_when_null);
}

/*
 * Take a projection away from runners and inline applications: wait for
 * the one running it and for the appends applying it in flight.  Returns
 * its registry row as it is now, NULL when it was dropped meanwhile.
 */
static Projection *
TakeOver(Projection *p)
{
	LockProjection(p->id, PROJECTION_RUNNER_LOCK, ExclusiveLock, true);
	LockProjection(p->id, PROJECTION_APPLY_LOCK, ExclusiveLock, true);
	return ReloadProjection(p->id);
}

/* SQL: drop_projection(name, version): NULL drops every version. */
Datum
eventstore_drop_projection(PG_FUNCTION_ARGS)
{
	RoleSwitch	caller = EnterAsOwner();
	List	   *targets = TargetProjections(fcinfo, false);
	ListCell   *lc;

	foreach(lc, targets)
	{
		Projection *p;

		/* refused before taking locks that would hold up appends */
		RequireOwnership(caller, (Projection *) lfirst(lc), "drop");
		p = TakeOver((Projection *) lfirst(lc));
		if (p != NULL)
			DeleteProjection(p->id);
	}
	LeaveOwner(caller);
	PG_RETURN_VOID();
}

/*
 * SQL: rebuild_projection(name, version): NULL is the highest version.
 * Marks the projection rebuilding with its checkpoint at the start and runs
 * on_reset, all under its exclusive locks; the replay itself is done by
 * run_projection or the worker.
 */
Datum
eventstore_rebuild_projection(PG_FUNCTION_ARGS)
{
	/* include_archive: only the three-argument form has it */
	bool		include_archive = false;
	RoleSwitch	caller;
	Projection *target;
	Projection *p;

	if (PG_NARGS() > 2)
	{
		RequireArgNotNull(fcinfo, 2, "include_archive",
						  "Pass true to replay the archived events too, false for the live log only.");
		include_archive = PG_GETARG_BOOL(2);
	}
	caller = EnterAsOwner();
	target = (Projection *) linitial(TargetProjections(fcinfo, true));
	RequireOwnership(caller, target, "rebuild");
	if (include_archive && target->backfill != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("projection \"%s\" has a backfill, which does not read the archive",
						target->name),
				 errdetail("backfill_events() returns the events of the live log only."),
				 errhint("Rebuild it without include_archive, or build a version without a backfill to include the archive.")));
	p = TakeOver(target);
	if (p == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_ES_UNKNOWN_PROJECTION),
				 errmsg("projection \"%s\" was dropped while waiting to rebuild it",
						target->name)));
	ResetProjectionForRebuild(p, LastCommittedXid());
	SetReplayArchive(p, include_archive);
	ReturnDeadLettersToReplay(p, GetUserNameFromId(caller.caller, false));
	RunOnReset(p);
	LeaveOwner(caller);
	PG_RETURN_VOID();
}

/*
 * SQL: run_projection(name, version, max_events): apply what the projection
 * (every version when NULL) has not applied yet, up to max_events events
 * each; returns the events applied.  All of it commits with the caller.
 */
Datum
eventstore_run_projection(PG_FUNCTION_ARGS)
{
	RoleSwitch	caller = EnterAsOwner();
	List	   *targets = TargetProjections(fcinfo, false);
	int64		max_events = PG_ARGISNULL(2) ? 0 : PG_GETARG_INT64(2);
	int64		applied = 0;
	ListCell   *lc;

	if (!PG_ARGISNULL(2))
		RequireAtLeastOne(max_events, "max_events", "Pass NULL to apply everything there is.");
	foreach(lc, targets)
	{
		bool		busy;
		bool		exhausted;

		applied += RunProjection((Projection *) lfirst(lc), max_events, true,
								 0, &busy, &exhausted);
	}
	LeaveOwner(caller);
	PG_RETURN_INT64(applied);
}

/* Set the status of every target projection the caller owns. */
static void
ChangeStatus(FunctionCallInfo fcinfo, RoleSwitch caller, bool stop)
{
	List	   *targets = TargetProjections(fcinfo, false);
	ListCell   *lc;

	foreach(lc, targets)
	{
		Projection *p;

		RequireOwnership(caller, (Projection *) lfirst(lc), stop ? "stop" : "start");
		p = TakeOver((Projection *) lfirst(lc));
		if (p == NULL)
			continue;
		SetProjectionStatus(p, stop ? PROJECTION_STOPPED
							: p->caught_up ? PROJECTION_ACTIVE
							: PROJECTION_REBUILDING);
	}
}

/* SQL: stop_projection(name, version): NULL stops every version. */
Datum
eventstore_stop_projection(PG_FUNCTION_ARGS)
{
	RoleSwitch	caller = EnterAsOwner();

	ChangeStatus(fcinfo, caller, true);
	LeaveOwner(caller);
	PG_RETURN_VOID();
}

/*
 * SQL: start_projection(name, version): resume stopped or failed versions
 * (every version when NULL) from their checkpoints; a failed event is tried
 * again.
 */
Datum
eventstore_start_projection(PG_FUNCTION_ARGS)
{
	RoleSwitch	caller = EnterAsOwner();

	ChangeStatus(fcinfo, caller, false);
	LeaveOwner(caller);
	PG_RETURN_VOID();
}

/*
 * retry_dead_letters and discard_dead_letters: resolve the unresolved dead
 * letters of every target projection the caller owns (of one stream when
 * stream_id is given); returns how many were resolved.
 */
static int64
ResolveTargetsDeadLetters(FunctionCallInfo fcinfo, bool retry)
{
	RoleSwitch	caller = EnterAsOwner();
	List	   *targets = TargetProjections(fcinfo, false);
	text	   *stream = PG_ARGISNULL(2) ? NULL : RequireStreamId(fcinfo, 2);
	const char *by = GetUserNameFromId(caller.caller, false);
	int64		resolved = 0;
	ListCell   *lc;

	/* every target is checked before any is touched */
	foreach(lc, targets)
		RequireOwnership(caller, (Projection *) lfirst(lc),
						 retry ? "retry the dead letters of" : "discard the dead letters of");
	foreach(lc, targets)
		resolved += ResolveDeadLetters((Projection *) lfirst(lc), stream, retry, by);
	LeaveOwner(caller);
	return resolved;
}

/*
 * SQL: retry_dead_letters(name, version, stream_id): apply the unresolved
 * dead letters (every version when NULL, every stream when NULL) again, in
 * log order, and under on_error = 'park' the events parked behind them.
 */
Datum
eventstore_retry_dead_letters(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(ResolveTargetsDeadLetters(fcinfo, true));
}

/*
 * SQL: discard_dead_letters(name, version, stream_id): give the unresolved
 * dead letters up, and apply the events they parked.
 */
Datum
eventstore_discard_dead_letters(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(ResolveTargetsDeadLetters(fcinfo, false));
}
