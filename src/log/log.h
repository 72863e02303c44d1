/*
 * log/log.h
 *		The event log: validated batches, the writer that appends them, places
 *		in the global log's order, and the ids and hashes events carry.
 */
#ifndef ES_LOG_H
#define ES_LOG_H

#include "access/htup.h"
#include "access/transam.h"
#include "access/tupdesc.h"
#include "common/table_writer.h"
#include "utils/jsonb.h"
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
extern LogPlace LogPlaceOfRow(HeapTuple row, TupleDesc desc);
extern FullTransactionId LogHorizonOf(Snapshot snapshot);
extern FullTransactionId LastCommittedXid(void);

/* log_writer.c */
typedef struct LogWriter LogWriter;
typedef struct EventRows EventRows;

extern LogWriter *LogWriterOpen(const char *operation);
extern bool LogWriterLockStream(LogWriter *w, text *stream_id, int64 *revision,
								RowCreator create, void *arg);
extern void LogWriterAdvanceStream(LogWriter *w, int64 revision,
								   TimestampTz now);
extern int64 LogWriterInsertEvent(LogWriter *w, FullTransactionId xid,
								  text *stream_id, int64 revision,
								  EventInput *event, TimestampTz now,
								  EventRows *rows);
extern void LogWriterClose(LogWriter *w);

/* uuid_v7.c */
extern void GenerateUuidV7(pg_uuid_t *out, int count);

/* stream_hash.c */
extern uint32 StreamHash(const char *stream_id, int len);

#endif							/* ES_LOG_H */
