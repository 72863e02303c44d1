/*
 * processors.c
 *		claim_processor, release_processor and processor_owner_pid: one live
 *		instance per processor (and partition).
 *
 * The live owner is whoever holds a session-level lock of the extension's
 * own on the processor: PostgreSQL frees it the moment that session ends,
 * cleanly or by a crash, so a dead owner never blocks the next claim.  The
 * lock is an advisory lock whose fourth key field (objsubid in pg_locks,
 * 17747) no SQL advisory-lock function uses, keyed by a 64-bit hash of the
 * processor and partition.  The checkpoint row records who claimed last
 * (instance id and pid), for eventstore.processors; it is written in the
 * caller's transaction, while the lock itself is not transactional.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pg_eventstore.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(eventstore_claim_processor);
PG_FUNCTION_INFO_V1(eventstore_release_processor);
PG_FUNCTION_INFO_V1(eventstore_processor_claim_key);

/* The advisory lock key field that marks pg_eventstore's claims. */
#define CLAIM_LOCK_FIELD4 0x4553

static SPIPlanPtr record_claim_plan;
static SPIPlanPtr record_release_plan;

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

/* Does this session hold the claim? */
static bool
ClaimHeldHere(const LOCKTAG *tag)
{
#if PG_VERSION_NUM >= 170000
	return LockHeldByMe(tag, ExclusiveLock, false);
#else
	return LockHeldByMe(tag, ExclusiveLock);
#endif
}

/*
 * Run a kept plan over ($1 processor, $2 partition, $3 instance, $4 this
 * backend's pid, $5 now, $6 held_before); returns the rows it changed.
 */
static int
RecordOwner(SPIPlanPtr *cache, const char *sql, text *processor,
			text *partition, text *instance, bool held_before)
{
	Oid			argtypes[6] = {TEXTOID, TEXTOID, TEXTOID, INT4OID, TIMESTAMPTZOID,
	BOOLOID};
	Datum		values[6] = {PointerGetDatum(processor), PointerGetDatum(partition),
		PointerGetDatum(instance), Int32GetDatum(MyProcPid),
		TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()),
	BoolGetDatum(held_before)};
	int			rows;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	rows = ExecKeptPlan(KeptPlan(cache, sql, 6, argtypes), values, NULL, false, 0);
	SPI_finish();
	return rows;
}

/*
 * SQL: claim_processor(processor_id, instance_id, partition)
 * True when this session now holds the processor for instance_id (also when
 * it already did); false while another live session holds it, or this
 * session holds it for another instance.
 */
Datum
eventstore_claim_processor(PG_FUNCTION_ARGS)
{
	text	   *processor = RequireName(fcinfo, 0, "processor_id");
	text	   *instance = RequireName(fcinfo, 1, "instance_id");
	text	   *partition = RequireName(fcinfo, 2, "partition");
	LOCKTAG		tag = ClaimLockTag(processor, partition);
	bool		held_before = ClaimHeldHere(&tag);

	if (!held_before &&
		LockAcquire(&tag, ExclusiveLock, true, true) == LOCKACQUIRE_NOT_AVAIL)
		PG_RETURN_BOOL(false);

	/* record the owner; a session holding it for another instance refuses */
	if (RecordOwner(&record_claim_plan,
					"INSERT INTO eventstore.checkpoints AS c"
					" (processor_id, partition, owner_instance, owner_pid,"
					"  claimed_at, updated_at)"
					" VALUES ($1, $2, $3, $4, $5, $5)"
					" ON CONFLICT (processor_id, partition) DO UPDATE"
					" SET owner_instance = $3, owner_pid = $4, claimed_at = $5,"
					"     updated_at = $5"
					" WHERE $6 IS NOT TRUE OR c.owner_instance = $3",
					processor, partition, instance, held_before) == 0)
		PG_RETURN_BOOL(false);
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
	text	   *instance = RequireName(fcinfo, 1, "instance_id");
	text	   *partition = RequireName(fcinfo, 2, "partition");
	LOCKTAG		tag = ClaimLockTag(processor, partition);

	if (!ClaimHeldHere(&tag))
		PG_RETURN_BOOL(false);
	if (RecordOwner(&record_release_plan,
					"UPDATE eventstore.checkpoints"
					" SET owner_instance = NULL, owner_pid = NULL, updated_at = $5"
					" WHERE processor_id = $1 AND partition = $2"
					" AND owner_instance = $3 AND owner_pid = $4",
					processor, partition, instance, false) == 0)
		PG_RETURN_BOOL(false);
	LockRelease(&tag, ExclusiveLock, true);
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
