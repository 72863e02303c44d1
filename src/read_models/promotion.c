/*
 * read_models/promotion.c
 *		Promoting a projection version behind a stable view:
 *		promote_projection, set_read_model, and the automatic promotion of a
 *		version created with promote => 'auto' when it reaches the head.
 *
 * A promotion runs the version's checks (unless forced), re-points the
 * name's view at the version's relation with CREATE OR REPLACE VIEW, as the
 * projection's owner, and records itself in eventstore.projection_promotions,
 * all in one transaction: the view is replaced, or not, together with the
 * record.  CREATE OR REPLACE VIEW takes the view's AccessExclusiveLock,
 * which waits for the transactions that have read the view to end (their
 * queries finish on the old relation) and makes readers that come later
 * wait for the promotion's commit, then read the new relation.  Promotions
 * serialize on the promotion table's lock; a promotion holds the version's
 * runner lock, so no batch, and no rebuild, of it runs meanwhile.
 */
#include "postgres.h"

#include "access/reloptions.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "core/args.h"
#include "core/catalog.h"
#include "core/errors.h"
#include "core/kept_plans.h"
#include "miscadmin.h"
#include "read_models/read_models.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/varlena.h"

PG_FUNCTION_INFO_V1(eventstore_promote_projection);
PG_FUNCTION_INFO_V1(eventstore_set_read_model);

static SPIPlanPtr insert_promote_plan;
static SPIPlanPtr read_model_plan;
static SPIPlanPtr current_plan;
static SPIPlanPtr record_plan;
static SPIPlanPtr results_plan;
static SPIPlanPtr view_users_plan;
static SPIPlanPtr view_conflict_plan;
static SPIPlanPtr upsert_plan;
static SPIPlanPtr done_pending_plan;
static SPIPlanPtr in_use_plan;

/* A version's row of eventstore.read_models; NULL fields when none. */
typedef struct ReadModel
{
	bool		found;
	bool		automatic;		/* promote = 'auto' */
	bool		pending;		/* promotion_pending */
	char	   *relation;
	char	   *view_name;
	char	   *promotion_error;
} ReadModel;

/*
 * Record how a new version is promoted; an automatic promotion is pending
 * from the start, so that a version created at the head (over an empty
 * log) is promoted too.  A 0.2.0 schema, which this library serves until
 * ALTER EXTENSION UPDATE, has no read_models.
 */
void
SaveReadModelPromote(text *name, int32 version, const char *promote)
{
	Oid			argtypes[3] = {TEXTOID, INT4OID, TEXTOID};
	Datum		values[3] = {PointerGetDatum(name), Int32GetDatum(version),
	CStringGetTextDatum(promote)};

	if (!OidIsValid(OptionalEventstoreRelid("read_models")))
		return;
	ExecKeptPlan(KeptPlan(&insert_promote_plan,
						  "INSERT INTO eventstore.read_models"
						  " (name, version, promote, promotion_pending)"
						  " VALUES ($1, $2, $3, $3 = '" PROMOTE_AUTO "')",
						  3, argtypes),
				 values, NULL, false, 0);
}

/*
 * Run a read of the promotion tables through the latest snapshot, which
 * sees this transaction's own changes and what promotions committed while
 * we waited for the promotion table's lock (the statement's snapshot is
 * older than the wait).
 */
static void
QueryLatest(SPIPlanPtr plan, Datum *values)
{
	CommandCounterIncrement();
	QueryKeptPlanThrough(plan, values, NULL, GetLatestSnapshot(), 0);
}

/* The read model of version `version` of `name`, as it is now. */
static ReadModel
ReadModelOf(const char *name, int32 version)
{
	Oid			argtypes[2] = {TEXTOID, INT4OID};
	Datum		values[2] = {CStringGetTextDatum(name), Int32GetDatum(version)};
	ReadModel	rm = {false, false, false, NULL, NULL, NULL};
	HeapTuple	row;
	TupleDesc	desc;
	bool		isnull;

	QueryLatest(KeptPlan(&read_model_plan,
						 "SELECT promote = '" PROMOTE_AUTO "', promotion_pending,"
						 " relation, view_name, promotion_error"
						 " FROM eventstore.read_models WHERE name = $1 AND version = $2",
						 2, argtypes),
				values);
	if (SPI_processed == 0)
		return rm;
	row = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	rm.found = true;
	rm.automatic = DatumGetBool(SPI_getbinval(row, desc, 1, &isnull));
	rm.pending = DatumGetBool(SPI_getbinval(row, desc, 2, &isnull));
	rm.relation = SPI_getvalue(row, desc, 3);
	rm.view_name = SPI_getvalue(row, desc, 4);
	rm.promotion_error = SPI_getvalue(row, desc, 5);
	return rm;
}

/*
 * The promoted version of `name`: that of its last promotion to a version
 * that still exists (as current_version says), as it is now.
 */
static bool
PromotedVersion(const char *name, int32 *version)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(name)};
	Datum		value;

	QueryLatest(KeptPlan(&current_plan,
						 "SELECT p.version FROM eventstore.projection_promotions pr"
						 " JOIN eventstore.projections p ON p.projection_id = pr.projection_id"
						 " WHERE pr.name = $1 ORDER BY pr.promotion_id DESC LIMIT 1",
						 1, argtypes),
				values);
	if (!GetFirstResult(&value))
		return false;
	*version = DatumGetInt32(value);
	return true;
}

/* Is the projection the promoted version of its name? */
static bool
IsPromoted(Projection *p)
{
	int32		version;

	return PromotedVersion(p->name, &version) && version == p->version;
}

/* The relation a view is to stand for, and the view. */
typedef struct ViewTarget
{
	const char *view_name;
	const char *relation;
} ViewTarget;

/* The relation a read model names now (by name), which the owner may read. */
static Oid
ReadableRelation(Projection *p, const char *relation)
{
	Oid			relid = RangeVarGetRelid(makeRangeVarFromNameList(stringToQualifiedNameList(relation)),
										 NoLock, false);

	if (pg_class_aclcheck(relid, p->owner, ACL_SELECT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("the owner role \"%s\" of projection \"%s\" version %d may not read relation %s",
						p->owner_name, p->name, p->version, relation),
				 errdetail("The stable view runs as its owner, the projection's owner."),
				 errhint("Grant SELECT on the relation to role \"%s\".", p->owner_name)));
	return relid;
}

/* The view named so, InvalidOid when there is none (yet). */
static Oid
ExistingView(const char *view_name)
{
	return RangeVarGetRelid(makeRangeVarFromNameList(stringToQualifiedNameList(view_name)),
							NoLock, true);
}

/*
 * The WITH clause that keeps the options of existing view `view`
 * (security_invoker, security_barrier, check_option), which CREATE OR
 * REPLACE VIEW would otherwise reset; "" when it has none.
 */
static char *
ViewOptionsClause(Oid view)
{
	HeapTuple	tuple;
	Datum		options;
	bool		isnull;
	StringInfoData clause;
	ListCell   *lc;

	if (!OidIsValid(view))
		return "";
	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(view));
	if (!HeapTupleIsValid(tuple))
		return "";
	options = SysCacheGetAttr(RELOID, tuple, Anum_pg_class_reloptions, &isnull);
	if (isnull)
	{
		ReleaseSysCache(tuple);
		return "";
	}
	initStringInfo(&clause);
	appendStringInfoString(&clause, " WITH (");
	foreach(lc, untransformRelOptions(options))
	{
		DefElem    *option = (DefElem *) lfirst(lc);

		appendStringInfo(&clause, "%s%s = %s",
						 foreach_current_index(lc) > 0 ? ", " : "",
						 quote_identifier(option->defname),
						 quote_literal_cstr(defGetString(option)));
	}
	appendStringInfoChar(&clause, ')');
	ReleaseSysCache(tuple);
	return clause.data;
}

/*
 * Create the view, or re-point it, at the relation: as the owner (TryWork),
 * who owns the view.  CREATE OR REPLACE VIEW keeps the view's grants and
 * refuses a relation whose columns do not extend the view's; its options
 * are given again so that it keeps them too.
 */
static void
RepointView(Projection *p, void *arg)
{
	ViewTarget *t = (ViewTarget *) arg;
	int			rc;

	(void) ReadableRelation(p, t->relation);
	rc = SPI_execute(psprintf("CREATE OR REPLACE VIEW %s%s AS SELECT * FROM %s",
							  t->view_name,
							  ViewOptionsClause(ExistingView(t->view_name)),
							  t->relation),
					 false, 0);
	if (rc < 0)
		elog(ERROR, "SPI_execute failed: %s", SPI_result_code_string(rc));
}

/*
 * Point the view at the relation, raising SE013 when the relation cannot
 * stand behind it (other columns than the view's, which dependent objects
 * may also hold on to), and any other error as it is.  Unless `wait`, the
 * view's lock is taken only if no one holds it (a consumer's transaction
 * that read the view): else 55P03, and nothing done.
 */
static void
RepointViewOrRaise(Projection *p, const char *view_name, const char *relation,
				   bool wait)
{
	ViewTarget	target = {view_name, relation};
	ErrorData  *error;
	Oid			view;

	if (!wait && OidIsValid(view = ExistingView(view_name)) &&
		!ConditionalLockRelationOid(view, AccessExclusiveLock))
		ereport(ERROR,
				(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
				 errmsg("view %s is in use", view_name),
				 errdetail("A transaction that has read the view is still open."),
				 errhint("The runner tries again the next time it runs the version.")));
	error = TryWork(p, RepointView, &target, true, false);
	if (error == NULL)
		return;
	if (error->sqlerrcode == ERRCODE_INVALID_TABLE_DEFINITION ||
		error->sqlerrcode == ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST)
		ereport(ERROR,
				(errcode(ERRCODE_ES_VIEW_INCOMPATIBLE),
				 errmsg("relation %s of projection \"%s\" version %d cannot stand behind view %s",
						relation, p->name, p->version, view_name),
				 errdetail("Replacing the view failed: %s.%s%s", error->message,
						   error->detail ? " " : "", error->detail ? error->detail : ""),
				 errhint("Give the relation the view's columns, with the same names and types in the same order (it may add columns at the end), or drop the objects that depend on the view first.")));
	ReThrowError(error);
}

/* A promotion to do: the version, and what to record with it. */
typedef struct Promotion
{
	bool		forced;
	bool		automatic;
	const char *by;				/* the role promoting */
	List	   *results;		/* of the checks run; NIL when forced */
} Promotion;

/*
 * Promote the version: re-point the name's view at its relation (when it
 * has a read model) and record the promotion.  The caller holds the
 * version's runner lock, with the version at the head, is connected to SPI
 * and runs as the extension's owner.  An automatic promotion waits for no
 * lock (the worker's turn would wait with it): when another promotion, or
 * a reader of the view, holds one, it raises 55P03 and does nothing.
 */
static void
Promote(Projection *p, void *arg)
{
	Promotion  *promotion = (Promotion *) arg;
	Oid			argtypes[10] = {TEXTOID, INT4OID, INT4OID, INT4OID, BOOLOID,
	BOOLOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[10];
	char		nulls[10] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	int32		from = 0;
	ReadModel	rm;

	/* one promotion at a time: "from" is the version promoted until now */
	if (!promotion->automatic)
		LockRelationOid(EventstoreRelid("projection_promotions"), ShareRowExclusiveLock);
	else if (!ConditionalLockRelationOid(EventstoreRelid("projection_promotions"),
										 ShareRowExclusiveLock))
		ereport(ERROR,
				(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
				 errmsg("another promotion is in progress"),
				 errhint("The runner tries again the next time it runs the version.")));
	if (!PromotedVersion(p->name, &from))
		nulls[1] = 'n';
	rm = ReadModelOf(p->name, p->version);
	if (rm.relation == NULL)
	{
		Oid			view_argtypes[2] = {TEXTOID, INT4OID};
		Datum		view_values[2] = {CStringGetTextDatum(p->name), Int32GetDatum(p->version)};
		Datum		view;

		/* another version's read model is behind a view: it would stay */
		ExecKeptPlan(KeptPlan(&view_users_plan,
							  "SELECT view_name FROM eventstore.read_models"
							  " WHERE name = $1 AND version <> $2 AND view_name IS NOT NULL"
							  " LIMIT 1",
							  2, view_argtypes),
					 view_values, NULL, true, 0);
		if (GetFirstResult(&view))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("projection \"%s\" version %d has no read model to put behind view %s",
							p->name, p->version, TextDatumGetCString(view)),
					 errdetail("Its other versions' read models stand behind that view."),
					 errhint("Name the relation it writes with eventstore.set_read_model first.")));
	}
	else
		RepointViewOrRaise(p, rm.view_name, rm.relation, !promotion->automatic);

	values[0] = CStringGetTextDatum(p->name);
	values[1] = Int32GetDatum(from);
	values[2] = Int32GetDatum(p->version);
	values[3] = Int32GetDatum(p->id);
	values[4] = BoolGetDatum(promotion->forced);
	values[5] = BoolGetDatum(promotion->automatic);
	values[6] = CStringGetTextDatum(promotion->by);
	values[7] = rm.relation ? CStringGetTextDatum(rm.relation) : (Datum) 0;
	nulls[7] = rm.relation ? ' ' : 'n';
	values[8] = rm.view_name ? CStringGetTextDatum(rm.view_name) : (Datum) 0;
	nulls[8] = rm.view_name ? ' ' : 'n';
	values[9] = CStringGetTextDatum(CheckResultsJson(promotion->results));
	ExecKeptPlan(KeptPlan(&record_plan,
						  "INSERT INTO eventstore.projection_promotions"
						  " (name, from_version, to_version, projection_id, forced,"
						  "  automatic, promoted_by, promoted_at, relation, view_name,"
						  "  check_results)"
						  " VALUES ($1, $2, $3, $4, $5, $6, $7, clock_timestamp(), $8, $9,"
						  "  $10::jsonb)",
						  10, argtypes),
				 values, nulls, false, 0);
	/* promoted: no automatic promotion of it is pending any more */
	values[1] = values[2];
	ExecKeptPlan(KeptPlan(&done_pending_plan,
						  "UPDATE eventstore.read_models SET promotion_pending = false"
						  " WHERE name = $1 AND version = $2 AND promotion_pending",
						  2, argtypes),
				 values, NULL, false, 0);
}

/*
 * Keep the results of the checks run for a promotion (and why an
 * automatic promotion did not happen) in the version's read model row,
 * and whether an automatic promotion of it is still pending.
 */
static void
SaveCheckResults(Projection *p, List *results, const char *promotion_error,
				 bool pending)
{
	Oid			argtypes[6] = {TEXTOID, INT4OID, BOOLOID, TEXTOID, TEXTOID, BOOLOID};
	Datum		values[6] = {
		CStringGetTextDatum(p->name),
		Int32GetDatum(p->version),
		BoolGetDatum(FirstFailedCheck(results) == NULL),
		CStringGetTextDatum(CheckResultsJson(results)),
		promotion_error ? CStringGetTextDatum(promotion_error) : (Datum) 0,
		BoolGetDatum(pending)
	};
	char		nulls[6] = {' ', ' ', ' ', ' ', promotion_error ? ' ' : 'n', ' '};

	ExecKeptPlan(KeptPlan(&results_plan,
						  "INSERT INTO eventstore.read_models AS r"
						  " (name, version, checked_at, checks_passed, check_results,"
						  "  promotion_error, promotion_pending)"
						  " VALUES ($1, $2, clock_timestamp(), $3, $4::jsonb, $5, $6)"
						  " ON CONFLICT (name, version) DO UPDATE SET"
						  " checked_at = excluded.checked_at,"
						  " checks_passed = excluded.checks_passed,"
						  " check_results = excluded.check_results,"
						  " promotion_error = excluded.promotion_error,"
						  " promotion_pending = excluded.promotion_pending",
						  6, argtypes),
				 values, nulls, false, 0);
}

/* What promotion_error says while the view is in use. */
#define VIEW_IN_USE "the view is in use; will try again"

/*
 * Is the existing view held by another transaction (a consumer's that has
 * read it)?  A probe: the lock, when granted, is let go at once.
 */
static bool
ViewInUse(const char *view_name)
{
	Oid			view = ExistingView(view_name);

	if (!OidIsValid(view))
		return false;
	if (!ConditionalLockRelationOid(view, AccessExclusiveLock))
		return true;
	UnlockRelationOid(view, AccessExclusiveLock);
	return false;
}

/*
 * The view is in use: the automatic promotion stays pending, saying so,
 * with a write only when that is news (a worker's turn may find it in use
 * again and again).
 */
static void
SaveViewInUse(Projection *p, ReadModel *rm)
{
	Oid			argtypes[3] = {TEXTOID, INT4OID, TEXTOID};
	Datum		values[3] = {CStringGetTextDatum(p->name), Int32GetDatum(p->version),
	CStringGetTextDatum(VIEW_IN_USE)};

	if (rm->pending && rm->promotion_error != NULL &&
		strcmp(rm->promotion_error, VIEW_IN_USE) == 0)
		return;
	ereport(LOG,
			(errmsg("projection \"%s\" version %d is not promoted yet: view %s is in use",
					p->name, p->version, rm->view_name),
			 errdetail("The automatic promotion is tried again the next time the version runs.")));
	ExecKeptPlan(KeptPlan(&in_use_plan,
						  "UPDATE eventstore.read_models"
						  " SET promotion_error = $3, promotion_pending = true"
						  " WHERE name = $1 AND version = $2",
						  3, argtypes),
				 values, NULL, false, 0);
}

/*
 * The runner runs a version active at the head, in its transaction (the
 * worker's, or run_projection's), which holds its runner lock: if it was
 * created with promote => 'auto' and has just reached the head
 * (reached_head), or its automatic promotion is pending (created at the
 * head, or its view was in use last time), run its checks and promote it
 * when they all pass.  A failing check, or a promotion that fails (the view
 * cannot take its relation), leaves it unpromoted with a WARNING and the
 * results in projection_status; neither fails the batch, and the promotion
 * is no longer pending.  A view in use (a consumer's transaction holds it)
 * or another promotion in progress is not waited for: the promotion stays
 * pending, for the next run.  The WARNINGs go to the client driving the run,
 * which may not read the read model: the failing rows and errors go to the
 * server log only.  A version already promoted (rebuilt in place) only has
 * its checks run again.  The caller is connected to SPI and runs as the
 * extension's owner.
 */
void
AutoPromote(Projection *p, bool reached_head)
{
	ReadModel	rm;
	List	   *results;
	CheckResult *failed;
	char	   *promotion_error = NULL;
	bool		pending = false;

	/* an idle turn only reads: nothing to do unless a promotion is due */
	if (!OidIsValid(OptionalEventstoreRelid("read_models")))
		return;
	rm = ReadModelOf(p->name, p->version);
	if (!rm.automatic || !(rm.pending || reached_head))
		return;
	/* no checks run again and again while a consumer holds the view */
	if (rm.view_name != NULL && !IsPromoted(p) && ViewInUse(rm.view_name))
	{
		SaveViewInUse(p, &rm);
		return;
	}
	results = RunProjectionChecks(p, true);
	if ((failed = FirstFailedCheck(results)) != NULL)
		ereport(WARNING,
				(errcode(ERRCODE_ES_CHECK_FAILED),
				 errmsg("projection \"%s\" version %d reached the head but was not promoted: check \"%s\" failed",
						p->name, p->version, failed->check_name),
				 errdetail("%s", CheckFailureSummary(failed, results)),
				 errdetail_log("%s", CheckFailureDetail(failed, results)),
				 errhint("eventstore.check_projection runs the checks again; eventstore.promote_projection promotes it once they pass.")));
	else if (!IsPromoted(p))
	{
		Promotion	promotion = {false, true, p->owner_name, results};
		ErrorData  *error = TryWork(p, Promote, &promotion, false, true);

		/* the view (or the promotion table) taken since the probe */
		if (error != NULL && error->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE)
		{
			promotion_error = VIEW_IN_USE;
			pending = true;
			ereport(LOG,
					(errmsg("projection \"%s\" version %d passed its checks but was not promoted yet: %s",
							p->name, p->version, error->message),
					 errdetail("The automatic promotion is tried again the next time the version runs.")));
		}
		else if (error != NULL)
		{
			promotion_error = error->message;
			ereport(WARNING,
					(errcode(error->sqlerrcode),
					 errmsg("projection \"%s\" version %d passed its checks but could not be promoted",
							p->name, p->version),
					 errdetail("The promotion failed with SQLSTATE %s; the server log and projection_status have the error.",
							   unpack_sql_state(error->sqlerrcode)),
					 errdetail_log("The promotion failed: %s.%s%s", error->message,
								   error->detail ? " " : "",
								   error->detail ? error->detail : ""),
					 errhint("Fix the cause, then call eventstore.promote_projection.")));
		}
		else
			ereport(LOG,
					(errmsg("projection \"%s\" version %d reached the head, passed its checks and was promoted",
							p->name, p->version)));
	}
	SaveCheckResults(p, results, promotion_error, pending);
}

/*
 * SQL: promote_projection(name, version, force): run the version's checks
 * and promote it, or raise SE011 naming the first check that failed; force
 * promotes without them (recorded as forced).  Promoting an older version
 * is the rollback.
 */
Datum
eventstore_promote_projection(PG_FUNCTION_ARGS)
{
	RoleSwitch	caller = EnterAsOwner();
	text	   *name = RequireName(fcinfo, 0, "name");
	int32		version = GetVersion(fcinfo, 1, false);
	Promotion	promotion = {false, false, NULL, NIL};
	Projection *p;
	CheckResult *failed;

	RequireArgNotNull(fcinfo, 2, "force",
					  "Pass false to run the checks, true to promote without them.");
	promotion.forced = PG_GETARG_BOOL(2);
	promotion.by = GetUserNameFromId(caller.caller, false);
	p = (Projection *) linitial(LoadProjections(name, false, version, false));
	RequireOwnership(caller, p, "promote");
	p = ProjectionAtHead(p);
	if (!promotion.forced)
	{
		promotion.results = RunProjectionChecks(p, false);
		if ((failed = FirstFailedCheck(promotion.results)) != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_ES_CHECK_FAILED),
					 errmsg("projection \"%s\" version %d failed check \"%s\"",
							p->name, p->version, failed->check_name),
					 errdetail("%s", CheckFailureDetail(failed, promotion.results)),
					 errhint("Fix the read model or the check and promote again, or pass force => true to promote without the checks.")));
		SaveCheckResults(p, promotion.results, NULL, false);
	}
	Promote(p, &promotion);
	LeaveOwner(caller);
	PG_RETURN_VOID();
}

/*
 * The view name as the owner would create it: an unqualified name goes to
 * the first schema of the owner's captured search_path.  Returned quoted
 * and schema-qualified.
 */
static char *
QualifiedViewName(Projection *p, text *view_name)
{
	RangeVar   *rv = makeRangeVarFromNameList(textToQualifiedNameList(view_name));

	if (rv->catalogname != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("view_name must be a view's name, optionally schema-qualified"),
				 errdetail("Got \"%s\".", text_to_cstring(view_name)),
				 errhint("Pass for example 'app.sales'.")));
	if (rv->schemaname == NULL)
	{
		RoleSwitch	saved = EnterProjectionOwner(p);
		Oid			namespace = RangeVarGetCreationNamespace(rv);

		LeaveProjectionOwner(saved);
		rv->schemaname = get_namespace_name(namespace);
	}
	return quote_qualified_identifier(rv->schemaname, rv->relname);
}

/*
 * The owner, who creates the view at the first promotion, must be allowed
 * to create in its schema, and own the view if it exists already: else
 * anyone granted set_read_model could reserve a name in any schema.
 */
static void
RequireViewOfOwner(Projection *p, const char *qualified)
{
	RangeVar   *rv = makeRangeVarFromNameList(stringToQualifiedNameList(qualified));
	Oid			namespace = get_namespace_oid(rv->schemaname, false);
	Oid			view;

	if (pg_namespace_aclcheck(namespace, p->owner, ACL_CREATE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("the owner role \"%s\" of projection \"%s\" may not create view %s",
						p->owner_name, p->name, qualified),
				 errdetail("The projection's owner creates the view at the first promotion."),
				 errhint("Grant CREATE on schema %s to role \"%s\", or choose a view in a schema it may create in.",
						 quote_identifier(rv->schemaname), p->owner_name)));
	view = get_relname_relid(rv->relname, namespace);
	if (OidIsValid(view) && get_rel_relkind(view) != RELKIND_VIEW)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("%s is not a view", qualified),
				 errhint("Choose the name of a view, or one that is not taken.")));
	if (OidIsValid(view) && !pg_class_ownercheck(view, p->owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("view %s does not belong to the owner role \"%s\" of projection \"%s\"",
						qualified, p->owner_name, p->name),
				 errdetail("A promotion replaces the view as the projection's owner."),
				 errhint("Make role \"%s\" the view's owner (ALTER VIEW ... OWNER TO), or choose another view name.",
						 p->owner_name)));
}

/*
 * SQL: set_read_model(name, version, relation, view_name): name the
 * relation the version writes and the stable view consumers query.  Every
 * version of a name stands behind the same view, which no other name may
 * use.  The view is created, or re-pointed, at the first promotion and at
 * every one after; for the promoted version itself, at once.
 */
Datum
eventstore_set_read_model(PG_FUNCTION_ARGS)
{
	RoleSwitch	caller = EnterAsOwner();
	text	   *name = RequireName(fcinfo, 0, "name");
	int32		version = GetVersion(fcinfo, 1, false);
	Projection *p;
	Oid			relid;
	char		relkind;
	char	   *relation;
	char	   *view_name;
	Oid			argtypes[4] = {TEXTOID, INT4OID, TEXTOID, TEXTOID};
	Datum		values[4];

	RequireArgNotNull(fcinfo, 2, "relation",
					  "Pass the table (or view) the version writes, for example 'app.sales_v2'.");
	RequireArgNotNull(fcinfo, 3, "view_name",
					  "Pass the name consumers query, for example 'app.sales'.");
	p = (Projection *) linitial(LoadProjections(name, false, version, false));
	RequireOwnership(caller, p, "set the read model of");
	/* as Promote: whether the version is promoted cannot change meanwhile */
	LockRelationOid(EventstoreRelid("projection_promotions"), ShareRowExclusiveLock);
	relid = PG_GETARG_OID(2);
	relkind = get_rel_relkind(relid);
	if (relkind == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid),
				 errhint("Pass the table the version writes, for example 'app.sales_v2'.")));
	if (relkind != RELKIND_RELATION && relkind != RELKIND_PARTITIONED_TABLE &&
		relkind != RELKIND_VIEW && relkind != RELKIND_MATVIEW &&
		relkind != RELKIND_FOREIGN_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" has no rows for a view to show", get_rel_name(relid)),
				 errhint("Pass a table, view, materialized view or foreign table.")));
	relation = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
										  get_rel_name(relid));
	(void) ReadableRelation(p, relation);
	view_name = QualifiedViewName(p, PG_GETARG_TEXT_PP(3));
	if (strcmp(view_name, relation) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("view_name must differ from the relation %s", relation),
				 errhint("The view is the stable name in front of each version's relation.")));
	RequireViewOfOwner(p, view_name);

	values[0] = CStringGetTextDatum(p->name);
	values[1] = Int32GetDatum(p->version);
	values[2] = CStringGetTextDatum(relation);
	values[3] = CStringGetTextDatum(view_name);
	/* the view is the name's, all of whose versions it stands for */
	QueryLatest(KeptPlan(&view_conflict_plan,
						 "WITH other AS (SELECT name, view_name FROM eventstore.read_models"
						 "  WHERE (name = $1 AND version <> $2 AND view_name <> $4)"
						 "     OR (name <> $1 AND view_name = $4) LIMIT 1)"
						 " SELECT name = $1, view_name FROM other",
						 4, argtypes),
				values);
	if (SPI_processed > 0)
	{
		bool		same_name = strcmp(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1), "t") == 0;
		char	   *other_view = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);

		if (same_name)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("the versions of projection \"%s\" stand behind view %s",
							p->name, other_view),
					 errdetail("Every version of a projection stands behind the one stable view its consumers query."),
					 errhint("Pass view_name => '%s'.", other_view)));
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("view %s stands for another projection", view_name),
				 errhint("Choose another view name for projection \"%s\".", p->name)));
	}
	ExecKeptPlan(KeptPlan(&upsert_plan,
						  "INSERT INTO eventstore.read_models (name, version, relation, view_name)"
						  " VALUES ($1, $2, $3, $4)"
						  " ON CONFLICT (name, version) DO UPDATE SET"
						  " relation = excluded.relation, view_name = excluded.view_name",
						  4, argtypes),
				 values, NULL, false, 0);
	/* the promoted version's view shows its relation from now on */
	if (IsPromoted(p))
		RepointViewOrRaise(p, view_name, relation, true);
	LeaveOwner(caller);
	PG_RETURN_VOID();
}
