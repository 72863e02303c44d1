/*
 * projection_registry.c
 *		Reading and writing eventstore.projections, the projections' locks,
 *		and the invalidation that tells every backend the registry changed.
 *
 * The registry is read through the latest snapshot, never the caller's
 * transaction snapshot: a decision about a projection (apply it, skip it,
 * replay it) must see every status change committed before the lock that
 * guards the decision was granted, even in a REPEATABLE READ transaction.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "pg_eventstore.h"
#include "storage/lock.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

static SPIPlanPtr load_by_name_plan;
static SPIPlanPtr load_by_id_plan;
static SPIPlanPtr save_plan;
static SPIPlanPtr failure_plan;
static SPIPlanPtr last_xid_plan;

static const char *const status_names[] = {"active", "rebuilding", "failed", "stopped"};

/* The status as the registry spells it. */
static const char *
ProjectionStatusName(ProjectionStatus status)
{
	return status_names[status];
}

/* The status the registry spells `name`. */
static ProjectionStatus
ParseStatus(const char *name)
{
	for (int i = 0; i < (int) lengthof(status_names); i++)
		if (strcmp(name, status_names[i]) == 0)
			return (ProjectionStatus) i;
	elog(ERROR, "unknown projection status \"%s\"", name);
	return PROJECTION_FAILED;	/* keep the compiler quiet */
}

/* A Projection, in the current memory context, from a registry row. */
Projection *
ProjectionFromRow(HeapTuple row, TupleDesc desc)
{
	Projection *p = palloc0(sizeof(Projection));
	bool		isnull;
	Datum		types;

	p->id = DatumGetInt32(SPI_getbinval(row, desc, 1, &isnull));
	p->name = SPI_getvalue(row, desc, 2);
	p->version = DatumGetInt32(SPI_getbinval(row, desc, 3, &isnull));
	p->handler = DatumGetObjectId(SPI_getbinval(row, desc, 4, &isnull));
	p->batch_handler = DatumGetBool(SPI_getbinval(row, desc, 5, &isnull));
	types = SPI_getbinval(row, desc, 6, &isnull);
	if (!isnull)
	{
		Datum	   *elems;
		bool	   *nulls;

		deconstruct_array(DatumGetArrayTypeP(types), TEXTOID, -1, false,
						  TYPALIGN_INT, &elems, &nulls, &p->ntypes);
		p->types = palloc(sizeof(char *) * Max(p->ntypes, 1));
		for (int i = 0; i < p->ntypes; i++)
			p->types[i] = TextDatumGetCString(elems[i]);
	}
	p->inline_mode = strcmp(SPI_getvalue(row, desc, 7), "inline") == 0;
	p->on_reset = SPI_getvalue(row, desc, 8);
	p->skip_errors = strcmp(SPI_getvalue(row, desc, 9), "skip") == 0;
	p->owner = DatumGetObjectId(SPI_getbinval(row, desc, 10, &isnull));
	p->status = ParseStatus(SPI_getvalue(row, desc, 11));
	p->caught_up = DatumGetBool(SPI_getbinval(row, desc, 12, &isnull));
	p->checkpoint.position = DatumGetInt64(SPI_getbinval(row, desc, 13, &isnull));
	p->checkpoint.xid = DatumGetFullTransactionId(SPI_getbinval(row, desc, 14, &isnull));
	p->replay_until = DatumGetFullTransactionId(SPI_getbinval(row, desc, 15, &isnull));
	return p;
}

/* Run a registry query through the latest snapshot. */
static void
QueryLatest(SPIPlanPtr plan, Datum *values, const char *nulls)
{
	int			rc = SPI_execute_snapshot(plan, values, nulls, GetLatestSnapshot(),
										  InvalidSnapshot, true, false, 0);

	if (rc != SPI_OK_SELECT)
		elog(ERROR, "registry query failed: %s", SPI_result_code_string(rc));
}

/* Select the versions of projection `name` (all when version_null). */
static void
QueryByName(text *name, int32 version, bool version_null)
{
	Oid			argtypes[2] = {TEXTOID, INT4OID};
	Datum		values[2] = {PointerGetDatum(name), Int32GetDatum(version)};
	char		nulls[2] = {' ', version_null ? 'n' : ' '};

	QueryLatest(KeptPlan(&load_by_name_plan,
						 "SELECT " PROJECTION_COLUMNS
						 " FROM eventstore.projections"
						 " WHERE name = $1 AND ($2 IS NULL OR version = $2)"
						 " ORDER BY version",
						 2, argtypes),
				values, nulls);
}

/*
 * The projections named `name`: every version when all_versions, else the
 * given one, or the highest when latest_only.  Raises SE005 when there is
 * none.  The caller is connected to SPI.
 */
List *
LoadProjections(text *name, bool all_versions, int32 version,
				bool latest_only)
{
	List	   *result = NIL;
	uint64		first = 0;

	QueryByName(name, version, all_versions || latest_only);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_ES_UNKNOWN_PROJECTION),
				 all_versions || latest_only
				 ? errmsg("projection \"%s\" does not exist", text_to_cstring(name))
				 : errmsg("projection \"%s\" version %d does not exist",
						  text_to_cstring(name), version),
				 errhint("eventstore.projection_status lists the projections and their versions.")));
	if (latest_only)
		first = SPI_processed - 1;
	for (uint64 i = first; i < SPI_processed; i++)
		result = lappend(result, ProjectionFromRow(SPI_tuptable->vals[i],
												   SPI_tuptable->tupdesc));
	return result;
}

/* Projection `name` at `version` as it is now, NULL when there is none. */
Projection *
FindProjection(text *name, int32 version)
{
	QueryByName(name, version, false);
	if (SPI_processed == 0)
		return NULL;
	return ProjectionFromRow(SPI_tuptable->vals[0], SPI_tuptable->tupdesc);
}

/* The projection's registry row as it is now; NULL once it is dropped. */
Projection *
ReloadProjection(int32 id)
{
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(id)};

	QueryLatest(KeptPlan(&load_by_id_plan,
						 "SELECT " PROJECTION_COLUMNS
						 " FROM eventstore.projections WHERE projection_id = $1",
						 1, argtypes),
				values, NULL);
	if (SPI_processed == 0)
		return NULL;
	return ProjectionFromRow(SPI_tuptable->vals[0], SPI_tuptable->tupdesc);
}

/*
 * Write the projection's status, checkpoint and caught_up flag, adding
 * `applied` to its count of applied events.  Any status but failed clears
 * the last failure.
 */
void
SaveProjectionProgress(Projection *p, int64 applied)
{
	Oid			argtypes[6] = {INT4OID, TEXTOID, BOOLOID, INT8OID, XID8OID, INT8OID};
	Datum		values[6] = {
		Int32GetDatum(p->id),
		CStringGetTextDatum(ProjectionStatusName(p->status)),
		BoolGetDatum(p->caught_up),
		Int64GetDatum(p->checkpoint.position),
		FullTransactionIdGetDatum(p->checkpoint.xid),
		Int64GetDatum(applied)
	};

	ExecKeptPlan(KeptPlan(&save_plan,
						  "UPDATE eventstore.projections SET status = $2,"
						  " caught_up = $3, \"position\" = $4,"
						  " transaction_id = $5,"
						  " events_applied = events_applied + $6,"
						  " caught_up_at = CASE WHEN $3 AND NOT caught_up"
						  "   THEN clock_timestamp() ELSE caught_up_at END,"
						  " last_error = CASE WHEN $2 = 'failed'"
						  "   THEN last_error END,"
						  " error_sqlstate = CASE WHEN $2 = 'failed'"
						  "   THEN error_sqlstate END,"
						  " error_position = CASE WHEN $2 = 'failed'"
						  "   THEN error_position END,"
						  " error_event_id = CASE WHEN $2 = 'failed'"
						  "   THEN error_event_id END,"
						  " failed_at = CASE WHEN $2 = 'failed'"
						  "   THEN failed_at END,"
						  " updated_at = clock_timestamp()"
						  " WHERE projection_id = $1",
						  6, argtypes),
				 values, NULL, false, 0);
}

/*
 * Mark the projection failed on the event at `position` (event_id NULL:
 * not an event's fault), with the error.
 */
void
RecordProjectionFailure(Projection *p, ErrorData *error, int64 position,
						pg_uuid_t *event_id)
{
	Oid			argtypes[5] = {INT4OID, TEXTOID, TEXTOID, INT8OID, UUIDOID};
	Datum		values[5] = {
		Int32GetDatum(p->id),
		CStringGetTextDatum(error->message ? error->message : "unknown error"),
		CStringGetTextDatum(unpack_sql_state(error->sqlerrcode)),
		Int64GetDatum(position),
		event_id ? UUIDPGetDatum(event_id) : (Datum) 0
	};
	char		nulls[5] = {' ', ' ', ' ', ' ', event_id ? ' ' : 'n'};

	p->status = PROJECTION_FAILED;
	ereport(WARNING,
			(errcode(error->sqlerrcode),
			 errmsg("projection \"%s\" version %d failed at position " INT64_FORMAT,
					p->name, p->version, position),
			 errdetail("%s", error->message ? error->message : "unknown error"),
			 errhint("Fix the handler or the event's cause, then call eventstore.start_projection to retry it.")));
	NoteProjectionsChanged();
	ExecKeptPlan(KeptPlan(&failure_plan,
						  "UPDATE eventstore.projections SET status = 'failed',"
						  " last_error = $2, error_sqlstate = $3,"
						  " error_position = $4, error_event_id = $5,"
						  " failed_at = clock_timestamp(),"
						  " updated_at = clock_timestamp()"
						  " WHERE projection_id = $1",
						  5, argtypes),
				 values, nulls, false, 0);
}

/*
 * Tell every backend, when this transaction commits, that the registry
 * changed: their caches of inline projections reload on next use.  The
 * message goes out before the transaction's locks are released, so whoever
 * is granted a projection's lock next sees the change.
 */
void
NoteProjectionsChanged(void)
{
	CacheInvalidateRelcacheByRelid(EventstoreRelid("projections"));
	WakeWorkersAtCommit();
}

/*
 * The transaction id of the newest event committed now ('0' for an empty
 * log): a replay that starts now is complete only once its read horizon has
 * passed it, whatever older transaction still holds the horizon back.
 */
FullTransactionId
LastCommittedXid(void)
{
	bool		isnull;
	Datum		xid;

	QueryLatest(KeptPlan(&last_xid_plan,
						 "SELECT transaction_id FROM eventstore.events"
						 " ORDER BY transaction_id DESC LIMIT 1",
						 0, NULL),
				NULL, NULL);
	if (SPI_processed == 0)
		return InvalidFullTransactionId;
	xid = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return DatumGetFullTransactionId(xid);
}

/*
 * Take one of a projection's transaction-level locks; false when wait is
 * false and the lock is held in a conflicting mode.
 */
bool
LockProjection(int32 id, uint16 kind, LOCKMODE mode, bool wait)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) id, 0, kind);
	return LockAcquire(&tag, mode, false, !wait) != LOCKACQUIRE_NOT_AVAIL;
}

/* The role that owns the extension's tables, and so its bookkeeping. */
Oid
ExtensionOwner(void)
{
	HeapTuple	tuple;
	Oid			owner;

	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(EventstoreRelid("projections")));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for eventstore.projections");
	owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);
	return owner;
}

/* Does the projection take events of this type? */
bool
ProjectionWantsType(const Projection *p, const char *type, int len)
{
	if (p->ntypes == 0)
		return true;
	for (int i = 0; i < p->ntypes; i++)
		if (strncmp(p->types[i], type, len) == 0 && p->types[i][len] == '\0')
			return true;
	return false;
}
