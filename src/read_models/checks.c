/*
 * read_models/checks.c
 *		The checks of a projection version: add_projection_check,
 *		drop_projection_check and check_projection, and running them for a
 *		promotion.
 *
 * A check is a query returning the rows that fail (the convention of dbt
 * tests); it passes when it returns none.  Checks run as the projection's
 * owner with the settings captured from its creator, exactly as its handler
 * does, in a security-restricted operation and read-only, each in a
 * subtransaction of its own: one that raises an error has failed, with the
 * error, and the others still run.  All of a run's checks read one
 * snapshot, taken once the projection's runner lock is held (no batch of
 * the version runs meanwhile) and the version is active at the head.  The
 * failing rows are counted through a cursor, a page at a time, and only the
 * first CHECK_SAMPLE_ROWS of them are turned into jsonb.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "consumers/consumers.h"
#include "core/args.h"
#include "core/catalog.h"
#include "core/errors.h"
#include "core/kept_plans.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "parser/parser.h"
#include "read_models/read_models.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/plancache.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"

PG_FUNCTION_INFO_V1(eventstore_add_projection_check);
PG_FUNCTION_INFO_V1(eventstore_drop_projection_check);
PG_FUNCTION_INFO_V1(eventstore_check_projection);

/* Failing rows fetched from a check's cursor at a time. */
#define CHECK_FETCH_ROWS 1000

static SPIPlanPtr insert_check_plan;
static SPIPlanPtr delete_check_plan;
static SPIPlanPtr load_checks_plan;

/* Work to do as the projection's owner, for TryWorkKeeping. */
typedef struct OwnerWorkCall
{
	ProjectionWork work;
	void	   *arg;
} OwnerWorkCall;

static void
AsOwner(Projection *p, void *arg)
{
	OwnerWorkCall *call = (OwnerWorkCall *) arg;
	RoleSwitch	saved = EnterProjectionOwner(p);

	call->work(p, call->arg);
	LeaveProjectionOwner(saved);
}

/*
 * Do `work` in a subtransaction, as the projection's owner with its captured
 * settings when as_owner; returns NULL when it succeeded, else its error,
 * with whatever it did rolled back.  When !keep, what it did is rolled back
 * even when it succeeded (a check: its results are copied out into the
 * caller's memory first).  A cancel (a statement timeout too) or a shutdown
 * is raised on, unless cancels_fail: the runner's automatic promotion takes
 * a check cancelled by a statement timeout for a failed one rather than
 * roll back the batch and meet the timeout again at the next turn
 * (TrySubtransaction does the rest).  The caller is connected to SPI.
 */
static ErrorData *
TryWorkKeeping(Projection *p, ProjectionWork work, void *arg, bool as_owner,
			   bool cancels_fail, bool keep)
{
	OwnerWorkCall call = {work, arg};
	ErrorData  *error = as_owner
		? TrySubtransaction(p, AsOwner, &call, keep)
		: TrySubtransaction(p, work, arg, keep);

	if (error != NULL &&
		ERRCODE_TO_CATEGORY(error->sqlerrcode) == ERRCODE_OPERATOR_INTERVENTION &&
		!(cancels_fail && error->sqlerrcode == ERRCODE_QUERY_CANCELED))
		ReThrowError(error);
	return error;
}

/* TryWorkKeeping that keeps what the work did when it succeeded. */
ErrorData *
TryWork(Projection *p, ProjectionWork work, void *arg, bool as_owner,
		bool cancels_fail)
{
	return TryWorkKeeping(p, work, arg, as_owner, cancels_fail, true);
}

/*
 * Take the projection's runner lock, waiting for a batch in flight, and
 * return its registry row as it is then, which must be active with its
 * replay from the start done: the version has reached the head, and no
 * batch of it runs until this transaction ends.
 */
Projection *
ProjectionAtHead(Projection *p)
{
	Projection *now;

	LockProjection(p->id, PROJECTION_RUNNER_LOCK, ExclusiveLock, true);
	now = ReloadProjection(p->id);
	if (now == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_ES_UNKNOWN_PROJECTION),
				 errmsg("projection \"%s\" version %d was dropped meanwhile",
						p->name, p->version),
				 errhint("eventstore.projection_status lists the projections and their versions.")));
	if (now->status != PROJECTION_ACTIVE || !now->caught_up)
		ereport(ERROR,
				(errcode(ERRCODE_ES_NOT_AT_HEAD),
				 errmsg("projection \"%s\" version %d has not reached the head",
						now->name, now->version),
				 errdetail("Checks run, and a version is promoted, only while it is active with its replay from the start done."),
				 errhint("Let the worker or run_projection bring it to the head (start_projection first if it is stopped or failed), then try again.")));
	return now;
}

/* What a check's query is wrapped in: its rows, the first few as jsonb. */
static char *
WrappedCheck(const char *query)
{
	/* a newline first: the query may end in a -- comment */
	return psprintf("SELECT CASE WHEN pg_catalog.row_number() OVER () <= %d"
					" THEN pg_catalog.to_jsonb(q.*) END FROM (%s\n) q",
					CHECK_SAMPLE_ROWS, query);
}

/* One check to run, and where its outcome goes. */
typedef struct CheckRun
{
	const char *query;
	Snapshot	snapshot;
	CheckResult *result;
} CheckRun;

/*
 * Run a check's query read-only through the run's snapshot, counting its
 * rows a page at a time and keeping the first few as the sample.  Runs as
 * the owner (TryWork).
 */
static void
CountFailingRows(Projection *p, void *arg)
{
	CheckRun   *run = (CheckRun *) arg;
	SPIPlanPtr	plan;
	Portal		portal;
	StringInfoData sample;
	int64		count = 0;
	int			nest_level;

	/*
	 * Read-only at a GUC nest level of its own: whatever the check calls
	 * (a volatile function that inserts, nextval, append_event) raises
	 * 25006 rather than write; and it cannot be set back to read-write in
	 * a subtransaction.
	 */
	nest_level = NewGUCNestLevel();
	(void) set_config_option("transaction_read_only", "on", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	initStringInfo(&sample);
	appendStringInfoChar(&sample, '[');
	plan = SPI_prepare(WrappedCheck(run->query), 0, NULL);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	PushActiveSnapshot(run->snapshot);
	/* read-only: a check cannot write, and reads the active snapshot */
	portal = SPI_cursor_open(NULL, plan, NULL, NULL, true);
	for (;;)
	{
		SPI_cursor_fetch(portal, true, CHECK_FETCH_ROWS);
		if (SPI_processed == 0)
			break;
		for (uint64 i = 0; i < SPI_processed && count + (int64) i < CHECK_SAMPLE_ROWS; i++)
		{
			char	   *row = SPI_getvalue(SPI_tuptable->vals[i],
										   SPI_tuptable->tupdesc, 1);

			if (count + (int64) i > 0)
				appendStringInfoString(&sample, ", ");
			appendStringInfoString(&sample, row ? row : "null");
		}
		count += SPI_processed;
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
	PopActiveSnapshot();
	AtEOXact_GUC(false, nest_level);
	appendStringInfoChar(&sample, ']');
	run->result->failing_rows = count;
	run->result->passed = count == 0;
	run->result->sample = sample.data;
}

/*
 * Run every check of the projection, in check_name order, through one
 * snapshot that sees the version as the last batch left it (and this
 * transaction's own changes); a list of CheckResults (cancels_fail: see
 * TryWork).  The caller holds
 * the runner lock (ProjectionAtHead, or the runner's own), is connected to
 * SPI and runs as the extension's owner.
 */
List *
RunProjectionChecks(Projection *p, bool cancels_fail)
{
	Oid			argtypes[2] = {TEXTOID, INT4OID};
	Datum		values[2] = {CStringGetTextDatum(p->name), Int32GetDatum(p->version)};
	List	   *results = NIL;
	char	  **names;
	char	  **queries;
	uint64		n;
	Snapshot	snapshot;

	ExecKeptPlan(KeptPlan(&load_checks_plan,
						  "SELECT check_name, query FROM eventstore.projection_checks"
						  " WHERE name = $1 AND version = $2 ORDER BY check_name",
						  2, argtypes),
				 values, NULL, true, 0);
	n = SPI_processed;
	names = palloc(sizeof(char *) * Max(n, 1));
	queries = palloc(sizeof(char *) * Max(n, 1));
	for (uint64 i = 0; i < n; i++)
	{
		names[i] = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		queries[i] = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
	}
	CommandCounterIncrement();
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	for (uint64 i = 0; i < n; i++)
	{
		CheckResult *r = palloc0(sizeof(CheckResult));
		CheckRun	run = {queries[i], snapshot, r};
		ErrorData  *error;

		r->check_name = names[i];
		/* never kept: a check leaves nothing behind, its results copied out */
		if ((error = TryWorkKeeping(p, CountFailingRows, &run, true, cancels_fail,
									false)) != NULL)
		{
			r->passed = false;
			r->failing_rows = -1;
			r->sample = NULL;
			r->error = error->message ? error->message : "unknown error";
			/* unpack_sql_state's buffer is static */
			r->sqlstate = pstrdup(unpack_sql_state(error->sqlerrcode));
		}
		results = lappend(results, r);
	}
	UnregisterSnapshot(snapshot);
	return results;
}

/* The first check that failed, or NULL when all passed. */
CheckResult *
FirstFailedCheck(List *results)
{
	ListCell   *lc;

	foreach(lc, results)
	{
		CheckResult *r = (CheckResult *) lfirst(lc);

		if (!r->passed)
			return r;
	}
	return NULL;
}

/* The sample column of check_projection: the rows, or the error. */
static char *
SampleJson(CheckResult *r)
{
	StringInfoData buf;

	if (r->error == NULL)
		return r->sample;
	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"error\": ");
	escape_json(&buf, r->error);
	appendStringInfoString(&buf, ", \"sqlstate\": ");
	escape_json(&buf, r->sqlstate);
	appendStringInfoChar(&buf, '}');
	return buf.data;
}

/*
 * The results as the text of a jsonb array: per check its name, passed,
 * failing_rows and sample, or failing_rows null and its error.
 */
char *
CheckResultsJson(List *results)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '[');
	foreach(lc, results)
	{
		CheckResult *r = (CheckResult *) lfirst(lc);

		if (foreach_current_index(lc) > 0)
			appendStringInfoString(&buf, ", ");
		appendStringInfoString(&buf, "{\"check_name\": ");
		escape_json(&buf, r->check_name);
		appendStringInfo(&buf, ", \"passed\": %s", r->passed ? "true" : "false");
		if (r->error == NULL)
			appendStringInfo(&buf, ", \"failing_rows\": " INT64_FORMAT ", \"sample\": %s}",
							 r->failing_rows, r->sample);
		else
		{
			appendStringInfoString(&buf, ", \"failing_rows\": null, \"sample\": null, \"error\": ");
			escape_json(&buf, r->error);
			appendStringInfoString(&buf, ", \"sqlstate\": ");
			escape_json(&buf, r->sqlstate);
			appendStringInfoChar(&buf, '}');
		}
	}
	appendStringInfoChar(&buf, ']');
	return buf.data;
}

/* How many of the checks failed. */
static int
FailedChecks(List *results)
{
	int			failed = 0;
	ListCell   *lc;

	foreach(lc, results)
		if (!((CheckResult *) lfirst(lc))->passed)
		failed++;
	return failed;
}

/*
 * The detail of an error or warning about failed check r: its count and
 * sample (or its error), and how many of the checks failed.
 */
char *
CheckFailureDetail(CheckResult *r, List *results)
{
	int			failed = FailedChecks(results);
	char	   *what;

	what = r->error != NULL
		? psprintf("The check raised an error (SQLSTATE %s): %s.", r->sqlstate, r->error)
		: r->failing_rows <= CHECK_SAMPLE_ROWS
		? psprintf("It returned " INT64_FORMAT " failing row%s: %s.",
				   r->failing_rows, r->failing_rows == 1 ? "" : "s", r->sample)
		: psprintf("It returned " INT64_FORMAT " failing rows; the first %d: %s.",
				   r->failing_rows, CHECK_SAMPLE_ROWS, r->sample);
	if (failed > 1)
		return psprintf("%s %d of the %d checks failed.", what, failed,
						list_length(results));
	return what;
}

/*
 * CheckFailureDetail without the failing rows or the check's error message
 * (which may quote data): what a client that may not read the read model
 * is told, the rest going to the server log.
 */
char *
CheckFailureSummary(CheckResult *r, List *results)
{
	int			failed = FailedChecks(results);
	char	   *what;

	what = r->error != NULL
		? psprintf("The check raised an error (SQLSTATE %s).", r->sqlstate)
		: psprintf("It returned " INT64_FORMAT " failing row%s.",
				   r->failing_rows, r->failing_rows == 1 ? "" : "s");
	return psprintf("%s%s The server log has the details; eventstore.check_projection shows them to the projection's owner.",
					what, failed > 1
					? psprintf(" %d of the %d checks failed.", failed, list_length(results))
					: "");
}

/* A check's query being validated, and where it starts in the text parsed. */
typedef struct CheckQueryContext
{
	const char *query;
	int			offset;
} CheckQueryContext;

/*
 * The error context of a check being validated: an error's position points
 * into the check's query, not into the caller's statement or the wrapper.
 */
static void
CheckQueryErrorContext(void *arg)
{
	CheckQueryContext *check = (CheckQueryContext *) arg;
	int			position = geterrposition();

	/* SPI has made a position in the wrapped query an internal one */
	if (position <= 0)
		position = getinternalerrposition();
	if (position > 0)
	{
		errposition(0);
		internalerrposition(position > check->offset ? position - check->offset : 0);
		internalerrquery(position > check->offset ? check->query : NULL);
	}
	errcontext("query of the projection check");
}

/* Does the query tree lock rows (FOR UPDATE, FOR SHARE) at any level? */
static bool
LocksRows(Node *node, void *context)
{
	if (node == NULL)
		return false;
	if (IsA(node, Query))
	{
		Query	   *query = (Query *) node;

		if (query->rowMarks != NIL || query->hasForUpdate)
			return true;
		return query_tree_walker(query, LocksRows, context, 0);
	}
	return expression_tree_walker(node, LocksRows, context);
}

/*
 * Prepare the wrapped check as the owner: its names must resolve, and it
 * must not lock rows anywhere (in a subquery, a WITH, a view it reads),
 * which a read-only check cannot do.
 */
static void
PrepareCheck(Projection *p, void *arg)
{
	SPIPlanPtr	plan = SPI_prepare(WrappedCheck((const char *) arg), 0, NULL);
	ListCell   *lc;

	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	foreach(lc, SPI_plan_get_plan_sources(plan))
	{
		CachedPlanSource *source = (CachedPlanSource *) lfirst(lc);
		ListCell   *q;

		foreach(q, source->query_list)
		{
			if (LocksRows((Node *) lfirst(q), NULL))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("a projection check cannot lock rows"),
						 errdetail("Checks run read-only, so FOR UPDATE, FOR SHARE and the like fail in them, also in a subquery or a view."),
						 errhint("Remove the locking clause from the check's query.")));
		}
	}
	SPI_freeplan(plan);
}

/*
 * Validate a check's query: exactly one SELECT-like statement (SELECT,
 * VALUES, TABLE, WITH ... SELECT), which must parse and resolve as the
 * owner with its captured settings.  Returns the statement's own text,
 * without a trailing semicolon.
 */
static char *
ValidateCheck(Projection *p, const char *query)
{
	CheckQueryContext check = {query, 0};
	ErrorContextCallback context = {error_context_stack, CheckQueryErrorContext,
	(void *) &check};
	List	   *statements;
	RawStmt    *raw;
	char	   *statement;
	RoleSwitch	saved;

	error_context_stack = &context;
	statements = raw_parser(query, RAW_PARSE_DEFAULT);
	error_context_stack = context.previous;
	if (list_length(statements) != 1 ||
		!IsA((raw = linitial_node(RawStmt, statements))->stmt, SelectStmt) ||
		((SelectStmt *) raw->stmt)->intoClause != NULL ||
		((SelectStmt *) raw->stmt)->lockingClause != NIL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a projection check must be one SELECT statement"),
				 errdetail("A check is a query returning the rows that fail; it passes when it returns none."),
				 errhint("For example 'SELECT * FROM app.sales_v2 WHERE units < 0'.")));
	statement = raw->stmt_len > 0
		? pnstrdup(query + raw->stmt_location, raw->stmt_len)
		: pstrdup(query + raw->stmt_location);

	/*
	 * Resolved as it will run: an unknown table or column is refused now,
	 * and so is a data-modifying WITH (not at the top level once wrapped).
	 */
	check.query = statement;
	check.offset = (int) (strlen(WrappedCheck("")) - strlen("\n) q"));
	error_context_stack = &context;
	saved = EnterProjectionOwner(p);
	PrepareCheck(p, statement);
	LeaveProjectionOwner(saved);
	error_context_stack = context.previous;
	return statement;
}

/* The projection an API call on checks names, owned by the caller. */
static Projection *
CheckedProjection(FunctionCallInfo fcinfo, RoleSwitch caller,
				  const char *action)
{
	text	   *name = RequireName(fcinfo, 0, "name");
	int32		version = GetVersion(fcinfo, 1, false);
	Projection *p = (Projection *) linitial(LoadProjections(name, false, version, false));

	RequireOwnership(caller, p, action);
	return p;
}

/* SQL: add_projection_check(name, version, check_name, query) */
Datum
eventstore_add_projection_check(PG_FUNCTION_ARGS)
{
	RoleSwitch	caller = EnterAsOwner();
	Projection *p = CheckedProjection(fcinfo, caller, "add a check to");
	text	   *check_name = RequireName(fcinfo, 2, "check_name");
	char	   *statement;
	Oid			argtypes[5] = {TEXTOID, INT4OID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[5];

	RequireArgNotNull(fcinfo, 3, "query",
					  "Pass a query returning the rows that fail, for example 'SELECT * FROM app.sales_v2 WHERE units < 0'.");
	statement = ValidateCheck(p, text_to_cstring(PG_GETARG_TEXT_PP(3)));
	values[0] = CStringGetTextDatum(p->name);
	values[1] = Int32GetDatum(p->version);
	values[2] = PointerGetDatum(check_name);
	values[3] = CStringGetTextDatum(statement);
	values[4] = CStringGetTextDatum(GetUserNameFromId(caller.caller, false));
	if (ExecKeptPlan(KeptPlan(&insert_check_plan,
							  "INSERT INTO eventstore.projection_checks"
							  " (name, version, check_name, query, created_by, created_at)"
							  " VALUES ($1, $2, $3, $4, $5, clock_timestamp())"
							  " ON CONFLICT (name, version, check_name) DO NOTHING",
							  5, argtypes),
					 values, NULL, false, 0) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("projection \"%s\" version %d already has a check \"%s\"",
						p->name, p->version, text_to_cstring(check_name)),
				 errhint("Drop it with eventstore.drop_projection_check first to replace it, or choose another name.")));
	LeaveOwner(caller);
	PG_RETURN_VOID();
}

/* SQL: drop_projection_check(name, version, check_name) */
Datum
eventstore_drop_projection_check(PG_FUNCTION_ARGS)
{
	RoleSwitch	caller = EnterAsOwner();
	Projection *p = CheckedProjection(fcinfo, caller, "drop a check of");
	text	   *check_name = RequireName(fcinfo, 2, "check_name");
	Oid			argtypes[3] = {TEXTOID, INT4OID, TEXTOID};
	Datum		values[3] = {CStringGetTextDatum(p->name), Int32GetDatum(p->version),
	PointerGetDatum(check_name)};

	if (ExecKeptPlan(KeptPlan(&delete_check_plan,
							  "DELETE FROM eventstore.projection_checks"
							  " WHERE name = $1 AND version = $2 AND check_name = $3",
							  3, argtypes),
					 values, NULL, false, 0) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("projection \"%s\" version %d has no check \"%s\"",
						p->name, p->version, text_to_cstring(check_name)),
				 errhint("eventstore.projection_checks lists the checks of each version.")));
	LeaveOwner(caller);
	PG_RETURN_VOID();
}

/*
 * SQL: check_projection(name, version): run the version's checks, once it
 * is active at the head, and return per check whether it passed, how many
 * rows failed and a sample of them (or, for a check that raised an error,
 * failing_rows NULL and the error as the sample).
 */
Datum
eventstore_check_projection(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	RoleSwitch	caller;
	Projection *p;
	List	   *results;
	ListCell   *lc;

	InitMaterializedSRF(fcinfo, 0);
	caller = EnterAsOwner();
	p = ProjectionAtHead(CheckedProjection(fcinfo, caller, "check"));
	results = RunProjectionChecks(p, false);
	foreach(lc, results)
	{
		CheckResult *r = (CheckResult *) lfirst(lc);
		Datum		values[4];
		bool		nulls[4] = {false, false, r->failing_rows < 0, false};

		values[0] = CStringGetTextDatum(r->check_name);
		values[1] = BoolGetDatum(r->passed);
		values[2] = Int64GetDatum(r->failing_rows);
		values[3] = DirectFunctionCall1(jsonb_in, CStringGetDatum(SampleJson(r)));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	LeaveOwner(caller);
	return (Datum) 0;
}
