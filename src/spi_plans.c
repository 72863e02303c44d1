/*
 * spi_plans.c
 *		Prepared SPI plans kept for the life of the backend, so the hot paths
 *		parse and plan their statements once.
 */
#include "postgres.h"

#include "executor/spi.h"
#include "executor/tstoreReceiver.h"
#include "funcapi.h"
#include "pg_eventstore.h"
#include "utils/builtins.h"

/*
 * Return the plan cached in *cache, preparing and keeping it on first use.
 * The caller must be connected to SPI.  The plan is generic from the start:
 * our statements' optional filters ("$3 IS NULL OR ...") would otherwise
 * make the plan cache re-plan them for every call.
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
	*cache = plan;
	return plan;
}

/* Execute a kept plan; returns the number of rows processed. */
int
ExecKeptPlan(SPIPlanPtr plan, Datum *values, const char *nulls,
			 bool read_only, long count)
{
	int			rc = SPI_execute_plan(plan, values, nulls, read_only, count);

	if (rc < 0)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(rc));
	return (int) SPI_processed;
}

/* The parameters of a plan, for SPI_execute_plan_extended. */
ParamListInfo
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
 * Run a read-only kept plan and stream its rows straight into the
 * materialized result of the set-returning function fcinfo, with no copy in
 * between.
 */
void
ExecKeptPlanIntoSRF(FunctionCallInfo fcinfo, SPIPlanPtr plan, Datum *values,
					const char *nulls, long count)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	SPIExecuteOptions options;
	DestReceiver *dest;
	ParamListInfo params = ParamsOf(plan, values, nulls);
	int			rc;

	dest = CreateDestReceiver(DestTuplestore);
	SetTuplestoreDestReceiverParams(dest, rsinfo->setResult,
									rsinfo->econtext->ecxt_per_query_memory,
									true, NULL, NULL);

	memset(&options, 0, sizeof(options));
	options.params = params;
	options.read_only = true;
	options.tcount = count;
	options.dest = dest;

	rc = SPI_execute_plan_extended(plan, &options);
	if (rc < 0)
		elog(ERROR, "SPI_execute_plan_extended failed: %s",
			 SPI_result_code_string(rc));
	dest->rDestroy(dest);
}

/*
 * Read column `column` (1-based) of the first result row as int64; false
 * when there is no row or the value is NULL.
 */
bool
GetInt64Result(int column, int64 *value)
{
	bool		isnull;
	Datum		d;

	if (SPI_processed == 0)
		return false;
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, column,
					  &isnull);
	if (isnull)
		return false;
	*value = DatumGetInt64(d);
	return true;
}

/* Connect to SPI, or fail: every caller needs it to go on. */
void
ConnectSpi(void)
{
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
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
	bool		found;

	ConnectSpi();
	ExecKeptPlan(KeptPlan(cache, sql, nargs, argtypes), values, NULL, true, 1);
	found = GetInt64Result(1, result);
	SPI_finish();
	return found;
}
