/*
 * core/kept_plans.h
 *		SPI statements prepared once per backend and kept, and the ways the
 *		extension runs them.
 */
#ifndef ES_KEPT_PLANS_H
#define ES_KEPT_PLANS_H

#include "executor/spi.h"
#include "fmgr.h"
#include "tcop/dest.h"
#include "utils/snapshot.h"

extern void InstallKeptPlanHooks(void);
extern void ConnectSpi(void);
extern SPIPlanPtr KeptPlan(SPIPlanPtr *cache, const char *sql, int nargs,
						   const Oid *argtypes);
extern int	ExecKeptPlan(SPIPlanPtr plan, Datum *values, const char *nulls,
						 bool read_only, long count);
extern void QueryKeptPlanThrough(SPIPlanPtr plan, Datum *values,
								 const char *nulls, Snapshot snapshot,
								 long count);
extern void ExecKeptPlanInto(SPIPlanPtr plan, Datum *values, const char *nulls,
							 DestReceiver *dest, long count);
extern void ExecKeptPlanIntoSRF(FunctionCallInfo fcinfo, SPIPlanPtr plan,
								Datum *values, const char *nulls, long count);
extern bool GetFirstResult(Datum *value);
extern int	RunKeptStatement(SPIPlanPtr *cache, const char *sql, int nargs,
							 const Oid *argtypes, Datum *values);
extern bool RunKeptInt64Query(SPIPlanPtr *cache, const char *sql, int nargs,
							  const Oid *argtypes, Datum *values, int64 *result);

#endif							/* ES_KEPT_PLANS_H */
