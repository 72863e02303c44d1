/*
 * module.c
 *		Module entry point of pg_eventstore: its settings.
 */
#include "postgres.h"

#include "fmgr.h"
#include "pg_eventstore.h"
#include "utils/guc.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/*
 * Loaded with shared_preload_libraries (or on first use): define the
 * settings.
 */
void
_PG_init(void)
{
	DefineCustomIntVariable("pg_eventstore.batch_size",
							"Events a projection applies per batch.",
							"Each batch and the checkpoint after it commit together; run_projection applies batch after batch in its caller's transaction.",
							&ProjectionBatchSize,
							1000, 1, 1000000,
							PGC_USERSET, 0,
							NULL, NULL, NULL);
	MarkGUCPrefixReserved("pg_eventstore");
}
