/*
 * module.c
 *		Module entry point of pg_eventstore.
 */
#include "postgres.h"

#include "fmgr.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/*
 * Loaded with shared_preload_libraries (or on first use).  The event log
 * needs no shared state yet; the background worker will register here.
 */
void
_PG_init(void)
{
}
