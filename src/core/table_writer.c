/*
 * core/table_writer.c
 *		Row-level writes to the extension's own tables through the table and
 *		index access methods, for hot paths where an SQL statement's
 *		executor start-up would cost more than the work itself.
 *
 * It uses the executor's single-row entry points (the ones logical
 * replication applies changes with), so constraints, indexes and any user
 * triggers are honoured exactly as for INSERT and UPDATE.  Row locking
 * follows UPDATE: under READ COMMITTED a row is found with a fresh snapshot
 * and locked in its newest version, waiting for a concurrent writer to
 * finish; under REPEATABLE READ or SERIALIZABLE a row changed after the
 * snapshot raises a serialization failure.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "nodes/makefuncs.h"
#if PG_VERSION_NUM >= 160000
#include "parser/parse_relation.h"
#endif
#include "core/catalog.h"
#include "core/table_writer.h"
#include "miscadmin.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#define MAX_TABLES 4

/* Tries of "lock the row, else create it" lost to a concurrent creator. */
#define MAX_CREATE_RACES 10

struct TableWriter
{
	EState	   *estate;
	EPQState	epqstate;
	int			ntables;
	ResultRelInfo *tables[MAX_TABLES];
	TupleTableSlot *locked[MAX_TABLES];	/* the row locked, per table */
	bool		unlocked[MAX_TABLES];	/* ... or only found (FindOrCreate) */
	TupleTableSlot *building[MAX_TABLES];	/* a row being built, per table */
};

/* A range table entry for a written relation. */
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

/* The relation of table t, opened by TableWriterOpen. */
Relation
TableWriterRelation(TableWriter *w, int t)
{
	return w->tables[t]->ri_RelationDesc;
}

/*
 * Open eventstore.<names[i]> for writing on behalf of SQL function
 * `operation`, checking each table has natts[i] columns (the layout the
 * caller's column numbers assume).  Refuses, as the executor would, to
 * write in a read-only transaction.  Makes the transaction's own earlier
 * writes visible first, as a new SQL statement would.
 */
TableWriter *
TableWriterOpen(const char *operation, int ntables, const char *const *names,
				const int *natts)
{
	TableWriter *w = palloc0(sizeof(TableWriter));
	Relation	rels[MAX_TABLES];
	List	   *range_table = NIL;

	Assert(ntables <= MAX_TABLES);
	PreventCommandIfReadOnly(operation);
	PreventCommandIfParallelMode(operation);
	CommandCounterIncrement();

	for (int i = 0; i < ntables; i++)
	{
		rels[i] = table_open(EventstoreRelid(names[i]), RowExclusiveLock);
		if (RelationGetDescr(rels[i])->natts != natts[i])
			elog(ERROR, EVENTSTORE_SCHEMA ".%s does not have the %d columns this library writes",
				 names[i], natts[i]);
		range_table = lappend(range_table, WrittenRelation(rels[i]));
	}

	w->estate = CreateExecutorState();
#if PG_VERSION_NUM >= 160000
	{
		/* since 16 each relation also needs its permission info entry */
		List	   *perminfos = NIL;
		ListCell   *lc;

		foreach(lc, range_table)
			addRTEPermissionInfo(&perminfos, lfirst_node(RangeTblEntry, lc));
		ExecInitRangeTable(w->estate, range_table, perminfos);
	}
#else
	ExecInitRangeTable(w->estate, range_table);
#endif
	w->estate->es_output_cid = GetCurrentCommandId(true);
	w->estate->es_snapshot = GetActiveSnapshot();
#if PG_VERSION_NUM >= 160000
	EvalPlanQualInit(&w->epqstate, w->estate, NULL, NIL, -1, NIL);
#else
	EvalPlanQualInit(&w->epqstate, w->estate, NULL, NIL, -1);
#endif

	w->ntables = ntables;
	for (int i = 0; i < ntables; i++)
	{
		TupleDesc	desc = RelationGetDescr(rels[i]);

		w->tables[i] = makeNode(ResultRelInfo);
		InitResultRelInfo(w->tables[i], rels[i], i + 1, NULL, 0);
		ExecOpenIndices(w->tables[i], false);
		w->locked[i] = ExecInitExtraTupleSlot(w->estate, desc,
											  table_slot_callbacks(rels[i]));
		w->building[i] = ExecInitExtraTupleSlot(w->estate, desc,
												&TTSOpsVirtual);
	}
	AfterTriggerBeginQuery();
	return w;
}

/* Fire queued AFTER triggers and release everything the writer holds. */
void
TableWriterClose(TableWriter *w)
{
	AfterTriggerEndQuery(w->estate);
	EvalPlanQualEnd(&w->epqstate);
	for (int i = 0; i < w->ntables; i++)
		ExecCloseIndices(w->tables[i]);
	ExecResetTupleTable(w->estate->es_tupleTable, false);
	FreeExecutorState(w->estate);
	for (int i = 0; i < w->ntables; i++)
		table_close(w->tables[i]->ri_RelationDesc, NoLock);
	pfree(w);
}

/*
 * Set key k of a primary key lookup on table t: column attno equals value,
 * compared with eqproc under the column's collation, which orders the index.
 */
void
TableWriterKey(TableWriter *w, int t, ScanKey key, AttrNumber attno,
			   RegProcedure eqproc, Datum value)
{
	TupleDesc	desc = RelationGetDescr(w->tables[t]->ri_RelationDesc);

	ScanKeyEntryInitialize(key, 0, attno, BTEqualStrategyNumber, InvalidOid,
						   TupleDescAttr(desc, attno - 1)->attcollation,
						   eqproc, value);
}

/*
 * Begin a scan of table t's primary key for the row with these keys (set
 * with TableWriterKey, by table column), through the index the writer has
 * open already for its inserts: no lookup, lock or slot of its own per call,
 * as a catalog scan (systable_beginscan) would take.
 */
static IndexScanDesc
BeginPrimaryKeyScan(TableWriter *w, int t, int nkeys, ScanKey keys,
					Snapshot snapshot)
{
	ResultRelInfo *info = w->tables[t];
	Relation	rel = info->ri_RelationDesc;
	Oid			pkey = RelationGetPrimaryKeyIndex(rel);
	Relation	index = NULL;
	ScanKeyData index_keys[INDEX_MAX_KEYS];
	IndexScanDesc scan;

	Assert(nkeys <= INDEX_MAX_KEYS);
	for (int i = 0; i < info->ri_NumIndices && index == NULL; i++)
		if (RelationGetRelid(info->ri_IndexRelationDescs[i]) == pkey)
			index = info->ri_IndexRelationDescs[i];
	if (index == NULL)
		elog(ERROR, "%s has no primary key", RelationGetRelationName(rel));

	/* the keys name table columns; the index numbers its own */
	for (int k = 0; k < nkeys; k++)
	{
		int			column = 0;

		index_keys[k] = keys[k];
		for (int i = 0; i < IndexRelationGetNumberOfKeyAttributes(index); i++)
			if (index->rd_index->indkey.values[i] == keys[k].sk_attno)
				column = i + 1;
		if (column == 0)
			elog(ERROR, "column %d is not in the primary key of %s",
				 keys[k].sk_attno, RelationGetRelationName(rel));
		index_keys[k].sk_attno = column;
	}
	scan = index_beginscan(rel, index, snapshot, nkeys, 0);
	index_rescan(scan, index_keys, nkeys, NULL, 0);
	return scan;
}

/*
 * May the version of table t's row just found be updated without locking
 * it first (TableWriterFindOrCreate)?  Only under READ COMMITTED, where an
 * UPDATE too would build on the newest version; only when the table has no
 * update triggers or generated columns, which TableWriterUpdate's own
 * update of a found row leaves to ExecSimpleRelationUpdate; and only when
 * no transaction has locked or changed the version (no xmax), so that a
 * hot row's waiters go the usual way.  A version changed meanwhile is
 * caught by the update itself.  The header is read under the buffer pin
 * alone: a hint, which the update checks under the buffer's lock.
 */
static bool
MayUpdateUnlocked(TableWriter *w, int t)
{
	Relation	rel = w->tables[t]->ri_RelationDesc;
	TriggerDesc *triggers = w->tables[t]->ri_TrigDesc;
	HeapTupleHeader header;
	bool		should_free;
	HeapTuple	tuple;

	if (IsolationUsesXactSnapshot() ||
		(triggers != NULL && (triggers->trig_update_before_row ||
							  triggers->trig_update_after_row ||
							  triggers->trig_update_instead_row ||
							  triggers->trig_update_before_statement ||
							  triggers->trig_update_after_statement ||
							  triggers->trig_update_new_table ||
							  triggers->trig_update_old_table)) ||
		(rel->rd_att->constr != NULL && rel->rd_att->constr->has_generated_stored) ||
		rel->rd_rel->relispartition)
		return false;
	tuple = ExecFetchSlotHeapTuple(w->locked[t], false, &should_free);
	Assert(!should_free);
	header = tuple->t_data;
	return (header->t_infomask & HEAP_XMAX_INVALID) != 0 ||
		!TransactionIdIsValid(HeapTupleHeaderGetRawXmax(header));
}

/*
 * Find table t's row by its primary key and lock its newest version for
 * update, waiting or not as `policy` says (a primary key lookup: keys are
 * set with TableWriterKey).  Returns the locked row, or NULL
 * when there is none (or, with LockWaitSkip, when another transaction holds
 * it or changed it after our snapshot: *busy is then set).  Each call looks
 * with a fresh snapshot under READ COMMITTED, so a row inserted
 * concurrently is found on the next try.
 */
static TupleTableSlot *
LockRow(TableWriter *w, int t, int nkeys, ScanKey keys, LockWaitPolicy policy,
		const char *what, bool find, bool *busy)
{
	Relation	rel = w->tables[t]->ri_RelationDesc;
	Snapshot	snapshot = RegisterSnapshot(GetTransactionSnapshot());
	IndexScanDesc scan;
	bool		found;
	ItemPointerData tid;
	TM_FailureData tmfd;
	TM_Result	result;

	*busy = false;
	scan = BeginPrimaryKeyScan(w, t, nkeys, keys, snapshot);
	found = index_getnext_slot(scan, ForwardScanDirection, w->locked[t]);
	if (found)
		tid = w->locked[t]->tts_tid;
	index_endscan(scan);
	w->unlocked[t] = false;
	if (!found)
	{
		UnregisterSnapshot(snapshot);
		return NULL;
	}
	if (find && MayUpdateUnlocked(w, t))
	{
		UnregisterSnapshot(snapshot);
		w->unlocked[t] = true;
		return w->locked[t];
	}

	/*
	 * A transaction-snapshot isolation level must not build on a version
	 * its snapshot cannot see: as UPDATE does, it fails instead of following
	 * the row's update chain.
	 */
	result = table_tuple_lock(rel, &tid, snapshot, w->locked[t],
							  w->estate->es_output_cid, LockTupleNoKeyExclusive,
							  policy,
							  IsolationUsesXactSnapshot() ? 0
							  : TUPLE_LOCK_FLAG_FIND_LAST_VERSION,
							  &tmfd);
	UnregisterSnapshot(snapshot);
	if (result == TM_Ok)
		return w->locked[t];
	if (policy == LockWaitSkip &&
		(result == TM_WouldBlock || result == TM_Updated || result == TM_Deleted))
	{
		*busy = true;
		return NULL;
	}
	if ((result == TM_Updated || result == TM_Deleted) &&
		IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not serialize access due to concurrent update of %s",
						what),
				 errhint("Retry the transaction; in READ COMMITTED this waits instead.")));
	elog(ERROR, "unexpected result %d locking %s", (int) result, what);
	return NULL;				/* keep the compiler quiet */
}

/*
 * Does table t have a row with this primary key in any state: committed,
 * or inserted or deleted by a transaction still in progress?
 */
static bool
RowExists(TableWriter *w, int t, int nkeys, ScanKey keys)
{
	SnapshotData dirty;
	IndexScanDesc scan;
	bool		found;

	InitDirtySnapshot(dirty);
	scan = BeginPrimaryKeyScan(w, t, nkeys, keys, &dirty);
	found = index_getnext_slot(scan, ForwardScanDirection, w->locked[t]);
	index_endscan(scan);
	return found;
}

/*
 * Make rows this transaction wrote since the writer opened (through SPI)
 * visible to it, as a new SQL statement would, so it can lock them.
 */
static void
SeeOwnWrites(TableWriter *w)
{
	CommandCounterIncrement();
	w->estate->es_output_cid = GetCurrentCommandId(true);
}

/* TableWriterLockOrCreate, and TableWriterFindOrCreate when `find`. */
static RowLockResult
LockOrCreate(TableWriter *w, int t, int nkeys, ScanKey keys, const char *what,
			 bool wait, bool find, RowCreator create, void *arg)
{
	for (int attempt = 0; attempt < MAX_CREATE_RACES; attempt++)
	{
		bool		busy;

		if (LockRow(w, t, nkeys, keys, wait ? LockWaitBlock : LockWaitSkip,
					what, find, &busy) != NULL)
			return w->unlocked[t] ? ROW_FOUND : ROW_LOCKED;
		if (busy || (!wait && RowExists(w, t, nkeys, keys)))
			return ROW_BUSY;
		if (create(arg) || !wait)
			return ROW_CREATED;
		/* a concurrent creator won, or ours wants its row locked: look again */
		SeeOwnWrites(w);
	}
	elog(ERROR, "%s could not be created or locked", what);
	return ROW_BUSY;			/* keep the compiler quiet */
}

/*
 * Lock table t's row with these primary key values, creating it when there
 * is none; "what" names the row in errors, for example: stream "cart-1".
 * With wait, a concurrent writer of the row is waited for, and a concurrent
 * creator that wins the race is waited for and its row locked instead.
 * Without, nothing is waited for: ROW_BUSY when another transaction holds
 * the row, changed it after our snapshot, or is inserting it.
 */
RowLockResult
TableWriterLockOrCreate(TableWriter *w, int t, int nkeys, ScanKey keys,
						const char *what, bool wait, RowCreator create,
						void *arg)
{
	return LockOrCreate(w, t, nkeys, keys, what, wait, false, create, arg);
}

/*
 * TableWriterLockOrCreate with wait, for a row the caller will update
 * (TableWriterUpdate) or leave alone: the row's newest version may come
 * back found but not locked (ROW_FOUND) when no transaction holds it, which
 * saves its lock (a WAL record and a change of its page) on the usual path
 * of a row that is read and then updated at once.  Until the update has
 * succeeded, the row may change under the caller: it decides nothing for
 * good from a found row before TableWriterUpdate said so, and starts again
 * with TableWriterLockOrCreate when that update finds the row changed.
 */
RowLockResult
TableWriterFindOrCreate(TableWriter *w, int t, int nkeys, ScanKey keys,
						const char *what, RowCreator create, void *arg)
{
	return LockOrCreate(w, t, nkeys, keys, what, true, true, create, arg);
}

/* The row of table t that TableWriterLockOrCreate (or FindOrCreate) gave last. */
TupleTableSlot *
TableWriterLockedRow(TableWriter *w, int t)
{
	return w->locked[t];
}

/*
 * An empty row of table t to fill in (values and isnull of every column),
 * then pass to TableWriterInsert or TableWriterUpdate.
 */
TupleTableSlot *
TableWriterNewRow(TableWriter *w, int t)
{
	TupleTableSlot *slot = w->building[t];

	ExecClearTuple(slot);
	memset(slot->tts_isnull, 0, sizeof(bool) * slot->tts_tupleDescriptor->natts);
	return slot;
}

/* A row of table t, filled in like the locked one, to change and update. */
TupleTableSlot *
TableWriterCopyOfLocked(TableWriter *w, int t)
{
	TupleTableSlot *locked = w->locked[t];
	TupleTableSlot *slot = w->building[t];
	int			natts = slot->tts_tupleDescriptor->natts;

	slot_getallattrs(locked);
	ExecClearTuple(slot);
	memcpy(slot->tts_values, locked->tts_values, sizeof(Datum) * natts);
	memcpy(slot->tts_isnull, locked->tts_isnull, sizeof(bool) * natts);
	return slot;
}

/* Insert a filled-in row into table t. */
void
TableWriterInsert(TableWriter *w, int t, TupleTableSlot *row)
{
	ExecStoreVirtualTuple(row);
	ExecSimpleRelationInsert(w->tables[t], w->estate, row);
}

/*
 * Update the version of table t's row that TableWriterFindOrCreate found
 * without locking it, as ExecSimpleRelationUpdate does (MayUpdateUnlocked
 * left out the triggers and generated columns it would also handle), but
 * saying false, with nothing written, when a concurrent transaction
 * changed the version after our snapshot (having waited for it to end).
 */
static bool
UpdateUnlocked(TableWriter *w, int t, TupleTableSlot *row)
{
	ResultRelInfo *info = w->tables[t];
	Relation	rel = info->ri_RelationDesc;
	ItemPointerData tid = w->locked[t]->tts_tid;
	TM_FailureData tmfd;
	LockTupleMode lockmode;
	TM_Result	result;
	List	   *recheck = NIL;
#if PG_VERSION_NUM >= 160000
	TU_UpdateIndexes update_indexes;
#else
	bool		update_indexes;
#endif

	CheckCmdReplicaIdentity(rel, CMD_UPDATE);
	if (rel->rd_att->constr)
		ExecConstraints(info, row, w->estate);
	result = table_tuple_update(rel, &tid, row, w->estate->es_output_cid,
								w->estate->es_snapshot, InvalidSnapshot, true,
								&tmfd, &lockmode, &update_indexes);
	if (result == TM_Updated || result == TM_Deleted)
		return false;
	if (result != TM_Ok)
		elog(ERROR, "unexpected result %d updating a row of %s", (int) result,
			 RelationGetRelationName(rel));
#if PG_VERSION_NUM >= 160000
	if (info->ri_NumIndices > 0 && update_indexes != TU_None)
		recheck = ExecInsertIndexTuples(info, row, w->estate, true, false,
										NULL, NIL,
										update_indexes == TU_Summarizing);
#else
	if (info->ri_NumIndices > 0 && update_indexes)
		recheck = ExecInsertIndexTuples(info, row, w->estate, true, false,
										NULL, NIL);
#endif
	list_free(recheck);
	w->unlocked[t] = false;
	return true;
}

/*
 * Replace table t's row, as TableWriterLockOrCreate locked it or
 * TableWriterFindOrCreate found it, with a filled-in one.  False, with
 * nothing written, only for a found row changed meanwhile by another
 * transaction: the caller looks again with TableWriterLockOrCreate.
 */
bool
TableWriterUpdate(TableWriter *w, int t, TupleTableSlot *row)
{
	ExecStoreVirtualTuple(row);
	if (w->unlocked[t])
		return UpdateUnlocked(w, t, row);
	ExecSimpleRelationUpdate(w->tables[t], w->estate, &w->epqstate,
							 w->locked[t], row);
	return true;
}
