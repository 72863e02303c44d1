/*
 * log/log_writer.c
 *		The append path's writes: lock and advance a stream's row, insert
 *		its events.  Made through table_writer.c rather than SQL statements,
 *		whose executor start-up per statement cost more than the work.
 */
#include "postgres.h"

#include "commands/sequence.h"
#include "core/catalog.h"
#include "core/errors.h"
#include "core/table_writer.h"
#include "log/event_rows.h"
#include "log/log.h"
#include "log/log_writer.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/xid8.h"

/* The writer's tables, in TableWriterOpen's order. */
enum
{
	STREAMS_TABLE,
	EVENTS_TABLE
};

struct LogWriter
{
	TableWriter *tables;
	Oid			sequence;
	bool		stream_keys;	/* streams keeps its last key (0.3.0 on) */
	bool		schema_versions;	/* events keep their schema version (0.3.0 on) */
};

/* Open the log's tables for one append by SQL function `operation`. */
LogWriter *
LogWriterOpen(const char *operation)
{
	static const char *const names[] = {"streams", "events"};
	LogWriter  *w = palloc(sizeof(LogWriter));
	int			natts[2];

	/* a 0.2.0 table, which this library writes until the update, has not */
	w->stream_keys = get_attnum(EventstoreRelid("streams"), "transaction_id") ==
		STREAMS_TRANSACTION_ID;
	natts[0] = w->stream_keys ? STREAMS_NATTS : STREAMS_TRANSACTION_ID - 1;
	/*
	 * nor its events a schema_version: the update to 0.3.0 adds both (a
	 * table with one and not the other fails TableWriterOpen's check of the
	 * column count, never misread)
	 */
	w->schema_versions = w->stream_keys;
	natts[1] = w->schema_versions ? EVENTS_NATTS : EVENTS_SCHEMA_VERSION - 1;
	w->tables = TableWriterOpen(operation, 2, names, natts);
	w->sequence = EventstoreRelid("global_position_seq");
	return w;
}

/* The events table, for lookups of the append's own. */
Relation
LogWriterEvents(LogWriter *w)
{
	return TableWriterRelation(w->tables, EVENTS_TABLE);
}

/* Fire queued AFTER triggers and release the tables. */
void
LogWriterClose(LogWriter *w)
{
	TableWriterClose(w->tables);
	pfree(w);
}

/*
 * Lock the stream's row, waiting for a concurrent appender to commit or
 * abort, and return true with its revision.  When the stream does not
 * exist, `create` is called to create it: false is returned once it did,
 * and a concurrent first append that created it first is waited for and
 * its row locked instead.  With `find`, a row no transaction holds comes
 * back found but not locked (*found_only): LogWriterAdvanceStream takes it
 * then, or says that it changed meanwhile (TableWriterFindOrCreate).
 */
bool
LogWriterLockStream(LogWriter *w, text *stream_id, int64 *revision,
					RowCreator create, void *arg, bool find, bool *found_only)
{
	ScanKeyData key;
	bool		isnull;
	char	   *what = psprintf("stream \"%s\"", text_to_cstring(stream_id));
	RowLockResult result;

	TableWriterKey(w->tables, STREAMS_TABLE, &key, STREAMS_STREAM_ID, F_TEXTEQ,
				   PointerGetDatum(stream_id));
	result = find ?
		TableWriterFindOrCreate(w->tables, STREAMS_TABLE, 1, &key, what,
								create, arg) :
		TableWriterLockOrCreate(w->tables, STREAMS_TABLE, 1, &key, what, true,
								create, arg);
	*found_only = result == ROW_FOUND;
	if (result == ROW_CREATED)
		return false;
	*revision = DatumGetInt64(slot_getattr(TableWriterLockedRow(w->tables, STREAMS_TABLE),
										   STREAMS_REVISION, &isnull));
	return true;
}

/*
 * The log key of the locked stream's last event, as its row keeps it;
 * InvalidFullTransactionId when it does not (a row from before 0.3.0, or a
 * 0.2.0 table): the caller looks it up in the log.
 */
FullTransactionId
LogWriterStreamKey(LogWriter *w)
{
	bool		isnull;
	Datum		key;

	if (!w->stream_keys)
		return InvalidFullTransactionId;
	key = slot_getattr(TableWriterLockedRow(w->tables, STREAMS_TABLE),
					   STREAMS_TRANSACTION_ID, &isnull);
	return isnull ? InvalidFullTransactionId : DatumGetFullTransactionId(key);
}

/* Do the stream rows keep their last key (StreamKey)? */
bool
LogWriterKeepsStreamKeys(LogWriter *w)
{
	return w->stream_keys;
}

/*
 * The locked stream's tombstone.  A stream reads as deleted while its
 * revision is the one its deletion hid the events up to: an append after
 * a soft deletion re-creates it, its revisions continuing.  (A 0.2.0 table
 * has no tombstones.)
 */
StreamDeletion
LogWriterStreamDeletion(LogWriter *w)
{
	TupleTableSlot *row = TableWriterLockedRow(w->tables, STREAMS_TABLE);
	StreamDeletion d = {false, false, -1};
	bool		isnull;
	Datum		value;

	if (!w->stream_keys)
		return d;
	value = slot_getattr(row, STREAMS_DELETED_REVISION, &isnull);
	if (isnull)
		return d;
	d.revision = DatumGetInt64(value);
	d.deleted = d.revision == DatumGetInt64(slot_getattr(row, STREAMS_REVISION,
														 &isnull));
	value = slot_getattr(row, STREAMS_HARD_DELETED, &isnull);
	d.hard = !isnull && DatumGetBool(value);
	return d;
}

/*
 * Leave a tombstone on the locked stream: every event up to its revision
 * reads as deleted, and with `hard` its id is never used again.
 */
void
LogWriterDeleteStream(LogWriter *w, bool hard, TimestampTz now)
{
	TupleTableSlot *row = TableWriterCopyOfLocked(w->tables, STREAMS_TABLE);

	Assert(w->stream_keys);
	row->tts_values[STREAMS_DELETED_REVISION - 1] = row->tts_values[STREAMS_REVISION - 1];
	row->tts_isnull[STREAMS_DELETED_REVISION - 1] = false;
	row->tts_values[STREAMS_DELETED_AT - 1] = TimestampTzGetDatum(now);
	row->tts_isnull[STREAMS_DELETED_AT - 1] = false;
	row->tts_values[STREAMS_HARD_DELETED - 1] = BoolGetDatum(hard);
	row->tts_isnull[STREAMS_HARD_DELETED - 1] = false;
	/* a locked row is updated, never found changed */
	if (!TableWriterUpdate(w->tables, STREAMS_TABLE, row))
		elog(ERROR, "the locked row of a stream changed");
}

/*
 * Set the locked (or found) stream's revision and log key to those of its
 * new last event; false, with nothing written, when the row found without
 * its lock had changed: the caller locks it and decides again.
 */
bool
LogWriterAdvanceStream(LogWriter *w, int64 revision, FullTransactionId key,
					   TimestampTz now)
{
	TupleTableSlot *row = TableWriterCopyOfLocked(w->tables, STREAMS_TABLE);

	row->tts_values[STREAMS_REVISION - 1] = Int64GetDatum(revision);
	row->tts_values[STREAMS_UPDATED_AT - 1] = TimestampTzGetDatum(now);
	if (w->stream_keys)
	{
		row->tts_values[STREAMS_TRANSACTION_ID - 1] = FullTransactionIdGetDatum(key);
		row->tts_isnull[STREAMS_TRANSACTION_ID - 1] = false;
	}
	return TableWriterUpdate(w->tables, STREAMS_TABLE, row);
}

/*
 * Insert one event at a fresh global position, taken only now that the
 * stream's check has passed; returns the position.  The row is also added
 * to `rows`, when given, for inline projections.
 */
int64
LogWriterInsertEvent(LogWriter *w, FullTransactionId xid, text *stream_id,
					 int64 revision, EventInput *event, TimestampTz now,
					 EventRows *rows)
{
	TupleTableSlot *row = TableWriterNewRow(w->tables, EVENTS_TABLE);
	int64		position = nextval_internal(w->sequence, false);

	row->tts_values[EVENTS_GLOBAL_POSITION - 1] = Int64GetDatum(position);
	row->tts_values[EVENTS_TRANSACTION_ID - 1] = FullTransactionIdGetDatum(xid);
	row->tts_values[EVENTS_STREAM_ID - 1] = PointerGetDatum(stream_id);
	row->tts_values[EVENTS_REVISION - 1] = Int64GetDatum(revision);
	row->tts_values[EVENTS_EVENT_ID - 1] = UUIDPGetDatum(&event->id);
	row->tts_values[EVENTS_EVENT_TYPE - 1] = PointerGetDatum(event->type);
	row->tts_values[EVENTS_DATA - 1] = JsonbPGetDatum(event->data);
	row->tts_values[EVENTS_METADATA - 1] = JsonbPGetDatum(event->metadata);
	row->tts_values[EVENTS_CREATED_AT - 1] = TimestampTzGetDatum(now);
	if (w->schema_versions)
	{
		row->tts_values[EVENTS_SCHEMA_VERSION - 1] = Int32GetDatum(event->schema_version);
		row->tts_isnull[EVENTS_SCHEMA_VERSION - 1] = event->schema_version == 0;
	}
	if (rows != NULL)
		EventRowsAddValues(rows, row->tts_values, row->tts_isnull);
	if (!event->id_given)
		TableWriterInsert(w->tables, EVENTS_TABLE, row);
	else
	{
		/*
		 * A caller's id may be taken by a concurrent append to another
		 * stream after our check of the log: report that as the store's own
		 * duplicate-id error, not as the index's.
		 */
		MemoryContext context = CurrentMemoryContext;

		PG_TRY();
		{
			TableWriterInsert(w->tables, EVENTS_TABLE, row);
		}
		PG_CATCH();
		{
			ErrorData  *error;

			MemoryContextSwitchTo(context);
			error = CopyErrorData();
			if (error->sqlerrcode != ERRCODE_UNIQUE_VIOLATION ||
				error->constraint_name == NULL ||
				strcmp(error->constraint_name, "events_event_id_key") != 0)
				PG_RE_THROW();
			FlushErrorState();
			ereport(ERROR,
					(errcode(ERRCODE_ES_DUPLICATE_EVENT_ID),
					 errmsg("event id %s is already stored",
							DatumGetCString(DirectFunctionCall1(uuid_out,
																UUIDPGetDatum(&event->id)))),
					 errdetail("A concurrent append stored it first."),
					 errhint("A retry must resend the original batch unchanged to the same stream; a new event needs a new id.")));
		}
		PG_END_TRY();
	}
	return position;
}
