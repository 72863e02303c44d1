/*
 * consumers/checkpoints.c
 *		store_checkpoint, read_checkpoint and reset_checkpoint.
 *
 * A checkpoint is compared in log order, (transaction_id, global_position),
 * never by raw position: a position taken early by a transaction that
 * committed late is further on than higher positions of transactions that
 * committed before it.  The checkpoint's row keeps its place in that order,
 * so a store looks up at most one position: the new one when it is stored,
 * or the expected one when the outcome depends on the order.  The store
 * happens in the caller's transaction: a read model and its checkpoint
 * commit together or not at all.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "core/args.h"
#include "consumers/consumers.h"
#include "core/catalog.h"
#include "core/kept_plans.h"
#include "core/role.h"
#include "core/table_writer.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "log/log.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"

PG_FUNCTION_INFO_V1(eventstore_store_checkpoint);
PG_FUNCTION_INFO_V1(eventstore_read_checkpoint);
PG_FUNCTION_INFO_V1(eventstore_reset_checkpoint);

#define CHECKPOINT_HINT "A checkpoint is the global_position of an event received from the log, or 0 for its start."

static SPIPlanPtr create_checkpoint_plan;
static SPIPlanPtr create_unowned_plan;	/* into a 0.2.0 table */
static SPIPlanPtr read_checkpoint_plan;

/* The checkpoint row's key, for creating it (LockCheckpointRow). */
typedef struct CheckpointKey
{
	text	   *processor;
	text	   *partition;
	bool		create;			/* false: leave a missing row missing */
	Oid			caller;			/* who will own a row created */
} CheckpointKey;

/*
 * Insert a processor's checkpoint row, with no checkpoint, if there is none
 * yet; then have it looked up and locked like an existing one.  Unless the
 * caller would only read it: then nothing is written.
 */
static bool
CreateCheckpointRow(void *arg)
{
	CheckpointKey *key = (CheckpointKey *) arg;
	Oid			argtypes[4] = {TEXTOID, TEXTOID, TIMESTAMPTZOID, TEXTOID};
	Datum		values[4] = {PointerGetDatum(key->processor),
		PointerGetDatum(key->partition),
		TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()),
	CStringGetTextDatum(GetUserNameFromId(key->caller, false))};

	if (!key->create)
		return true;

	if (ProcessorsHaveOwners())
		RunKeptStatement(&create_checkpoint_plan,
						 "INSERT INTO eventstore.checkpoints"
						 " (processor_id, partition, updated_at, owner)"
						 " VALUES ($1, $2, $3, $4)"
						 " ON CONFLICT (processor_id, partition) DO NOTHING",
						 4, argtypes, values);
	else
		RunKeptStatement(&create_unowned_plan,
						 "INSERT INTO eventstore.checkpoints"
						 " (processor_id, partition, updated_at)"
						 " VALUES ($1, $2, $3)"
						 " ON CONFLICT (processor_id, partition) DO NOTHING",
						 3, argtypes, values);
	return false;
}

/*
 * Open the checkpoints table and lock the processor's row, creating it
 * (with no checkpoint) when missing, unless !create.  Returns the writer;
 * the row is its locked row, when *locked.
 */
static TableWriter *
LockCheckpointRow(const char *operation, text *processor, text *partition,
				  bool create, Oid caller, bool *locked)
{
	static const char *const names[] = {"checkpoints"};
	int			natts[] = {CheckpointsNatts()};
	TableWriter *w = TableWriterOpen(operation, 1, names, natts);
	CheckpointKey key = {processor, partition, create, caller};
	ScanKeyData keys[2];

	TableWriterKey(w, 0, &keys[0], CHECKPOINTS_PROCESSOR_ID, F_TEXTEQ,
				   PointerGetDatum(processor));
	TableWriterKey(w, 0, &keys[1], CHECKPOINTS_PARTITION, F_TEXTEQ,
				   PointerGetDatum(partition));
	*locked = TableWriterLockOrCreate(w, 0, 2, keys,
									  psprintf("the checkpoint of processor \"%s\", partition \"%s\"",
											   text_to_cstring(processor),
											   text_to_cstring(partition)),
									  true, CreateCheckpointRow, &key) == ROW_LOCKED;
	return w;
}

/* The stored checkpoint of the locked row, as a place in log order. */
static bool
StoredPlace(TupleTableSlot *row, LogPlace *place)
{
	bool		isnull;
	Datum		position = slot_getattr(row, CHECKPOINTS_POSITION, &isnull);

	if (isnull)
	{
		*place = LogStart;
		return false;
	}
	place->position = DatumGetInt64(position);
	place->xid = DatumGetFullTransactionId(slot_getattr(row, CHECKPOINTS_TRANSACTION_ID,
														&isnull));
	return true;
}

/*
 * Set the locked row's checkpoint to `place` (NULL when `none`); a row from
 * before 0.3.0 becomes the caller's.
 */
static void
WriteCheckpoint(TableWriter *w, LogPlace place, bool none, Oid caller)
{
	TupleTableSlot *row = TableWriterCopyOfLocked(w, 0);

	if (row->tts_tupleDescriptor->natts >= CHECKPOINTS_OWNER &&
		row->tts_isnull[CHECKPOINTS_OWNER - 1])
	{
		row->tts_values[CHECKPOINTS_OWNER - 1] =
			CStringGetTextDatum(GetUserNameFromId(caller, false));
		row->tts_isnull[CHECKPOINTS_OWNER - 1] = false;
	}
	row->tts_values[CHECKPOINTS_POSITION - 1] = Int64GetDatum(place.position);
	row->tts_values[CHECKPOINTS_TRANSACTION_ID - 1] = FullTransactionIdGetDatum(place.xid);
	row->tts_isnull[CHECKPOINTS_POSITION - 1] = none;
	row->tts_isnull[CHECKPOINTS_TRANSACTION_ID - 1] = none;
	row->tts_values[CHECKPOINTS_UPDATED_AT - 1] =
		TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	TableWriterUpdate(w, 0, row);
}

/*
 * Become the extension's owner for the bookkeeping, connected to SPI.
 * Returns who the caller was: whether it may have the processor is checked
 * on its row once locked (RequireOwnerOfLockedRow).
 */
static RoleSwitch
EnterCheckpointFunction(void)
{
	ConnectSpi();
	return BecomeRole(ExtensionOwner());
}

static void
LeaveCheckpointFunction(RoleSwitch caller)
{
	RestoreRole(caller);
	SPI_finish();
}

/* The value of the function's result type (checkpoint_result) named label. */
static Datum
CheckpointResult(FunctionCallInfo fcinfo, const char *label)
{
	return DirectFunctionCall2(enum_in, CStringGetDatum(label),
							   ObjectIdGetDatum(get_fn_expr_rettype(fcinfo->flinfo)));
}

/*
 * SQL: store_checkpoint(processor_id, position, expected_position, partition)
 *
 * stored:  the stored checkpoint was expected_position (NULL and 0 both
 *			mean the start of the log); it is now position.
 * ignored: the stored checkpoint already is position (a retry).
 * further: the stored checkpoint is ahead of expected_position in log
 *			order: another instance has progressed.
 * older:	any other mismatch.
 */
Datum
eventstore_store_checkpoint(PG_FUNCTION_ARGS)
{
	text	   *processor = RequireName(fcinfo, 0, "processor_id");
	text	   *partition = RequireName(fcinfo, 3, "partition");
	int64		position;
	int64		expected = PG_ARGISNULL(2) ? 0 : PG_GETARG_INT64(2);
	TableWriter *w;
	LogPlace	stored;
	LogPlace	target;
	Snapshot	snapshot;
	const char *outcome;
	bool		locked;
	RoleSwitch	caller;

	RequireArgNotNull(fcinfo, 1, "position",
					  "Pass the global_position of the last event processed; reset_checkpoint clears a checkpoint.");
	position = PG_GETARG_INT64(1);
	RequireNonNegative(expected, "expected_position",
					   "Pass the checkpoint read before processing, or NULL when none was stored.");

	caller = EnterCheckpointFunction();

	/* a position that is not in the log is refused whatever the outcome */
	snapshot = RegisterSnapshot(GetTransactionSnapshot());
	target = RequireLogPlace(position, snapshot, "position", CHECKPOINT_HINT);

	/*
	 * Only an expectation of no checkpoint can store into a missing row: for
	 * any other the answer is known without writing one.
	 */
	w = LockCheckpointRow("store_checkpoint", processor, partition,
						  expected == 0, caller.caller, &locked);
	stored = LogStart;
	if (locked)
	{
		RequireOwnerOfLockedRow(TableWriterLockedRow(w, 0), processor, partition,
								caller.caller);
		StoredPlace(TableWriterLockedRow(w, 0), &stored);
	}

	/* positions are unique, so equality needs no look-up */
	if (stored.position == expected)
	{
		WriteCheckpoint(w, target, false, caller.caller);
		outcome = "stored";
	}
	else if (stored.position == position)
		outcome = "ignored";
	else if (CompareLogPlaces(stored,
							  RequireLogPlace(expected, snapshot,
											  "expected_position",
											  CHECKPOINT_HINT)) > 0)
		outcome = "further";
	else
		outcome = "older";

	UnregisterSnapshot(snapshot);
	TableWriterClose(w);
	LeaveCheckpointFunction(caller);
	PG_RETURN_DATUM(CheckpointResult(fcinfo, outcome));
}

/* SQL: read_checkpoint(processor_id, partition): the position, or NULL */
Datum
eventstore_read_checkpoint(PG_FUNCTION_ARGS)
{
	text	   *processor = RequireName(fcinfo, 0, "processor_id");
	text	   *partition = RequireName(fcinfo, 1, "partition");
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2] = {PointerGetDatum(processor), PointerGetDatum(partition)};
	int64		position;
	bool		found;

	RoleSwitch	caller = BecomeRole(ExtensionOwner());

	found = RunKeptInt64Query(&read_checkpoint_plan,
							  "SELECT \"position\" FROM eventstore.checkpoints"
							  " WHERE processor_id = $1 AND partition = $2",
							  2, argtypes, values, &position);
	RestoreRole(caller);
	if (!found)
		PG_RETURN_NULL();
	PG_RETURN_INT64(position);
}

/*
 * SQL: reset_checkpoint(processor_id, position, partition): set the
 * checkpoint unconditionally.  NULL clears it (as if never stored), 0 is the
 * start of the log, any other position must be in the log.
 */
Datum
eventstore_reset_checkpoint(PG_FUNCTION_ARGS)
{
	text	   *processor = RequireName(fcinfo, 0, "processor_id");
	text	   *partition = RequireName(fcinfo, 2, "partition");
	bool		none = PG_ARGISNULL(1);
	LogPlace	place = LogStart;
	TableWriter *w;
	bool		locked;
	RoleSwitch	caller = EnterCheckpointFunction();

	if (!none)
	{
		Snapshot	snapshot = RegisterSnapshot(GetTransactionSnapshot());

		place = RequireLogPlace(PG_GETARG_INT64(1), snapshot, "position",
								CHECKPOINT_HINT);
		UnregisterSnapshot(snapshot);
	}
	w = LockCheckpointRow("reset_checkpoint", processor, partition, true,
						  caller.caller, &locked);
	RequireOwnerOfLockedRow(TableWriterLockedRow(w, 0), processor, partition,
							caller.caller);
	WriteCheckpoint(w, place, none, caller.caller);
	TableWriterClose(w);
	LeaveCheckpointFunction(caller);
	PG_RETURN_VOID();
}
