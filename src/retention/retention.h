/*
 * retention/retention.h
 *		Removal from the log: the only way past its append-only guard, and
 *		the record every removal leaves in eventstore.maintenance_log.
 */
#ifndef ES_RETENTION_H
#define ES_RETENTION_H

#include "postgres.h"

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

#endif							/* ES_RETENTION_H */
