/*
 * retention/retention.h
 *		Removal from the log: the only way past its append-only guard, and
 *		the record every removal leaves in eventstore.maintenance_log.
 */
#ifndef ES_RETENTION_H
#define ES_RETENTION_H

#include "postgres.h"

#include "log/log.h"
#include "log/log_writer.h"

/* What a maintenance function may do to eventstore.events (a bit set). */
typedef enum LogChange
{
	LOG_CHANGE_NONE = 0,
	LOG_CHANGE_UPDATE = 1 << 0, /* redaction rewrites data in place */
	LOG_CHANGE_DELETE = 1 << 1	/* hard deletion, archival, retention */
} LogChange;

/* log_guard.c */
extern LogChange AllowLogChange(LogChange changes);
extern void RestoreLogChange(LogChange previous);
extern bool LogChangeAllowed(LogChange change);

/* maintenance_log.c */
extern int64 StartMaintenance(const char *action, const char *target,
							  const char *reason, const char *performed_by);
extern void FinishMaintenance(int64 maintenance_id, int64 events,
							  const char *details_json);

/* delete_stream.c */
extern LogWriter *LockStreamForMaintenance(const char *operation,
										   text *stream_id, int64 *revision,
										   StreamDeletion *deletion);

/*
 * redact.c: what a redacted value becomes, in the whole data or in place of
 * each redacted top-level key's value
 */
#define REDACTION_MARKER "{\"$redacted\": true}"

extern bool JsonbIsRedactionMarker(Jsonb *data);

/*
 * SQL saying whether jsonb `data` was redacted (wholly, or a top-level
 * key): such an event need not match its type's schema any more.
 */
#define DATA_IS_REDACTED(data) \
	"(" data " = '" REDACTION_MARKER "'::jsonb OR (jsonb_typeof(" data ") = 'object'" \
	" AND EXISTS (SELECT FROM jsonb_each(" data ") redacted" \
	"  WHERE redacted.value = '" REDACTION_MARKER "'::jsonb)))"

#endif							/* ES_RETENTION_H */
