/*
 * core/args.h
 *		Checks of SQL function arguments shared by the API: each raises an
 *		error with a SQLSTATE, a message naming the argument and a hint.
 */
#ifndef ES_ARGS_H
#define ES_ARGS_H

#include "fmgr.h"

extern void RequireArgNotNull(FunctionCallInfo fcinfo, int argno,
							  const char *argname, const char *hint);
extern text *RequireStreamId(FunctionCallInfo fcinfo, int argno);
extern text *RequireName(FunctionCallInfo fcinfo, int argno, const char *argname);
extern text *RequireEventType(FunctionCallInfo fcinfo, int argno);
extern const char *RequireChoice(FunctionCallInfo fcinfo, int argno,
								 const char *argname, const char *a,
								 const char *b);
extern const char *RequireOneOf(FunctionCallInfo fcinfo, int argno,
								const char *argname,
								const char *const *choices, int n);
extern void RequireNonNegative(int64 value, const char *argname,
							   const char *hint);
extern void RequireAtLeastOne(int64 value, const char *argname,
							  const char *hint);

#endif							/* ES_ARGS_H */
