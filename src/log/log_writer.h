/*
 * log/log_writer.h
 *		The append path's writes: lock and advance a stream's row, insert
 *		its events.
 */
#ifndef ES_LOG_WRITER_H
#define ES_LOG_WRITER_H

#include "core/table_writer.h"
#include "log/event_rows.h"
#include "log/log.h"

typedef struct LogWriter LogWriter;

extern LogWriter *LogWriterOpen(const char *operation);
extern Relation LogWriterEvents(LogWriter *w);
extern bool LogWriterLockStream(LogWriter *w, text *stream_id, int64 *revision,
								RowCreator create, void *arg, bool find,
								bool *found_only);
extern FullTransactionId LogWriterStreamKey(LogWriter *w);
extern bool LogWriterKeepsStreamKeys(LogWriter *w);
extern StreamDeletion LogWriterStreamDeletion(LogWriter *w);
extern void LogWriterDeleteStream(LogWriter *w, bool hard, TimestampTz now);
extern bool LogWriterAdvanceStream(LogWriter *w, int64 revision,
								   FullTransactionId key, TimestampTz now);
extern int64 LogWriterInsertEvent(LogWriter *w, FullTransactionId xid,
								  text *stream_id, int64 revision,
								  EventInput *event, TimestampTz now,
								  EventRows *rows);
extern void LogWriterClose(LogWriter *w);

#endif							/* ES_LOG_WRITER_H */
