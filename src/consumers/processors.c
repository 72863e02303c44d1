/*
 * consumers/processors.c
 *		claim_processor, release_processor and processor_claim_key: one live
 *		instance per processor (and partition).
 *
 * The live owner is whoever holds a session-level lock of the extension's
 * own on the processor: PostgreSQL frees it the moment that session ends,
 * cleanly or by a crash, so a dead owner never blocks the next claim.  The
 * lock is an advisory lock whose fourth key field (objsubid in pg_locks,
 * 17747) no SQL advisory-lock function uses, keyed by a 64-bit hash of the
 * processor and partition.
 *
 * Each backend remembers the claims it holds and for which instance; a
 * claim taken in a (sub)transaction that aborts is given back, so the
 * claim and the owner it records in eventstore.checkpoints stay together.
 * Recording the owner never waits: when another transaction has the row
 * locked, the claim still holds and the row keeps its previous owner.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "core/args.h"
#include "consumers/consumers.h"
#include "core/catalog.h"
#include "core/kept_plans.h"
#include "core/role.h"
#include "core/table_writer.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

PG_FUNCTION_INFO_V1(eventstore_claim_processor);
PG_FUNCTION_INFO_V1(eventstore_release_processor);
PG_FUNCTION_INFO_V1(eventstore_processor_claim_key);

/* The advisory lock key field that marks pg_eventstore's claims. */
#define CLAIM_LOCK_FIELD4 0x4553

/* A claim this backend holds. */
typedef struct HeldClaim
{
	LOCKTAG		tag;
	char	   *instance;		/* in TopMemoryContext */
	SubTransactionId subid;		/* taken in; Invalid once committed */
	struct HeldClaim *next;
} HeldClaim;

static HeldClaim *held_claims = NULL;
static SPIPlanPtr insert_owner_plan;
static SPIPlanPtr insert_unowned_plan;	/* into a 0.2.0 table */
static bool callbacks_registered = false;

/* The lock tag of a processor's claim in this database. */
static LOCKTAG
ClaimLockTag(text *processor, text *partition)
{
	int			plen = VARSIZE_ANY_EXHDR(processor);
	int			len = plen + 1 + VARSIZE_ANY_EXHDR(partition);
	char	   *key = palloc(len);
	uint64		hash;
	LOCKTAG		tag;

	/* the NUL keeps ("ab", "c") and ("a", "bc") apart */
	memcpy(key, VARDATA_ANY(processor), plen);
	key[plen] = '\0';
	memcpy(key + plen + 1, VARDATA_ANY(partition), VARSIZE_ANY_EXHDR(partition));
	hash = hash_bytes_extended((const unsigned char *) key, len, 0);
	pfree(key);

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) (hash >> 32),
						 (uint32) hash, CLAIM_LOCK_FIELD4);
	return tag;
}

/* Does this session hold the lock? */
static bool
LockHeldHere(const LOCKTAG *tag)
{
#if PG_VERSION_NUM >= 170000
	return LockHeldByMe(tag, ExclusiveLock, false);
#else
	return LockHeldByMe(tag, ExclusiveLock);
#endif
}

/* Forget a held claim, giving its lock back if we still hold it. */
static void
DropClaim(HeldClaim **link)
{
	HeldClaim  *claim = *link;

	if (LockHeldHere(&claim->tag))
		LockRelease(&claim->tag, ExclusiveLock, true);
	*link = claim->next;
	pfree(claim->instance);
	pfree(claim);
}

/*
 * The claim this backend holds on tag, or NULL.  A claim whose lock went
 * away behind our back (pg_advisory_unlock_all, DISCARD ALL) is forgotten.
 */
static HeldClaim **
FindClaim(const LOCKTAG *tag)
{
	for (HeldClaim **link = &held_claims; *link != NULL; link = &(*link)->next)
	{
		if (memcmp(&(*link)->tag, tag, sizeof(LOCKTAG)) != 0)
			continue;
		if (!LockHeldHere(tag))
		{
			DropClaim(link);
			return NULL;
		}
		return link;
	}
	return NULL;
}

/*
 * After a projection owner's code ran in this session: its claims must
 * still be held (pg_advisory_unlock_all() in a handler drops them, and no
 * hook reaches that built-in function).  A claim found dropped is taken
 * back at once, if no other session took it meanwhile, and the call fails
 * either way, saying so.
 */
void
KeepClaimsThroughOwnerCode(void)
{
	HeldClaim **link = &held_claims;
	int			retaken = 0;
	int			lost = 0;

	while (*link != NULL)
	{
		HeldClaim  *claim = *link;

		if (LockHeldHere(&claim->tag))
			link = &claim->next;
		else if (LockAcquire(&claim->tag, ExclusiveLock, true, true) != LOCKACQUIRE_NOT_AVAIL)
		{
			retaken++;
			link = &claim->next;
		}
		else
		{
			lost++;
			DropClaim(link);
		}
	}
	if (retaken + lost > 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("a projection's handler released the processor claims of the session applying it"),
				 lost > 0
				 ? errdetail("%d claims were taken by other sessions meanwhile and are lost; %d were taken back.",
							 lost, retaken)
				 : retaken == 1
				 ? errdetail("It was taken back at once.")
				 : errdetail("All %d were taken back at once.", retaken),
				 errhint("A handler may not call pg_advisory_unlock_all(); transaction-level advisory locks end with the transaction.")));
}

/* At commit, claims become the session's; at abort, they are given back. */
static void
ClaimsXactCallback(XactEvent event, void *arg)
{
	HeldClaim **link = &held_claims;

	/*
	 * A prepared transaction outlives the session's next ones, so a claim
	 * taken in it could not follow its outcome: refuse.
	 */
	if (event == XACT_EVENT_PRE_PREPARE)
	{
		for (HeldClaim *claim = held_claims; claim != NULL; claim = claim->next)
			if (claim->subid != InvalidSubTransactionId)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot PREPARE a transaction that claimed a processor"),
						 errhint("Claim the processor in a transaction of its own.")));
		return;
	}

	while (*link != NULL)
	{
		if ((*link)->subid == InvalidSubTransactionId)
			link = &(*link)->next;
		else if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
			DropClaim(link);
		else if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT)
		{
			(*link)->subid = InvalidSubTransactionId;
			link = &(*link)->next;
		}
		else
			link = &(*link)->next;
	}
}

/* A claim taken in an aborted savepoint is given back; one committed moves up. */
static void
ClaimsSubXactCallback(SubXactEvent event, SubTransactionId mySubid,
					  SubTransactionId parentSubid, void *arg)
{
	HeldClaim **link = &held_claims;

	while (*link != NULL)
	{
		if ((*link)->subid != mySubid)
			link = &(*link)->next;
		else if (event == SUBXACT_EVENT_ABORT_SUB)
			DropClaim(link);
		else
		{
			if (event == SUBXACT_EVENT_COMMIT_SUB)
				(*link)->subid = parentSubid;
			link = &(*link)->next;
		}
	}
}

/* The claim's checkpoint row, for creating it (RecordOwner). */
typedef struct ClaimRow
{
	text	   *processor;
	text	   *partition;
	const char *instance;		/* NULL: a release, which creates nothing */
	Oid			caller;			/* who owns a row created */
} ClaimRow;

/*
 * Insert the checkpoint row of a claim that has none, recording its owner
 * (ON CONFLICT: a first store may insert the row meanwhile, and keeps it).
 */
static bool
CreateClaimRow(void *arg)
{
	ClaimRow   *claim = (ClaimRow *) arg;
	Oid			argtypes[5] = {TEXTOID, TEXTOID, TEXTOID, INT4OID, TEXTOID};
	Datum		values[5];

	if (claim->instance == NULL)
		return true;
	values[0] = PointerGetDatum(claim->processor);
	values[1] = PointerGetDatum(claim->partition);
	values[2] = CStringGetTextDatum(claim->instance);
	values[3] = Int32GetDatum(MyProcPid);
	values[4] = CStringGetTextDatum(GetUserNameFromId(claim->caller, false));
	if (ProcessorsHaveOwners())
		RunKeptStatement(&insert_owner_plan,
						 "INSERT INTO eventstore.checkpoints"
						 " (processor_id, partition, owner_instance, owner_pid,"
						 "  claimed_at, updated_at, owner)"
						 " VALUES ($1, $2, $3, $4, now(), now(), $5)"
						 " ON CONFLICT (processor_id, partition) DO NOTHING",
						 5, argtypes, values);
	else
		RunKeptStatement(&insert_unowned_plan,
						 "INSERT INTO eventstore.checkpoints"
						 " (processor_id, partition, owner_instance, owner_pid,"
						 "  claimed_at, updated_at)"
						 " VALUES ($1, $2, $3, $4, now(), now())"
						 " ON CONFLICT (processor_id, partition) DO NOTHING",
						 4, argtypes, values);
	return true;
}

/*
 * Record in the checkpoint row who holds the claim (instance NULL: nobody),
 * without waiting: a row another transaction has locked, or is inserting,
 * keeps its previous owner.
 */
static void
RecordOwner(text *processor, text *partition, const char *instance, Oid caller)
{
	static const char *const names[] = {"checkpoints"};
	int			natts[] = {CheckpointsNatts()};
	TableWriter *w = TableWriterOpen(instance ? "claim_processor" : "release_processor",
									 1, names, natts);
	ClaimRow	claim = {processor, partition, instance, caller};
	ScanKeyData keys[2];
	TimestampTz now = GetCurrentTransactionStartTimestamp();

	TableWriterKey(w, 0, &keys[0], CHECKPOINTS_PROCESSOR_ID, F_TEXTEQ,
				   PointerGetDatum(processor));
	TableWriterKey(w, 0, &keys[1], CHECKPOINTS_PARTITION, F_TEXTEQ,
				   PointerGetDatum(partition));
	if (TableWriterLockOrCreate(w, 0, 2, keys, "a processor's checkpoint row",
								false, CreateClaimRow, &claim) == ROW_LOCKED)
	{
		TupleTableSlot *row = TableWriterCopyOfLocked(w, 0);

		row->tts_isnull[CHECKPOINTS_OWNER_INSTANCE - 1] = (instance == NULL);
		row->tts_isnull[CHECKPOINTS_OWNER_PID - 1] = (instance == NULL);
		if (instance != NULL)
		{
			row->tts_values[CHECKPOINTS_OWNER_INSTANCE - 1] = CStringGetTextDatum(instance);
			row->tts_values[CHECKPOINTS_OWNER_PID - 1] = Int32GetDatum(MyProcPid);
			row->tts_values[CHECKPOINTS_CLAIMED_AT - 1] = TimestampTzGetDatum(now);
			row->tts_isnull[CHECKPOINTS_CLAIMED_AT - 1] = false;
		}
		row->tts_values[CHECKPOINTS_UPDATED_AT - 1] = TimestampTzGetDatum(now);
		/* a row from before 0.3.0 becomes the caller's */
		if (natts[0] >= CHECKPOINTS_OWNER && row->tts_isnull[CHECKPOINTS_OWNER - 1])
		{
			row->tts_values[CHECKPOINTS_OWNER - 1] =
				CStringGetTextDatum(GetUserNameFromId(caller, false));
			row->tts_isnull[CHECKPOINTS_OWNER - 1] = false;
		}
		TableWriterUpdate(w, 0, row);
	}
	TableWriterClose(w);
}

/*
 * SQL: claim_processor(processor_id, instance_id, partition)
 * True when this session now holds the processor for instance_id (also when
 * it already did); false, at once, while another live session holds it or
 * this session holds it for another instance.
 */
Datum
eventstore_claim_processor(PG_FUNCTION_ARGS)
{
	text	   *processor = RequireName(fcinfo, 0, "processor_id");
	text	   *instance_text = RequireName(fcinfo, 1, "instance_id");
	text	   *partition = RequireName(fcinfo, 2, "partition");
	char	   *instance = text_to_cstring(instance_text);
	LOCKTAG		tag = ClaimLockTag(processor, partition);
	HeldClaim **held = FindClaim(&tag);
	HeldClaim  *claim;
	RoleSwitch	caller;

	if (held != NULL)
		PG_RETURN_BOOL(strcmp((*held)->instance, instance) == 0);
	ConnectSpi();
	caller = BecomeRole(ExtensionOwner());
	RequireProcessorOwner(processor, partition, caller.caller);

	if (!callbacks_registered)
	{
		RegisterXactCallback(ClaimsXactCallback, NULL);
		RegisterSubXactCallback(ClaimsSubXactCallback, NULL);
		callbacks_registered = true;
	}
	/* allocated first, so nothing can fail between taking and recording it */
	claim = MemoryContextAlloc(TopMemoryContext, sizeof(HeldClaim));
	claim->tag = tag;
	claim->instance = MemoryContextStrdup(TopMemoryContext, instance);
	claim->subid = GetCurrentSubTransactionId();
	if (LockAcquire(&tag, ExclusiveLock, true, true) == LOCKACQUIRE_NOT_AVAIL)
	{
		pfree(claim->instance);
		pfree(claim);
		RestoreRole(caller);
		SPI_finish();
		PG_RETURN_BOOL(false);
	}
	/* remembered at once, so an abort from here on gives it back */
	claim->next = held_claims;
	held_claims = claim;

	RecordOwner(processor, partition, instance, caller.caller);
	RestoreRole(caller);
	SPI_finish();
	PG_RETURN_BOOL(true);
}

/*
 * SQL: release_processor(processor_id, instance_id, partition)
 * True when this session held the processor for instance_id and has let it
 * go; false otherwise.
 */
Datum
eventstore_release_processor(PG_FUNCTION_ARGS)
{
	text	   *processor = RequireName(fcinfo, 0, "processor_id");
	char	   *instance = text_to_cstring(RequireName(fcinfo, 1, "instance_id"));
	text	   *partition = RequireName(fcinfo, 2, "partition");
	LOCKTAG		tag = ClaimLockTag(processor, partition);
	HeldClaim **held = FindClaim(&tag);

	RoleSwitch	caller;

	/* only the session holding a claim (which it was allowed) releases it */
	if (held == NULL || strcmp((*held)->instance, instance) != 0)
		PG_RETURN_BOOL(false);
	DropClaim(held);
	caller = BecomeRole(ExtensionOwner());
	RecordOwner(processor, partition, NULL, caller.caller);
	RestoreRole(caller);
	PG_RETURN_BOOL(true);
}

/*
 * SQL: processor_claim_key(processor_id, partition): the claim's lock key as
 * pg_locks shows it, (classid << 32) | objid, with locktype 'advisory' and
 * objsubid 17747; eventstore.processors joins pg_locks on it.
 */
Datum
eventstore_processor_claim_key(PG_FUNCTION_ARGS)
{
	LOCKTAG		tag = ClaimLockTag(PG_GETARG_TEXT_PP(0), PG_GETARG_TEXT_PP(1));

	PG_RETURN_INT64((int64) (((uint64) tag.locktag_field2 << 32) |
							 tag.locktag_field3));
}
