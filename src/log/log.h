/*
 * log/log.h
 *		The event log: validated batches, places in the global log's order,
 *		and the ids events carry.
 */
#ifndef ES_LOG_H
#define ES_LOG_H

#include "access/htup.h"
#include "access/transam.h"
#include "access/tupdesc.h"
#include "utils/jsonb.h"
#include "utils/relcache.h"
#include "utils/snapshot.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

/* One event of a batch, validated and ready to insert. */
typedef struct EventInput
{
	pg_uuid_t	id;
	bool		id_given;		/* the caller chose the id */
	text	   *type;
	Jsonb	   *data;
	Jsonb	   *metadata;
	int32		schema_version; /* validated against; 0: its type has none */
} EventInput;

/* A validated batch of events for one stream. */
typedef struct EventBatch
{
	int			count;
	bool		any_id_given;
	bool		all_ids_given;
	EventInput *events;
} EventBatch;

/* A stream's tombstone, as delete_stream left it. */
typedef struct StreamDeletion
{
	bool		deleted;		/* the stream reads as deleted now */
	bool		hard;			/* deleted for good: its id is never used again */
	int64		revision;		/* its events up to this read as deleted; -1: none */
} StreamDeletion;

/* append.c */
extern void CheckLockedStreamRevision(text *stream_id, bool any, int64 expected,
									  int64 current, StreamDeletion deletion);
extern void ReportStreamDeletedForGood(text *stream_id, const char *operation)
			pg_attribute_noreturn();

/* event_batch.c */
extern EventBatch *EventBatchFromJsonb(Jsonb *events);
extern EventBatch *EventBatchFromOne(text *type, Jsonb *data, Jsonb *metadata,
									 pg_uuid_t *id);

/* names.c */
extern void RequireMeaningfulName(const char *bytes, int len, const char *what,
								  int index);

/* A place in the global log's order: (transaction_id, global_position). */
typedef struct LogPlace
{
	FullTransactionId xid;
	int64		position;
} LogPlace;

/* log_order.c */
extern const LogPlace LogStart;
extern LogPlace RequireLogPlace(int64 position, Snapshot snapshot,
								const char *argname, const char *hint);
extern int	CompareLogPlaces(LogPlace a, LogPlace b);
extern LogPlace LogPlaceOfRow(HeapTuple row, TupleDesc desc);
extern bool LastPlaceBelow(FullTransactionId horizon, Snapshot snapshot,
						   LogPlace *place);
extern FullTransactionId LastCommittedXid(void);
extern FullTransactionId StreamEventKey(Relation events, text *stream_id,
										int64 revision);
extern FullTransactionId KeyAfter(FullTransactionId own_key,
								  FullTransactionId previous);
extern FullTransactionId StreamOrderedKey(Relation events,
										  FullTransactionId own_key,
										  text *stream_id, int64 revision);

/* incarnation.c */

/*
 * Each incarnation of the log (a cluster, database and timeline that wrote
 * it) issues its positions from a block of its own: multiples of 2^40.
 */
#define POSITION_BLOCK_BITS 40

extern FullTransactionId LogHorizonOf(Snapshot snapshot);
extern bool LogOffsetSeenBy(Snapshot snapshot, int64 *offset);
extern int64 LogOffsetForWrite(bool subscriber);
extern void MovePositionsToNewBlock(void);
extern FullTransactionId OwnLogKey(int64 offset);
extern void ReportPositionNotInLog(int64 position, Relation events,
								   Snapshot snapshot, const char *hint)
			pg_attribute_noreturn();

/* subscriber.c */
extern bool SubscriberModeOn(Relation events);
extern void RefuseAppendOnSubscriber(Relation events);

/* uuid_v7.c */
extern void GenerateUuidV7(pg_uuid_t *out, int count);

#endif							/* ES_LOG_H */
