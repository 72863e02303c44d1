/*
 * worker/worker.h
 *		The background workers: the launcher, the per-database workers, and
 *		the shared state through which appends wake them.
 */
#ifndef ES_WORKER_H
#define ES_WORKER_H

#include "fmgr.h"
#include "nodes/pg_list.h"

/* What the launcher tells a worker, in bgw_extra. */
typedef struct WorkerAssignment
{
	char		database[NAMEDATALEN];
	int			slot;			/* in the shared worker slots */
	int			member;			/* its place among the database's workers */
	int			members;		/* how many the database is given */
} WorkerAssignment;

/* A projection whose batch a worker died in (in_flight.c). */
typedef struct WorkerCasualty
{
	int32		projection_id;
	int64		position;		/* its checkpoint when the batch started */
	int			deaths;			/* workers that died there */
} WorkerCasualty;

/* launcher.c */
extern void RegisterLauncher(void);
PGDLLEXPORT void eventstore_launcher_main(Datum arg);

/* worker.c */
PGDLLEXPORT void eventstore_worker_main(Datum arg);
extern void RecoverFromError(void);

/* in_flight.c */
extern void WatchInFlightBatches(void);
extern void NoteBatchStarts(int32 projection_id, int64 position);
extern void NoteBatchEnded(void);
extern List *TakeCasualties(void);

/* shared_state.c */
extern void InstallWorkerShmemHooks(void);
extern void PublishWorker(int index);
extern void WorkerShare(int slot, int *rank, int *count);
extern void StartLauncherGeneration(void);
extern uint64 LauncherGeneration(void);
extern void WakeWorkersAtCommit(void);
extern void CountWorkerEvents(int32 projection_id, int64 events);

#endif							/* ES_WORKER_H */
