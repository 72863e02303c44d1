/*
 * projections/projections.h
 *		Projections: the registry and its locks, handlers called as their
 *		owner, inline application inside appends, and the runner of batches,
 *		replays and drains.
 */
#ifndef ES_PROJECTIONS_H
#define ES_PROJECTIONS_H

#include "access/htup.h"
#include "core/catalog.h"
#include "core/role.h"
#include "fmgr.h"
#include "log/event_rows.h"
#include "log/log.h"
#include "nodes/pg_list.h"
#include "storage/lockdefs.h"
#include "utils/array.h"
#include "utils/relcache.h"

/* A registered projection: a row of eventstore.projections. */
typedef struct Projection
{
	int32		id;
	char	   *name;
	int32		version;
	char	   *handler_name;	/* its signature, as the registry keeps it */
	Oid			handler;		/* InvalidOid: no such function now */
	char	   *handler_owner;	/* its owner's name at creation; NULL: not
								 * recorded (a 0.2.0 registry) */
	bool		batch_handler;	/* takes eventstore.events[] */
	bool		upcast;			/* receives events upcast (handler.c) */
	int			ntypes;			/* 0: every event type */
	char	  **types;
	bool		inline_mode;
	bool		skip_errors;	/* on_error = 'skip' or 'park': a poison
								 * event becomes a dead letter */
	bool		park_errors;	/* on_error = 'park': and parks its stream */
	char	   *on_reset;		/* NULL: none */
	char	   *backfill;		/* the set-based first build; NULL: none */
	bool		backfilled;		/* the current build's backfill is done */
	int			parallel;		/* stream-hash partitions of a replay */
	bool		replay_archive;	/* its build from the start also reads
								 * eventstore.events_archive */
	char	   *owner_name;		/* as the registry keeps it */
	Oid			owner;			/* InvalidOid: no such role now */
	ProjectionStatus status;
	bool		caught_up;		/* its replay from the start is done */
	LogPlace	checkpoint;
	FullTransactionId replay_until; /* see eventstore.projections */
	LogPlace	replayed_through;	/* a build from the start applies the
									 * events up to here again (replaying()) */
	ArrayType  *settings;		/* the creator's, name=value; NULL: not
								 * recorded (a 0.2.0 registry) */
	struct OwnerSettings *settings_cache;	/* parsed on first use */
	FmgrInfo   *call;			/* the handler's prepared call, or NULL */
	uint64		call_prepared_at;	/* see HandlerCall */
	uint64		owner_code_passed_at;	/* see MissingOwnerCode; 0: not yet */
} Projection;

/* A projection due for a worker's attention, as listed at a turn's start. */
typedef struct DueProjection
{
	int32		id;
	bool		rebuilding;
	int			parallel;		/* its replay's partitions (parallel) */
} DueProjection;

/*
 * What an application parked under on_error = 'park': the streams parked
 * (on entry those parked before it, as text datums; it adds those it parks)
 * and, per row index, whether the row was parked rather than applied (NULL:
 * the caller does not ask).
 */
typedef struct Parking
{
	List	   *streams;
	bool	   *parked;
} Parking;

/* The most stream-hash partitions a replay is split into (parallel). */
#define MAX_REPLAY_PARTITIONS 64

/* A new registry row, as create_projection checked its arguments. */
typedef struct NewProjection
{
	text	   *name;
	int32		version;
	Oid			handler;
	Oid			handler_owner;	/* the function's owner */
	bool		batch_handler;
	Datum		event_types;	/* text[], or 0 for every type */
	const char *mode;
	text	   *on_reset;		/* NULL: none */
	const char *on_error;
	Oid			owner;
	Datum		settings;		/* text[]: CaptureCreatorSettings */
	bool		upcast;
	text	   *backfill;		/* NULL: none */
	int32		parallel;
	FullTransactionId replay_until; /* invalid: the log is empty */
} NewProjection;

/*
 * The advisory locks of a projection, keyed by its projection_id.  Inline
 * applications hold APPLY shared (try only); rebuilds and status changes
 * take it exclusive.  RUNNER, exclusive, makes one runner at a time apply
 * a projection's batches.  Both show in pg_locks with this objsubid.
 */
#define PROJECTION_APPLY_LOCK	0x5041
#define PROJECTION_RUNNER_LOCK	0x5052

/*
 * A replay split in stream-hash partitions (partitions.c): each runner of a
 * partition holds the projection's RUNNER lock shared and the partition's
 * own lock (objid the projection_id, objsubid this, the partition number
 * + 1 in the lock's third field) exclusive; whoever joins the partitions,
 * and everyone else who takes RUNNER exclusive, waits for them all.
 */
#define PROJECTION_PARTITION_LOCK	0x5050

/*
 * The part of the log a replay applies: a stream-hash partition of it
 * (index of count), no further than `through` when bounded.  Replay sets
 * done when the partition has passed the replay's horizon.
 */
typedef struct ReplayPartition
{
	int			index;
	int			count;
	bool		bounded;
	LogPlace	through;
	bool		done;
} ReplayPartition;

/*
 * SQL: the pending skip row `s` (an alias of eventstore.projection_skips)
 * neither stands for nor waits behind a dead letter its stream is parked
 * behind (on_error = 'park'), so a drain may deal with it now.
 */
#define SKIP_NOT_PARKED(s) \
	"NOT EXISTS (SELECT FROM eventstore.projection_skips m" \
	" WHERE m.projection_id = " s ".projection_id" \
	" AND m.stream_id = " s ".stream_id" \
	" AND m.drained_at IS NULL AND m.dead_letter_id IS NOT NULL" \
	" AND (m.transaction_id, m.global_position) <=" \
	"  (" s ".transaction_id, " s ".global_position))"

/* registry.c: every read and write of the projection tables */
extern List *LoadProjections(text *name, bool all_versions, int32 version,
							 bool latest_only);
extern Projection *FindProjection(text *name, int32 version);
extern Projection *ReloadProjection(int32 id);
extern List *LoadAllProjections(MemoryContext context);
extern List *ReadDueProjections(int member, int members, MemoryContext context);
extern bool RegistryKeepsOids(void);
extern const char *OwnerOfProjectionName(text *name);
extern void InsertProjection(NewProjection *np);
extern void DeleteProjection(int32 id);
extern char *ProjectionsOwnedBy(const char *owner);
extern void ReassignProjections(const char *from, const char *to);
extern void DropProjectionsOwnedBy(const char *owner);
extern void ResetProjectionForRebuild(Projection *p, FullTransactionId replay_until);
extern void SetReplayArchive(Projection *p, bool include_archive);
extern void SaveProjectionProgress(Projection *p, int64 applied);
extern void SetProjectionStatus(Projection *p, ProjectionStatus status);
extern void RecordProjectionFailure(Projection *p, ErrorData *error,
									int64 position, pg_uuid_t *event_id);
extern void RecordSkip(Projection *p, EventRows *rows, int i);
extern bool StreamHasPendingSkips(Projection *p, Datum stream_id);
extern int64 RecordDeadLetter(Projection *p, EventRows *rows, int i,
							  ErrorData *error);
extern void RecordParked(Projection *p, EventRows *rows, int i,
						 int64 dead_letter_id);
extern bool RegistryParks(void);
extern List *ParkedStreams(Projection *p, EventRows *rows, int n);
extern void ResolveDeadLetter(Projection *p, int64 dead_letter_id,
							  const char *resolution, const char *by);
extern void RecordRetryFailure(int64 dead_letter_id, ErrorData *error);
extern void ReturnDeadLettersToReplay(Projection *p, const char *by);
extern void MarkSkipsDrained(Projection *p, int64 *positions, int n,
							 bool applied);
extern bool LockProjection(int32 id, uint16 kind, LOCKMODE mode, bool wait);
extern bool ProjectionWantsType(const Projection *p, const char *type, int len);

/* pending_skips.c: which projections have no pending skip */
extern bool NoPendingSkipsKnown(int32 projection_id);
extern void NoteNoPendingSkips(Relation skips, int32 projection_id);

/* handler.c: the owner's code */
extern ErrorData *MissingOwnerCode(Projection *p);
extern void CallHandler(Projection *p, EventRows *rows, int first, int count);
extern void RunOnReset(Projection *p);
extern RoleSwitch EnterProjectionOwner(Projection *p);
extern void LeaveProjectionOwner(RoleSwitch saved);

/* owner_settings.c: what the owner's code runs with */
extern Datum CaptureCreatorSettings(const char *search_path);
typedef struct OwnerSettings OwnerSettings;
extern void ApplyOwnerSettings(ArrayType *settings, OwnerSettings **cache,
							   MemoryContext context);
extern char *UnsafeHandlerSearchPath(Oid handler);
extern char *UnsafeSearchPathOf(HeapTuple proc);

/* owner_guard.c: what the owner's code may not do to the session */
extern void InstallOwnerGuard(void);
extern void RefuseInOwnerCode(Node *statement);
extern void EnteredOwnerCode(void);
extern void LeftOwnerCode(void);

/* apply.c */
typedef void (*ProjectionWork) (Projection *p, void *arg);
extern bool IsPoison(ErrorData *error);
extern bool SetReplaying(bool replaying);
extern ErrorData *TrySubtransaction(Projection *p, ProjectionWork work,
									void *arg, bool keep);
extern int	ApplyEvents(Projection *p, EventRows *rows, int first, int count,
						bool isolate, ErrorData **error);
extern int	ApplyEventsParking(Projection *p, EventRows *rows, int first,
							   int count, bool isolate, bool replaying,
							   Parking *parking, ErrorData **error);
extern ErrorData *RetryEvent(Projection *p, EventRows *rows, int i,
							 bool replaying);
extern bool StreamIsIn(List *streams, Datum stream_id);

/* inline.c */
extern bool PrepareProjectionsForAppend(EventBatch *batch);
extern void ApplyInlineProjections(EventRows *rows);

/* backfill.c */
extern bool BackfillPending(Projection *p);
extern bool Backfill(Projection *p);

/* runner.c */
extern void AdvanceToHead(Projection *p, Snapshot snapshot,
						  FullTransactionId horizon);
extern int64 RunProjection(Projection *p, int64 max_events, bool wait,
						   int first_partition, bool *busy, bool *exhausted);
extern int64 Replay(Projection *p, int64 max_events, ReplayPartition *part,
					bool *at_head);

/* partitions.c: replays split in stream-hash partitions (parallel) */
extern void SplitReplay(int32 projection_id);
extern bool ReplayIsSplit(Projection *p);
extern int64 ReplayMark(Projection *p);
extern bool RunPartitions(Projection *p, int64 max_events, bool wait,
						  int first, int64 *applied, bool *busy,
						  bool *exhausted);
extern void SavePartitionProgress(Projection *p, ReplayPartition *part,
								  int64 applied);
extern int64 ResolveDeadLetters(Projection *p, text *stream_id, bool retry,
								const char *by);

/* api.c: what the SQL functions of projections share */
extern RoleSwitch EnterAsOwner(void);
extern void LeaveOwner(RoleSwitch caller);
extern void RequireOwnership(RoleSwitch caller, Projection *p,
							 const char *action);
extern int32 GetVersion(FunctionCallInfo fcinfo, int argno, bool null_ok);

#endif							/* ES_PROJECTIONS_H */
