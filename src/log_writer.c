/*
 * log_writer.c
 *		The append path's writes, made directly through the table and index
 *		access methods rather than through SQL.
 *
 * An append locks its stream's row, checks it, advances it and inserts its
 * events.  As SQL statements each of those pays for an executor start-up and
 * shutdown that costs more than the work itself, so the hot path uses the
 * executor's single-row entry points (the ones logical replication applies
 * changes with): constraints, indexes and any user triggers are honoured
 * exactly as for INSERT and UPDATE.
 *
 * Locking follows UPDATE under READ COMMITTED: the row is found with a fresh
 * snapshot and locked in its newest version, waiting for a concurrent
 * appender to finish; under REPEATABLE READ a concurrent change raises a
 * serialization failure, as UPDATE does.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "nodes/makefuncs.h"
#include "pg_eventstore.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

/* Column numbers of eventstore.streams and eventstore.events. */
enum
{
	STREAMS_STREAM_ID = 1,
	STREAMS_REVISION,
	STREAMS_CREATED_AT,
	STREAMS_UPDATED_AT,
	STREAMS_NATTS = STREAMS_UPDATED_AT
};

enum
{
	EVENTS_GLOBAL_POSITION = 1,
	EVENTS_TRANSACTION_ID,
	EVENTS_STREAM_ID,
	EVENTS_REVISION,
	EVENTS_EVENT_ID,
	EVENTS_EVENT_TYPE,
	EVENTS_DATA,
	EVENTS_METADATA,
	EVENTS_CREATED_AT,
	EVENTS_NATTS = EVENTS_CREATED_AT
};

struct LogWriter
{
	EState	   *estate;
	ResultRelInfo *streams;
	ResultRelInfo *events;
	Oid			sequence;
	EPQState	epqstate;
	TupleTableSlot *locked_stream;	/* the stream row locked, if any */
	TupleTableSlot *new_stream;
	TupleTableSlot *event;
};

/* The OID of eventstore.<name>; the extension's objects must exist. */
static Oid
EventstoreRelid(const char *name)
{
	Oid			relid = get_relname_relid(name, get_namespace_oid("eventstore", false));

	if (!OidIsValid(relid))
		elog(ERROR, "relation eventstore.%s does not exist", name);
	return relid;
}

/* A range table entry for a relation written by the append. */
static RangeTblEntry *
WrittenRelation(Relation rel)
{
	RangeTblEntry *rte = makeNode(RangeTblEntry);

	rte->rtekind = RTE_RELATION;
	rte->relid = RelationGetRelid(rel);
	rte->relkind = rel->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
	return rte;
}

/* A result relation of the writer's executor state, with its indexes. */
static ResultRelInfo *
OpenResultRelation(EState *estate, Relation rel, Index rti)
{
	ResultRelInfo *info = makeNode(ResultRelInfo);

	InitResultRelInfo(info, rel, rti, NULL, 0);
	ExecOpenIndices(info, false);
	return info;
}

/*
 * Open the log's tables for one append.  Makes the caller's own earlier
 * writes in this transaction visible first, as a new SQL statement would.
 */
LogWriter *
LogWriterOpen(void)
{
	LogWriter  *w = palloc0(sizeof(LogWriter));
	Relation	streams;
	Relation	events;

	CommandCounterIncrement();

	streams = table_open(EventstoreRelid("streams"), RowExclusiveLock);
	events = table_open(EventstoreRelid("events"), RowExclusiveLock);
	if (RelationGetDescr(streams)->natts != STREAMS_NATTS ||
		RelationGetDescr(events)->natts != EVENTS_NATTS)
		elog(ERROR, "eventstore.streams or eventstore.events does not have the columns this library writes");
	w->sequence = EventstoreRelid("global_position_seq");

	w->estate = CreateExecutorState();
#if PG_VERSION_NUM >= 160000
	ExecInitRangeTable(w->estate, list_make2(WrittenRelation(streams),
											 WrittenRelation(events)), NIL);
#else
	ExecInitRangeTable(w->estate, list_make2(WrittenRelation(streams),
											 WrittenRelation(events)));
#endif
	w->estate->es_output_cid = GetCurrentCommandId(true);
	w->estate->es_snapshot = GetActiveSnapshot();
	w->streams = OpenResultRelation(w->estate, streams, 1);
	w->events = OpenResultRelation(w->estate, events, 2);
#if PG_VERSION_NUM >= 160000
	EvalPlanQualInit(&w->epqstate, w->estate, NULL, NIL, -1, NIL);
#else
	EvalPlanQualInit(&w->epqstate, w->estate, NULL, NIL, -1);
#endif

	w->locked_stream = ExecInitExtraTupleSlot(w->estate, RelationGetDescr(streams),
											  table_slot_callbacks(streams));
	w->new_stream = ExecInitExtraTupleSlot(w->estate, RelationGetDescr(streams),
										   &TTSOpsVirtual);
	w->event = ExecInitExtraTupleSlot(w->estate, RelationGetDescr(events),
									  &TTSOpsVirtual);
	AfterTriggerBeginQuery();
	return w;
}

/* Fire queued AFTER triggers and release everything the writer holds. */
void
LogWriterClose(LogWriter *w)
{
	Relation	streams = w->streams->ri_RelationDesc;
	Relation	events = w->events->ri_RelationDesc;

	AfterTriggerEndQuery(w->estate);
	EvalPlanQualEnd(&w->epqstate);
	ExecCloseIndices(w->streams);
	ExecCloseIndices(w->events);
	ExecResetTupleTable(w->estate->es_tupleTable, false);
	FreeExecutorState(w->estate);
	table_close(events, NoLock);
	table_close(streams, NoLock);
	pfree(w);
}

/*
 * Find the stream's row and lock its newest version, waiting for a
 * concurrent appender to commit or abort.  False when the stream does not
 * exist.  Each call looks with a fresh snapshot under READ COMMITTED, so a
 * stream created concurrently is found on the next try.
 */
bool
LogWriterLockStream(LogWriter *w, text *stream_id, int64 *revision)
{
	Relation	streams = w->streams->ri_RelationDesc;
	Snapshot	snapshot = RegisterSnapshot(GetTransactionSnapshot());
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	found;
	ItemPointerData tid;
	TM_FailureData tmfd;
	TM_Result	result;
	bool		isnull;

	/* compare under the key column's collation, which orders the index */
	ScanKeyEntryInitialize(&key, 0, STREAMS_STREAM_ID, BTEqualStrategyNumber,
						   InvalidOid,
						   TupleDescAttr(RelationGetDescr(streams),
										 STREAMS_STREAM_ID - 1)->attcollation,
						   F_TEXTEQ, PointerGetDatum(stream_id));
	scan = systable_beginscan(streams, RelationGetPrimaryKeyIndex(streams),
							  true, snapshot, 1, &key);
	found = systable_getnext(scan);
	if (found != NULL)
		tid = found->t_self;
	systable_endscan(scan);
	if (found == NULL)
	{
		UnregisterSnapshot(snapshot);
		return false;
	}

	/*
	 * Under READ COMMITTED, wait for a concurrent appender and lock the
	 * version it leaves.  A transaction-snapshot isolation level must not
	 * build on a version its snapshot cannot see: as UPDATE does, it gets a
	 * serialization failure instead.
	 */
	result = table_tuple_lock(streams, &tid, snapshot, w->locked_stream,
							  w->estate->es_output_cid, LockTupleNoKeyExclusive,
							  LockWaitBlock,
							  IsolationUsesXactSnapshot() ? 0
							  : TUPLE_LOCK_FLAG_FIND_LAST_VERSION,
							  &tmfd);
	UnregisterSnapshot(snapshot);
	if ((result == TM_Updated || result == TM_Deleted) &&
		IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not serialize access due to concurrent append to stream \"%s\"",
						text_to_cstring(stream_id)),
				 errhint("Retry the transaction; appends in READ COMMITTED never fail this way.")));
	if (result != TM_Ok)
		elog(ERROR, "unexpected result %d locking the row of stream \"%s\"",
			 (int) result, text_to_cstring(stream_id));

	*revision = DatumGetInt64(slot_getattr(w->locked_stream, STREAMS_REVISION,
										   &isnull));
	return true;
}

/* Set the locked stream's revision to that of its new last event. */
void
LogWriterAdvanceStream(LogWriter *w, int64 revision, TimestampTz now)
{
	TupleTableSlot *old = w->locked_stream;
	TupleTableSlot *new = w->new_stream;

	slot_getallattrs(old);
	ExecClearTuple(new);
	memcpy(new->tts_values, old->tts_values, sizeof(Datum) * STREAMS_NATTS);
	memcpy(new->tts_isnull, old->tts_isnull, sizeof(bool) * STREAMS_NATTS);
	new->tts_values[STREAMS_REVISION - 1] = Int64GetDatum(revision);
	new->tts_values[STREAMS_UPDATED_AT - 1] = TimestampTzGetDatum(now);
	ExecStoreVirtualTuple(new);
	ExecSimpleRelationUpdate(w->streams, w->estate, &w->epqstate, old, new);
}

/*
 * Insert one event at a fresh global position, taken only now that the
 * stream's check has passed; returns the position.
 */
int64
LogWriterInsertEvent(LogWriter *w, FullTransactionId xid, text *stream_id,
					 int64 revision, EventInput *event, TimestampTz now)
{
	TupleTableSlot *slot = w->event;
	int64		position = nextval_internal(w->sequence, false);

	ExecClearTuple(slot);
	memset(slot->tts_isnull, 0, sizeof(bool) * EVENTS_NATTS);
	slot->tts_values[EVENTS_GLOBAL_POSITION - 1] = Int64GetDatum(position);
	slot->tts_values[EVENTS_TRANSACTION_ID - 1] = FullTransactionIdGetDatum(xid);
	slot->tts_values[EVENTS_STREAM_ID - 1] = PointerGetDatum(stream_id);
	slot->tts_values[EVENTS_REVISION - 1] = Int64GetDatum(revision);
	slot->tts_values[EVENTS_EVENT_ID - 1] = UUIDPGetDatum(&event->id);
	slot->tts_values[EVENTS_EVENT_TYPE - 1] = PointerGetDatum(event->type);
	slot->tts_values[EVENTS_DATA - 1] = JsonbPGetDatum(event->data);
	slot->tts_values[EVENTS_METADATA - 1] = JsonbPGetDatum(event->metadata);
	slot->tts_values[EVENTS_CREATED_AT - 1] = TimestampTzGetDatum(now);
	ExecStoreVirtualTuple(slot);
	if (!event->id_given)
		ExecSimpleRelationInsert(w->events, w->estate, slot);
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
			ExecSimpleRelationInsert(w->events, w->estate, slot);
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
