/*
 * log/type_scan.h
 *		Scans of the log in log order, by type (type_scan.c): merged scans
 *		per type for a few types.
 */
#ifndef ES_TYPE_SCAN_H
#define ES_TYPE_SCAN_H

#include "executor/spi.h"

/* the most types read by merged scans per type; more: one filtered scan */
#define TYPE_SCAN_MAX_TYPES 32

/* the kept plans of one statement of a caller: by number of types */
typedef struct LogScanPlans
{
	SPIPlanPtr	filtered;		/* every type, or the filter on many */
	SPIPlanPtr	by_types[TYPE_SCAN_MAX_TYPES + 1];	/* [n]: merged, n types */
} LogScanPlans;

extern SPIPlanPtr LogScanPlan(LogScanPlans *plans, Datum *types,
							  bool types_null, const char *conditions,
							  const char *types_param, const char *limit_param,
							  int nargs, const Oid *argtypes);

#endif							/* ES_TYPE_SCAN_H */
