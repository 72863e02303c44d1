/*
 * core/kept_plans.c
 *		Prepared SPI plans kept for the life of the backend, so the hot paths
 *		parse and plan their statements once, and the ways they are run:
 *		writes, reads through a given snapshot, and reads whose rows go
 *		straight to a receiver.
 */
#include "postgres.h"

#include "core/kept_plans.h"
#include "executor/tstoreReceiver.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "optimizer/plancat.h"
#include "utils/guc.h"
#include "utils/plancache.h"
#include "utils/resowner.h"

/* Connect to SPI, or fail: every caller needs it to go on. */
void
ConnectSpi(void)
{
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

/*
 * What the planner assumes of every table a kept plan reads, at least: the
 * size of a large log.  The planner judges by the tables' sizes at
 * planning time, and a session that first ran a statement when the log
 * held a few pages would otherwise keep plans that scan and sort it whole
 * (three pages are cheaper to scan than to look up) for the rest of its
 * life.  Every kept statement reads or writes a few rows through an index,
 * or scans a table that is small at any size (the registry, the clock), so
 * a plan made for a large log is the right one at every size.
 */
#define KEPT_PLAN_MIN_PAGES		((BlockNumber) 1000000)
#define KEPT_PLAN_MIN_TUPLES	1.0e8

static get_relation_info_hook_type previous_get_relation_info_hook = NULL;
static bool planning_kept_plan = false;

static void
AsLargeAsALog(PlannerInfo *root, Oid relid, bool inhparent, RelOptInfo *rel)
{
	ListCell   *lc;

	if (previous_get_relation_info_hook)
		previous_get_relation_info_hook(root, relid, inhparent, rel);
	if (!planning_kept_plan)
		return;
	rel->pages = Max(rel->pages, KEPT_PLAN_MIN_PAGES);
	rel->tuples = Max(rel->tuples, KEPT_PLAN_MIN_TUPLES);
	foreach(lc, rel->indexlist)
	{
		IndexOptInfo *index = (IndexOptInfo *) lfirst(lc);

		/* a partial index (the pending skips) stays as small as it is */
		if (index->indpred == NIL)
			index->tuples = Max(index->tuples, KEPT_PLAN_MIN_TUPLES);
	}
}

/* Called from _PG_init. */
void
InstallKeptPlanHooks(void)
{
	previous_get_relation_info_hook = get_relation_info_hook;
	get_relation_info_hook = AsLargeAsALog;
}

/*
 * Make the kept plan's generic plan now, as for a large log, and without
 * JIT compilation: the costs of a large log would have every run of it
 * compile its expressions (some 90 ms), to read a few rows.
 */
static void
PlanForAnySize(SPIPlanPtr plan)
{
	int			nestlevel = NewGUCNestLevel();
	CachedPlan *generic;

	(void) set_config_option("jit", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	planning_kept_plan = true;
	PG_TRY();
	{
		generic = SPI_plan_get_cached_plan(plan);
	}
	PG_FINALLY();
	{
		planning_kept_plan = false;
	}
	PG_END_TRY();
	AtEOXact_GUC(true, nestlevel);
	if (generic == NULL)
		elog(ERROR, "SPI_plan_get_cached_plan failed");
	ReleaseCachedPlan(generic, CurrentResourceOwner);
}

/*
 * A kept plan, planned again as PlanForAnySize does when something
 * invalidated it (an ANALYZE, DDL on a table it reads): the plan cache
 * would otherwise re-plan it by the tables' sizes at its next run.
 */
static SPIPlanPtr
ValidPlan(SPIPlanPtr plan)
{
	if (!SPI_plan_is_valid(plan))
		PlanForAnySize(plan);
	return plan;
}

/*
 * Return the plan cached in *cache, preparing and keeping it on first use.
 * The caller must be connected to SPI.  The plan is generic from the start
 * (our statements' optional filters, "$3 IS NULL OR ...", would otherwise
 * make the plan cache re-plan them for every call), and made at once, as
 * for a large log (AsLargeAsALog).
 */
SPIPlanPtr
KeptPlan(SPIPlanPtr *cache, const char *sql, int nargs, const Oid *argtypes)
{
	SPIPlanPtr	plan;

	if (*cache != NULL)
		return *cache;
	plan = SPI_prepare_cursor(sql, nargs, (Oid *) argtypes,
							  CURSOR_OPT_GENERIC_PLAN);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s",
			 sql, SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed");
	PlanForAnySize(plan);
	*cache = plan;
	return plan;
}

/* Execute a kept plan; returns the number of rows processed. */
int
ExecKeptPlan(SPIPlanPtr plan, Datum *values, const char *nulls,
			 bool read_only, long count)
{
	int			rc = SPI_execute_plan(ValidPlan(plan), values, nulls, read_only,
										  count);

	if (rc < 0)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(rc));
	return (int) SPI_processed;
}

/*
 * Run a read-only kept query through `snapshot` rather than the caller's:
 * the latest one, for decisions that must see every change committed
 * before a lock was granted, or a batch's own.  Rows land in SPI_tuptable.
 */
void
QueryKeptPlanThrough(SPIPlanPtr plan, Datum *values, const char *nulls,
					 Snapshot snapshot, long count)
{
	int			rc = SPI_execute_snapshot(ValidPlan(plan), values, nulls, snapshot,
										  InvalidSnapshot, true, false, count);

	if (rc != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_snapshot failed: %s", SPI_result_code_string(rc));
}

/* The parameters of a plan, for SPI_execute_plan_extended. */
static ParamListInfo
ParamsOf(SPIPlanPtr plan, Datum *values, const char *nulls)
{
	int			nargs = SPI_getargcount(plan);
	ParamListInfo params = makeParamList(nargs);

	for (int i = 0; i < nargs; i++)
	{
		ParamExternData *prm = &params->params[i];

		prm->value = values[i];
		prm->isnull = nulls != NULL && nulls[i] == 'n';
		prm->pflags = PARAM_FLAG_CONST;
		prm->ptype = SPI_getargtypeid(plan, i);
	}
	return params;
}

/*
 * Run a read-only kept query in the active snapshot and hand its rows
 * straight to `dest`, with no tuple table in between.
 */
void
ExecKeptPlanInto(SPIPlanPtr plan, Datum *values, const char *nulls,
				 DestReceiver *dest, long count)
{
	SPIExecuteOptions options;
	int			rc;

	memset(&options, 0, sizeof(options));
	options.params = ParamsOf(plan, values, nulls);
	options.read_only = true;
	options.tcount = count;
	options.dest = dest;
	rc = SPI_execute_plan_extended(ValidPlan(plan), &options);
	/* SPI says SPI_OK_UTILITY for a SELECT into a receiver of its own */
	if (rc < 0)
		elog(ERROR, "SPI_execute_plan_extended failed: %s",
			 SPI_result_code_string(rc));
}

/*
 * Run a read-only kept plan and stream its rows straight into the
 * materialized result of the set-returning function fcinfo, with no copy in
 * between.  The rows go in as the scan found them, out-of-line values
 * still toasted (as PL/pgSQL's RETURN QUERY stores them): the function's
 * caller reads them within its own query, under the snapshot that keeps
 * them, and detoasting every row on the way in (deforming it, then forming
 * it again) cost a read more than the scan itself.
 */
void
ExecKeptPlanIntoSRF(FunctionCallInfo fcinfo, SPIPlanPtr plan, Datum *values,
					const char *nulls, long count)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	DestReceiver *dest = CreateDestReceiver(DestTuplestore);

	SetTuplestoreDestReceiverParams(dest, rsinfo->setResult,
									rsinfo->econtext->ecxt_per_query_memory,
									false, NULL, NULL);
	ExecKeptPlanInto(plan, values, nulls, dest, count);
	dest->rDestroy(dest);
}

/*
 * The first column of the first result row; false when there is no row or
 * the value is NULL.
 */
bool
GetFirstResult(Datum *value)
{
	bool		isnull;

	if (SPI_processed == 0)
		return false;
	*value = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
						   &isnull);
	return !isnull;
}

/*
 * Run one kept statement in an SPI connection of its own; returns the rows
 * it processed.
 */
int
RunKeptStatement(SPIPlanPtr *cache, const char *sql, int nargs,
				 const Oid *argtypes, Datum *values)
{
	int			rows;

	ConnectSpi();
	rows = ExecKeptPlan(KeptPlan(cache, sql, nargs, argtypes), values, NULL,
						false, 0);
	SPI_finish();
	return rows;
}

/*
 * Run one kept read-only query in an SPI connection of its own and return
 * its first row's first column as int64; false when there is no row or it
 * is NULL.
 */
bool
RunKeptInt64Query(SPIPlanPtr *cache, const char *sql, int nargs,
				  const Oid *argtypes, Datum *values, int64 *result)
{
	Datum		value;
	bool		found;

	ConnectSpi();
	ExecKeptPlan(KeptPlan(cache, sql, nargs, argtypes), values, NULL, true, 1);
	found = GetFirstResult(&value);
	if (found)
		*result = DatumGetInt64(value);
	SPI_finish();
	return found;
}
