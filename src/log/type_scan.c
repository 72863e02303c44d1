/*
 * log/type_scan.c
 *		Reading the events of a few types in log order without walking the
 *		whole log: one ordered scan per type, merged.
 *
 * events_type_order_idx holds (event_type, transaction_id, global_position):
 * for one type, its part of the index is that type's events in log order.
 * A statement that reads some types in log order is written as a UNION ALL
 * of one ordered, limited scan per type under ORDER BY ... LIMIT, which the
 * planner makes a Merge Append of index scans on that index: it reads the
 * events it returns (and one more per type), where a scan of the log-order
 * index with a filter on the type reads every event between them.  (Each
 * branch has its own ORDER BY and LIMIT: a UNION ALL branch with a WHERE
 * clause is planned as a subquery of its own, which without them would
 * pick its cheapest unordered plan, and the merge would become a sort of
 * every event of the types.)  A type array
 * has any length, a statement a fixed number of scans: each caller keeps
 * one plan per number of types, up to TYPE_SCAN_MAX_TYPES; above that (and
 * for every type) one statement scans the log-order index with a filter.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "core/kept_plans.h"
#include "lib/stringinfo.h"
#include "log/type_scan.h"
#include "utils/array.h"
#include "utils/builtins.h"

/* text datums by their bytes (any order does: only duplicates matter) */
static int
CompareTexts(const void *a, const void *b)
{
	text	   *x = DatumGetTextPP(*(const Datum *) a);
	text	   *y = DatumGetTextPP(*(const Datum *) b);
	int			lx = VARSIZE_ANY_EXHDR(x);
	int			ly = VARSIZE_ANY_EXHDR(y);
	int			c = memcmp(VARDATA_ANY(x), VARDATA_ANY(y), Min(lx, ly));

	return c != 0 ? c : (lx > ly) - (lx < ly);
}

/*
 * The distinct types of a text[] of event types, NULL elements left out
 * (they match no event): the scans of a merge must not overlap.  Sets
 * *ntypes.
 */
static Datum
DistinctTypes(Datum types, int *ntypes)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			kept = 0;

	deconstruct_array(DatumGetArrayTypeP(types), TEXTOID, -1, false,
					  TYPALIGN_INT, &elems, &nulls, &n);
	for (int i = 0; i < n; i++)
		if (!nulls[i])
			elems[kept++] = elems[i];
	if (kept > 1)
	{
		int			distinct = 1;

		qsort(elems, kept, sizeof(Datum), CompareTexts);
		for (int i = 1; i < kept; i++)
			if (CompareTexts(&elems[i], &elems[distinct - 1]) != 0)
				elems[distinct++] = elems[i];
		kept = distinct;
	}
	*ntypes = kept;
	return PointerGetDatum(construct_array(elems, kept, TEXTOID, -1, false,
										   TYPALIGN_INT));
}

/*
 * The statement for n types: one scan of eventstore.events per type
 * (event_type = types_param[i] and `conditions`), merged in log order,
 * `limit_param` rows.
 */
static char *
TypeScanSql(int n, const char *conditions, const char *types_param,
			const char *limit_param)
{
	StringInfoData sql;

	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT * FROM (");
	for (int i = 1; i <= n; i++)
		appendStringInfo(&sql, "%s(SELECT * FROM eventstore.events"
						 " WHERE event_type = %s[%d] AND %s"
						 " ORDER BY transaction_id, global_position LIMIT %s)",
						 i > 1 ? " UNION ALL " : "", types_param, i, conditions,
						 limit_param);
	appendStringInfo(&sql, ") e ORDER BY transaction_id, global_position LIMIT %s",
					 limit_param);
	return sql.data;
}

/*
 * The kept plan of a scan of eventstore.events in log order: the rows that
 * meet `conditions` (in the caller's parameters) and are of the types
 * *types (a text[] parameter, types_param; types_null: every type), up to
 * limit_param rows.  A few types are read by merged scans per type, and
 * *types is then replaced by its distinct non-null elements; every type,
 * more than TYPE_SCAN_MAX_TYPES, or none that can match (the filter then
 * matches nothing), by one scan of the log-order index with a filter.
 */
SPIPlanPtr
LogScanPlan(LogScanPlans *plans, Datum *types, bool types_null,
			const char *conditions, const char *types_param,
			const char *limit_param, int nargs, const Oid *argtypes)
{
	int			n = 0;
	SPIPlanPtr *cache;
	char	   *sql = NULL;

	if (!types_null)
		*types = DistinctTypes(*types, &n);
	if (n > 0 && n <= TYPE_SCAN_MAX_TYPES)
	{
		cache = &plans->by_types[n];
		if (*cache == NULL)
			sql = TypeScanSql(n, conditions, types_param, limit_param);
	}
	else
	{
		cache = &plans->filtered;
		if (*cache == NULL)
			sql = psprintf("SELECT * FROM eventstore.events WHERE %s"
						   " AND (%s IS NULL OR event_type = ANY (%s))"
						   " ORDER BY transaction_id, global_position LIMIT %s",
						   conditions, types_param, types_param, limit_param);
	}
	if (*cache == NULL)
	{
		KeptPlan(cache, sql, nargs, argtypes);
		pfree(sql);
	}
	return *cache;
}
