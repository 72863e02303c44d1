/*
 * read_models/read_models.h
 *		Read models: comparing two of them, the checks of a projection
 *		version, and its promotion behind a stable view.
 */
#ifndef ES_READ_MODELS_H
#define ES_READ_MODELS_H

#include "projections/projections.h"

/* Up to this many failing rows of a check are kept as its sample. */
#define CHECK_SAMPLE_ROWS 5

/* The outcome of one check. */
typedef struct CheckResult
{
	char	   *check_name;
	bool		passed;
	int64		failing_rows;	/* -1: the check raised an error */
	char	   *sample;			/* a jsonb array's text; NULL on error */
	char	   *error;			/* the error's message, or NULL */
	char	   *sqlstate;		/* and its SQLSTATE */
} CheckResult;

/* checks.c */
extern ErrorData *TryWork(Projection *p, ProjectionWork work, void *arg,
						  bool as_owner, bool cancels_fail);
extern Projection *ProjectionAtHead(Projection *p);
extern List *RunProjectionChecks(Projection *p, bool cancels_fail);
extern CheckResult *FirstFailedCheck(List *results);
extern char *CheckResultsJson(List *results);
extern char *CheckFailureDetail(CheckResult *r, List *results);
extern char *CheckFailureSummary(CheckResult *r, List *results);

/* promotion.c */
extern void SaveReadModelPromote(text *name, int32 version,
								 const char *promote);
extern void AutoPromote(Projection *p, bool reached_head);

#endif							/* ES_READ_MODELS_H */
