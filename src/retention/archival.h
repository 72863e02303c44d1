/*
 * retention/archival.h
 *		Archival and retention: the batches that move old events into
 *		eventstore.events_archive or remove them under a retention rule, each
 *		a few statements in the caller's transaction, and the worker's turn
 *		that runs them in transactions of their own.
 */
#ifndef ES_ARCHIVAL_H
#define ES_ARCHIVAL_H

#include "postgres.h"

#include "utils/palloc.h"

/* pg_eventstore.maintenance_batch_size: events per maintenance transaction */
extern int	MaintenanceBatchSize;

/* pg_eventstore.retention_interval: seconds between retention passes */
extern int	RetentionInterval;

/* pg_eventstore.maintenance_throttle: events per second; 0: no limit */
extern int	MaintenanceThrottle;

/*
 * Where a retention pass over the streams has got to: the last stream done
 * (NULL: none yet) and its row in maintenance_log (0: none written yet, the
 * pass has removed nothing so far).
 */
typedef struct RetentionPass
{
	char	   *after_stream;
	int64		maintenance_id;
	int64		removed;
	MemoryContext context;		/* where after_stream lives */
} RetentionPass;

/* archive.c */
extern void DefineMaintenanceSettings(void);
extern bool LockMaintenance(bool wait);
extern int64 RunArchivalBatch(int limit, bool *more);
extern int64 RunRetentionBatch(RetentionPass *pass, int limit, bool *done);
extern bool RetentionRulesExist(void);
extern void FinishInterruptedPasses(void);

/* enforce.c */
struct WorkerAssignment;
extern bool RunMaintenanceTurn(struct WorkerAssignment *a, MemoryContext context);

#endif							/* ES_ARCHIVAL_H */
