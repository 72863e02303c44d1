/*
 * pg_eventstore.h
 *		Declarations shared between the source files of pg_eventstore.
 */
#ifndef PG_EVENTSTORE_H
#define PG_EVENTSTORE_H

#include "postgres.h"

#include "access/skey.h"
#include "access/transam.h"
#include "executor/tuptable.h"
#include "executor/spi.h"
#include "tcop/dest.h"
#include "fmgr.h"
#include "nodes/pg_list.h"
#include "storage/lockdefs.h"
#include "utils/jsonb.h"
#include "utils/snapshot.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"
#include "utils/xid8.h"

/*
 * SQLSTATEs of the event store's own class "SE".  Every one is listed in the
 * README; keep the two in step.
 */
#define ERRCODE_ES_WRONG_EXPECTED_REVISION	MAKE_SQLSTATE('S','E','0','0','1')
#define ERRCODE_ES_DUPLICATE_EVENT_ID		MAKE_SQLSTATE('S','E','0','0','2')
#define ERRCODE_ES_UNKNOWN_POSITION			MAKE_SQLSTATE('S','E','0','0','3')
#define ERRCODE_ES_APPEND_ONLY				MAKE_SQLSTATE('S','E','0','0','4')
#define ERRCODE_ES_UNKNOWN_PROJECTION		MAKE_SQLSTATE('S','E','0','0','5')
#define ERRCODE_ES_PROJECTION_EXISTS		MAKE_SQLSTATE('S','E','0','0','6')

/* Stream ids and processor names are btree keys, whose size is bounded. */
#define ES_MAX_KEY_BYTES	1000

/* expected_revision values with a meaning of their own */
#define ES_EXPECT_NO_STREAM		(-1)
#define ES_EXPECT_STREAM_EXISTS	(-2)

/* One event of a batch, validated and ready to insert. */
typedef struct EventInput
{
	pg_uuid_t	id;
	bool		id_given;		/* the caller chose the id */
	text	   *type;
	Jsonb	   *data;
	Jsonb	   *metadata;
} EventInput;

/* A validated batch of events for one stream. */
typedef struct EventBatch
{
	int			count;
	bool		any_id_given;
	bool		all_ids_given;
	EventInput *events;
} EventBatch;

/* event_batch.c */
extern EventBatch *EventBatchFromJsonb(Jsonb *events);
extern EventBatch *EventBatchFromOne(text *type, Jsonb *data, Jsonb *metadata,
									 pg_uuid_t *id);

/* Column numbers of eventstore.checkpoints (checkpoints.c, processors.c). */
enum
{
	CP_PROCESSOR_ID = 1,
	CP_PARTITION,
	CP_POSITION,
	CP_TRANSACTION_ID,
	CP_OWNER_INSTANCE,
	CP_OWNER_PID,
	CP_CLAIMED_AT,
	CP_UPDATED_AT,
	CP_NATTS = CP_UPDATED_AT
};

/* A place in the global log's order: (transaction_id, global_position). */
typedef struct LogPlace
{
	FullTransactionId xid;
	int64		position;
} LogPlace;

/* log_order.c */
extern const LogPlace LogStart;
extern bool LookupLogPlace(int64 position, Snapshot snapshot, LogPlace *place);
extern LogPlace RequireLogPlace(int64 position, Snapshot snapshot,
								const char *argname, const char *hint);
extern int	CompareLogPlaces(LogPlace a, LogPlace b);

/* The status of a projection, as eventstore.projections.status spells it. */
typedef enum ProjectionStatus
{
	PROJECTION_ACTIVE,
	PROJECTION_REBUILDING,
	PROJECTION_FAILED,
	PROJECTION_STOPPED
} ProjectionStatus;

/* A registered projection: a row of eventstore.projections. */
typedef struct Projection
{
	int32		id;
	char	   *name;
	int32		version;
	Oid			handler;
	bool		batch_handler;	/* takes eventstore.events[] */
	int			ntypes;			/* 0: every event type */
	char	  **types;
	bool		inline_mode;
	bool		skip_errors;	/* on_error = 'skip' */
	char	   *on_reset;		/* NULL: none */
	Oid			owner;
	ProjectionStatus status;
	bool		caught_up;		/* its replay from the start is done */
	LogPlace	checkpoint;
	FullTransactionId replay_until; /* see eventstore.projections */
	FmgrInfo   *call;			/* the handler's prepared call, or NULL */
} Projection;

/*
 * The advisory locks of a projection, keyed by its projection_id.  Inline
 * applications hold APPLY shared (try only); rebuilds and status changes
 * take it exclusive.  RUNNER, exclusive, makes one runner at a time apply
 * a projection's batches.  Both show in pg_locks with this objsubid.
 */
#define PROJECTION_APPLY_LOCK	0x5041
#define PROJECTION_RUNNER_LOCK	0x5052

/* The columns every registry read selects, in ProjectionFromRow's order. */
#define PROJECTION_COLUMNS \
	"projection_id, name, version, handler, batch_handler, event_types," \
	" mode, on_reset, on_error, owner, status, caught_up, \"position\"," \
	" transaction_id, replay_until"

/* projection_registry.c */
extern Projection *ProjectionFromRow(HeapTuple row, TupleDesc desc);
extern List *LoadProjections(text *name, bool all_versions, int32 version,
							 bool latest_only);
extern Projection *ReloadProjection(int32 id);
extern Projection *FindProjection(text *name, int32 version);
extern void SaveProjectionProgress(Projection *p, int64 applied);
extern void RecordProjectionFailure(Projection *p, ErrorData *error,
									int64 position, pg_uuid_t *event_id);
extern void NoteProjectionsChanged(void);
extern FullTransactionId LastCommittedXid(void);
extern bool LockProjection(int32 id, uint16 kind, LOCKMODE mode, bool wait);
extern Oid	ExtensionOwner(void);
extern bool ProjectionWantsType(const Projection *p, const char *type, int len);

/* projection_apply.c */
typedef struct EventRows EventRows;
extern EventRows *EventRowsCreate(int capacity);
extern void EventRowsAdd(EventRows *rows, HeapTuple tuple, TupleDesc desc);
extern void EventRowsAddValues(EventRows *rows, Datum *values);
extern DestReceiver *EventRowsDest(EventRows *rows);
extern void EventRowsCopy(EventRows *rows, EventRows *from, int i);
extern int	EventRowsCount(EventRows *rows);
extern int64 EventRowsPosition(EventRows *rows, int i);
extern LogPlace EventRowsPlace(EventRows *rows, int i);
extern void EventRowsReset(EventRows *rows);
extern int	ApplyEvents(Projection *p, EventRows *rows, int first, int count,
						bool isolate, ErrorData **error);
extern text *EventRowsType(EventRows *rows, int i);
extern pg_uuid_t *EventRowsId(EventRows *rows, int i);
extern void RunOnReset(Projection *p);
extern bool HandlerExists(Projection *p);

/* projection_cache.c */
extern void ApplyInlineProjections(EventRows *rows);
extern bool PrepareProjectionsForAppend(EventBatch *batch);

/* worker.c and worker_state.c: the background workers */
#define ES_MAX_WORKERS 64
extern char *WorkerDatabases;
extern int	WorkerMaxWorkers;
extern int	WorkerPollInterval;
extern int	WorkerRebuildThrottle;
extern int	WorkerRetryInterval;
extern void InstallWorkerShmemHooks(void);
extern void PublishWorker(int index);
extern void StartLauncherGeneration(void);
extern uint64 LauncherGeneration(void);
extern void WakeWorkersAtCommit(void);
extern void CountWorkerEvents(int32 projection_id, int64 events);

/* projection_runner.c */
extern int	ProjectionBatchSize;
extern int64 RunProjection(Projection *p, int64 max_events, bool wait,
						   bool *busy, bool *exhausted);

/* table_writer.c */
typedef struct TableWriter TableWriter;
extern Oid	EventstoreRelid(const char *name);
extern TableWriter *TableWriterOpen(const char *operation, int ntables,
									const char *const *names, const int *natts);
extern void TableWriterClose(TableWriter *w);
extern void TableWriterKey(TableWriter *w, int t, ScanKey key, AttrNumber attno,
						   RegProcedure eqproc, Datum value);
extern TupleTableSlot *TableWriterLockRow(TableWriter *w, int t, int nkeys,
										  ScanKey keys, const char *what);
extern TupleTableSlot *TableWriterTryLockRow(TableWriter *w, int t, int nkeys,
											 ScanKey keys, bool *busy);
extern bool TableWriterRowExists(TableWriter *w, int t, int nkeys, ScanKey keys);
extern TupleTableSlot *TableWriterLockedRow(TableWriter *w, int t);
extern TupleTableSlot *TableWriterNewRow(TableWriter *w, int t);
extern TupleTableSlot *TableWriterCopyOfLocked(TableWriter *w, int t);
extern void TableWriterInsert(TableWriter *w, int t, TupleTableSlot *row);
extern void TableWriterUpdate(TableWriter *w, int t, TupleTableSlot *row);

/* log_writer.c */
typedef struct LogWriter LogWriter;
extern LogWriter *LogWriterOpen(const char *operation);
extern bool LogWriterLockStream(LogWriter *w, text *stream_id, int64 *revision);
extern void LogWriterAdvanceStream(LogWriter *w, int64 revision,
								   TimestampTz now);
extern int64 LogWriterInsertEvent(LogWriter *w, FullTransactionId xid,
								  text *stream_id, int64 revision,
								  EventInput *event, TimestampTz now,
								  EventRows *rows);
extern void LogWriterClose(LogWriter *w);

/* uuid_v7.c */
extern void GenerateUuidV7(pg_uuid_t *out, int count);

/* spi_plans.c */
extern SPIPlanPtr KeptPlan(SPIPlanPtr *cache, const char *sql, int nargs,
						   const Oid *argtypes);
extern ParamListInfo ParamsOf(SPIPlanPtr plan, Datum *values, const char *nulls);
extern int	ExecKeptPlan(SPIPlanPtr plan, Datum *values, const char *nulls,
						 bool read_only, long count);
extern void ExecKeptPlanIntoSRF(FunctionCallInfo fcinfo, SPIPlanPtr plan,
								Datum *values, const char *nulls,
								long count);
extern bool GetInt64Result(int column, int64 *value);
extern void ConnectSpi(void);
extern int	RunKeptStatement(SPIPlanPtr *cache, const char *sql, int nargs,
							 const Oid *argtypes, Datum *values);
extern bool RunKeptInt64Query(SPIPlanPtr *cache, const char *sql, int nargs,
							  const Oid *argtypes, Datum *values, int64 *result);

/* stream_hash.c */
extern uint32 StreamHash(const char *stream_id, int len);

/* validation helpers (event_batch.c) */
extern text *RequireStreamId(FunctionCallInfo fcinfo, int argno);
extern text *RequireName(FunctionCallInfo fcinfo, int argno, const char *argname);

#endif							/* PG_EVENTSTORE_H */
