/*
 * projections/registry.c
 *		Every read and write of the projection tables (eventstore.projections,
 *		projection_skips, projection_dead_letters), every status change, the
 *		projections' locks, and the invalidation that tells every backend the
 *		registry changed.
 *
 * The registry is read through the latest snapshot, never the caller's
 * transaction snapshot: a decision about a projection (apply it, skip it,
 * replay it) must see every status change committed before the lock that
 * guards the decision was granted, even in a REPEATABLE READ transaction.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/table.h"
#include "catalog/pg_type.h"
#include "core/catalog.h"
#include "core/errors.h"
#include "core/kept_plans.h"
#include "miscadmin.h"
#include "projections/projections.h"
#include "storage/lock.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/snapmgr.h"
#include "utils/xid8.h"
#include "worker/worker.h"

static void NoteProjectionsChanged(void);

static SPIPlanPtr load_by_name_plans[2];	/* [1]: of a 0.2.0 registry */
static SPIPlanPtr load_by_id_plans[2];	/* [1]: of a 0.2.0 registry */
static SPIPlanPtr load_all_plans[2];	/* [1]: of a 0.2.0 registry */
static SPIPlanPtr due_plans[2];
static SPIPlanPtr insert_plan;
static SPIPlanPtr insert_by_oid_plan;
static SPIPlanPtr replay_archive_plan;	/* into a 0.2.0 registry */
static SPIPlanPtr delete_plan;
static SPIPlanPtr owned_by_plan;
static SPIPlanPtr reassign_plan;
static SPIPlanPtr drop_owned_plan;
static SPIPlanPtr name_owner_plan;
static SPIPlanPtr reset_plan;
static SPIPlanPtr reset_0_2_plan;
static SPIPlanPtr save_plan;
static SPIPlanPtr failure_plan;
static SPIPlanPtr skip_plan;
static SPIPlanPtr skip_0_2_plan;	/* into a 0.2.0 table */
static SPIPlanPtr dead_letter_plan;
static SPIPlanPtr drained_plan;
static SPIPlanPtr parked_plan;
static SPIPlanPtr parked_streams_plan;
static SPIPlanPtr resolve_plan;
static SPIPlanPtr retry_failure_plan;
static SPIPlanPtr rebuilt_plan;

static const char *const status_names[] = {
	[PROJECTION_ACTIVE] = STATUS_ACTIVE,
	[PROJECTION_REBUILDING] = STATUS_REBUILDING,
	[PROJECTION_FAILED] = STATUS_FAILED,
	[PROJECTION_STOPPED] = STATUS_STOPPED
};

/* The status as the registry spells it. */
static const char *
ProjectionStatusName(ProjectionStatus status)
{
	return status_names[status];
}

/* The status the registry spells `name`. */
static ProjectionStatus
ParseProjectionStatus(const char *name)
{
	for (int i = 0; i < (int) lengthof(status_names); i++)
		if (strcmp(name, status_names[i]) == 0)
			return (ProjectionStatus) i;
	elog(ERROR, "unknown projection status \"%s\"", name);
	return PROJECTION_FAILED;	/* keep the compiler quiet */
}

/*
 * Does the registry keep handlers and owners as oids (regproc, regrole)?
 * So does a 0.2.0 one, which this library serves until ALTER EXTENSION
 * UPDATE turns them into names.
 */
bool
RegistryKeepsOids(void)
{
	return get_atttype(EventstoreRelid("projections"),
					   PROJECTIONS_HANDLER) == REGPROCOID;
}

/*
 * The kept plan of a registry read whose SQL is SQL(columns), for the
 * columns of this database's registry.
 */
#define REGISTRY_PLAN(plans, SQL, nargs, argtypes) \
	(RegistryKeepsOids() \
	 ? KeptPlan(&(plans)[1], SQL(PROJECTIONS_COLUMN_LIST_0_2), nargs, argtypes) \
	 : KeptPlan(&(plans)[0], SQL(PROJECTIONS_COLUMN_LIST), nargs, argtypes))

/*
 * The function a registry row's handler signature names now, InvalidOid
 * when there is none (dropped, or not restored with the registry).
 */
static Oid
LookUpHandler(const char *signature)
{
	LOCAL_FCINFO(fcinfo, 1);
	Datum		result;

	/* not a signature at all (to_regprocedure would raise a syntax error) */
	if (strchr(signature, '(') == NULL)
		return InvalidOid;
	InitFunctionCallInfoData(*fcinfo, NULL, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = CStringGetTextDatum(signature);
	fcinfo->args[0].isnull = false;
	result = to_regprocedure(fcinfo);
	return fcinfo->isnull ? InvalidOid : DatumGetObjectId(result);
}

/*
 * A Projection, in the current memory context, from a registry row; its
 * handler and owner are looked up by name.
 */
static Projection *
ProjectionFromRow(HeapTuple row, TupleDesc desc)
{
	Projection *p = palloc0(sizeof(Projection));
	bool		isnull;
	Datum		types;

	p->id = DatumGetInt32(SPI_getbinval(row, desc, PROJECTIONS_PROJECTION_ID, &isnull));
	p->name = SPI_getvalue(row, desc, PROJECTIONS_NAME);
	p->version = DatumGetInt32(SPI_getbinval(row, desc, PROJECTIONS_VERSION, &isnull));
	if (TupleDescAttr(desc, PROJECTIONS_HANDLER - 1)->atttypid == REGPROCOID)
	{
		/* a 0.2.0 registry, read until ALTER EXTENSION UPDATE converts it */
		p->handler = DatumGetObjectId(SPI_getbinval(row, desc, PROJECTIONS_HANDLER, &isnull));
		p->handler_name = format_procedure_qualified(p->handler);
		p->owner = DatumGetObjectId(SPI_getbinval(row, desc, PROJECTIONS_OWNER, &isnull));
		p->owner_name = GetUserNameFromId(p->owner, true);
		if (p->owner_name == NULL)
		{
			p->owner_name = psprintf("with oid %u", p->owner);
			p->owner = InvalidOid;
		}
	}
	else
	{
		p->handler_name = SPI_getvalue(row, desc, PROJECTIONS_HANDLER);
		p->handler = LookUpHandler(p->handler_name);
		p->owner_name = SPI_getvalue(row, desc, PROJECTIONS_OWNER);
		p->owner = get_role_oid(p->owner_name, true);
		p->handler_owner = SPI_getvalue(row, desc, PROJECTIONS_HANDLER_OWNER);
	}
	p->batch_handler = DatumGetBool(SPI_getbinval(row, desc, PROJECTIONS_BATCH_HANDLER, &isnull));
	p->upcast = DatumGetBool(SPI_getbinval(row, desc, PROJECTIONS_UPCAST, &isnull));
	p->backfill = SPI_getvalue(row, desc, PROJECTIONS_BACKFILL);
	p->parallel = DatumGetInt32(SPI_getbinval(row, desc, PROJECTIONS_PARALLEL, &isnull));
	p->replay_archive = DatumGetBool(SPI_getbinval(row, desc, PROJECTIONS_REPLAY_ARCHIVE, &isnull));
	(void) SPI_getbinval(row, desc, PROJECTIONS_BACKFILLED_AT, &isnull);
	p->backfilled = !isnull;
	types = SPI_getbinval(row, desc, PROJECTIONS_EVENT_TYPES, &isnull);
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
	p->inline_mode = strcmp(SPI_getvalue(row, desc, PROJECTIONS_MODE), MODE_INLINE) == 0;
	p->on_reset = SPI_getvalue(row, desc, PROJECTIONS_ON_RESET);
	{
		char	   *on_error = SPI_getvalue(row, desc, PROJECTIONS_ON_ERROR);

		p->park_errors = strcmp(on_error, ON_ERROR_PARK) == 0;
		p->skip_errors = p->park_errors || strcmp(on_error, ON_ERROR_SKIP) == 0;
	}
	p->status = ParseProjectionStatus(SPI_getvalue(row, desc, PROJECTIONS_STATUS));
	p->caught_up = DatumGetBool(SPI_getbinval(row, desc, PROJECTIONS_CAUGHT_UP, &isnull));
	p->checkpoint.position = DatumGetInt64(SPI_getbinval(row, desc, PROJECTIONS_POSITION, &isnull));
	p->checkpoint.xid = DatumGetFullTransactionId(SPI_getbinval(row, desc, PROJECTIONS_TRANSACTION_ID, &isnull));
	p->replay_until = DatumGetFullTransactionId(SPI_getbinval(row, desc, PROJECTIONS_REPLAY_UNTIL, &isnull));
	/* NULL: the build from the start replays what the log held when it began */
	p->replayed_through.xid = p->replay_until;
	p->replayed_through.position = PG_INT64_MAX;
	{
		Datum		xid = SPI_getbinval(row, desc, PROJECTIONS_REPLAYED_XID, &isnull);

		if (!isnull)
		{
			p->replayed_through.xid = DatumGetFullTransactionId(xid);
			p->replayed_through.position =
				DatumGetInt64(SPI_getbinval(row, desc, PROJECTIONS_REPLAYED_POSITION, &isnull));
		}
	}
	{
		Datum		settings = SPI_getbinval(row, desc, PROJECTIONS_SETTINGS, &isnull);

		/* copied out of SPI's memory with the rest of the row */
		p->settings = isnull ? NULL : DatumGetArrayTypePCopy(settings);
	}
	return p;
}

/* Run a registry query through the latest snapshot. */
static void
QueryLatest(SPIPlanPtr plan, Datum *values, const char *nulls)
{
	QueryKeptPlanThrough(plan, values, nulls, GetLatestSnapshot(), 0);
}

/* Select the versions of projection `name` (all when version_null). */
static void
QueryByName(text *name, int32 version, bool version_null)
{
	Oid			argtypes[2] = {TEXTOID, INT4OID};
	Datum		values[2] = {PointerGetDatum(name), Int32GetDatum(version)};
	char		nulls[2] = {' ', version_null ? 'n' : ' '};

#define BY_NAME(columns) \
	"SELECT " columns " FROM eventstore.projections" \
	" WHERE name = $1 AND ($2 IS NULL OR version = $2) ORDER BY version"
	QueryLatest(REGISTRY_PLAN(load_by_name_plans, BY_NAME, 2, argtypes),
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

#define BY_ID(columns) \
	"SELECT " columns " FROM eventstore.projections WHERE projection_id = $1"
	QueryLatest(REGISTRY_PLAN(load_by_id_plans, BY_ID, 1, argtypes),
				values, NULL);
	if (SPI_processed == 0)
		return NULL;
	return ProjectionFromRow(SPI_tuptable->vals[0], SPI_tuptable->tupdesc);
}

/*
 * Every projection of this database, in projection_id order, allocated in
 * `context` (the inline cache's).  The caller is connected to SPI.
 */
List *
LoadAllProjections(MemoryContext context)
{
	MemoryContext old;
	List	   *loaded = NIL;

#define ALL(columns) \
	"SELECT " columns " FROM eventstore.projections ORDER BY projection_id"
	QueryLatest(REGISTRY_PLAN(load_all_plans, ALL, 0, NULL), NULL, NULL);
	old = MemoryContextSwitchTo(context);
	for (uint64 i = 0; i < SPI_processed; i++)
		loaded = lappend(loaded, ProjectionFromRow(SPI_tuptable->vals[i],
												   SPI_tuptable->tupdesc));
	MemoryContextSwitchTo(old);
	return loaded;
}

/*
 * The projections a worker serving projection_id % members == member should
 * look at now: rebuilds, active async ones, and active inline ones with
 * skips to drain or an automatic promotion pending; and, whatever its
 * projection_id, every replay split in partitions with one still to do
 * (each worker takes a partition: partitions.c).  DueProjections allocated
 * in `context`.  The caller is connected to SPI.
 */
List *
ReadDueProjections(int member, int members, MemoryContext context)
{
	Oid			argtypes[2] = {INT4OID, INT4OID};
	Datum		values[2] = {Int32GetDatum(member), Int32GetDatum(members)};
	List	   *due = NIL;

	/*
	 * An inline projection whose handler or owner is missing (a restore
	 * without them) is due too, so that the runner fails it, naming what is
	 * missing, with no append needed first.  (A 0.2.0 registry keeps oids,
	 * whose functions and roles were checked when they were stored.)
	 */
#define DUE(columns, drainable, also, split) \
	"SELECT " columns " FROM eventstore.projections p" \
	" WHERE (projection_id % $2 = $1" split ")" \
	" AND (status = '" STATUS_REBUILDING "'" \
	"  OR (status = '" STATUS_ACTIVE "' AND (mode = '" MODE_ASYNC "'" \
	"   OR EXISTS (SELECT FROM eventstore.projection_skips s" \
	"    WHERE s.projection_id = p.projection_id" \
	"      AND s.drained_at IS NULL" drainable ")" also ")))" \
	" ORDER BY projection_id"
	ExecKeptPlan(RegistryKeepsOids()
				 ? KeptPlan(&due_plans[1], DUE(PROJECTIONS_COLUMN_LIST_0_2, "", "", ""),
							2, argtypes)
				 : KeptPlan(&due_plans[0],
							DUE(PROJECTIONS_COLUMN_LIST,
	/* skips parked behind a dead letter wait for its retry or discard */
								" AND " SKIP_NOT_PARKED("s"),
								"   OR EXISTS (SELECT FROM eventstore.read_models r"
								"    WHERE r.name = p.name AND r.version = p.version"
								"      AND r.promotion_pending)"
								"   OR to_regrole(quote_ident(owner)) IS NULL"
								"   OR (SELECT pg_get_userbyid(f.proowner) FROM pg_proc f"
								"       WHERE f.oid = to_regprocedure(handler))"
								"      IS DISTINCT FROM handler_owner",
								" OR (parallel > 1 AND EXISTS (SELECT"
								"  FROM eventstore.projection_partitions q"
								"  WHERE q.projection_id = p.projection_id"
								"  AND NOT q.done))"),
							2, argtypes),
				 values, NULL, true, 0);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		MemoryContext old = MemoryContextSwitchTo(context);
		DueProjection *d = palloc(sizeof(DueProjection));
		bool		isnull;

		d->id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i],
											SPI_tuptable->tupdesc,
											PROJECTIONS_PROJECTION_ID, &isnull));
		d->rebuilding = strcmp(SPI_getvalue(SPI_tuptable->vals[i],
											SPI_tuptable->tupdesc,
											PROJECTIONS_STATUS),
							   STATUS_REBUILDING) == 0;
		d->parallel = RegistryKeepsOids() ? 1 :
			DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i],
										SPI_tuptable->tupdesc,
										PROJECTIONS_PARALLEL, &isnull));
		due = lappend(due, d);
		MemoryContextSwitchTo(old);
	}
	return due;
}

/*
 * Insert a projection's registry row: active over an empty log, else
 * rebuilding, to be backfilled from the start.
 */
void
InsertProjection(NewProjection *np)
{
	bool		by_oid = RegistryKeepsOids();
	Oid			argtypes[16] = {TEXTOID, INT4OID, TEXTOID, BOOLOID, TEXTARRAYOID,
		TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, XID8OID, TEXTOID, TEXTARRAYOID,
	BOOLOID, TEXTOID, INT4OID};
	Datum		values[16];
	char		nulls[16] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	bool		empty = !FullTransactionIdIsValid(np->replay_until);

	values[0] = PointerGetDatum(np->name);
	values[1] = Int32GetDatum(np->version);
	values[2] = CStringGetTextDatum(format_procedure_qualified(np->handler));
	values[3] = BoolGetDatum(np->batch_handler);
	values[4] = np->event_types;
	nulls[4] = np->event_types == (Datum) 0 ? 'n' : ' ';
	values[5] = CStringGetTextDatum(np->mode);
	values[6] = PointerGetDatum(np->on_reset);
	nulls[6] = np->on_reset == NULL ? 'n' : ' ';
	values[7] = CStringGetTextDatum(np->on_error);
	values[8] = CStringGetTextDatum(GetUserNameFromId(np->owner, false));
	values[9] = CStringGetTextDatum(empty ? STATUS_ACTIVE : STATUS_REBUILDING);
	values[10] = FullTransactionIdGetDatum(np->replay_until);
	values[11] = CStringGetTextDatum(GetUserNameFromId(np->handler_owner, false));
	values[12] = np->settings;
	values[13] = BoolGetDatum(np->upcast);
	values[14] = PointerGetDatum(np->backfill);
	nulls[14] = np->backfill == NULL ? 'n' : ' ';
	values[15] = Int32GetDatum(np->parallel);
	if (by_oid)
	{
		argtypes[2] = REGPROCOID;
		values[2] = ObjectIdGetDatum(np->handler);
		argtypes[8] = OIDOID;
		values[8] = ObjectIdGetDatum(np->owner);
	}
#define INSERT_PROJECTION(columns, values) \
	"INSERT INTO eventstore.projections" \
	" (name, version, handler, batch_handler, event_types," \
	"  mode, on_reset, on_error, owner, status, caught_up," \
	"  rebuild_started_at, caught_up_at, created_at, updated_at," \
	"  replay_until" columns ")" \
	" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10," \
	"  $10 = '" STATUS_ACTIVE "'," \
	"  CASE WHEN $10 = '" STATUS_REBUILDING "' THEN clock_timestamp() END," \
	"  CASE WHEN $10 = '" STATUS_ACTIVE "' THEN clock_timestamp() END," \
	"  clock_timestamp(), clock_timestamp(), $11" values ")"
	ExecKeptPlan(by_oid
				 ? KeptPlan(&insert_by_oid_plan, INSERT_PROJECTION("", ""), 11,
							argtypes)
				 : KeptPlan(&insert_plan,
							INSERT_PROJECTION(", handler_owner, settings, upcast,"
											  " backfill, parallel",
											  ", $12, $13, $14, $15, $16")
							" RETURNING projection_id", 16,
							argtypes),
				 values, nulls, false, 0);
	/* its build from the start is split in partitions (parallel) */
	if (!by_oid && !empty && np->parallel > 1)
	{
		bool		isnull;

		SplitReplay(DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
												SPI_tuptable->tupdesc, 1,
												&isnull)));
	}
	NoteProjectionsChanged();
}

/*
 * The owner of the existing versions of projection `name`, by name; NULL
 * when it has none.  The caller is connected to SPI.
 */
const char *
OwnerOfProjectionName(text *name)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {PointerGetDatum(name)};

	/* owner::text: a role name, also in a 0.2.0 registry (regrole) */
	QueryLatest(KeptPlan(&name_owner_plan,
						 "SELECT owner::text FROM eventstore.projections"
						 " WHERE name = $1 ORDER BY version LIMIT 1",
						 1, argtypes),
				values, NULL);
	return SPI_processed == 0 ? NULL
		: SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
}

/*
 * The projections role `owner` owns, as "projection p version v, ...";
 * NULL when none.  The caller is connected to SPI and is the extension's
 * owner.
 */
char *
ProjectionsOwnedBy(const char *owner)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(owner)};

	ExecKeptPlan(KeptPlan(&owned_by_plan,
						  "SELECT string_agg(format('projection %s version %s', name, version),"
						  "  ', ' ORDER BY name, version)"
						  " FROM eventstore.projections WHERE owner = $1",
						  1, argtypes),
				 values, NULL, true, 1);
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
}

/*
 * Give role `from`'s projections, and the handlers it owned, to role `to`
 * (REASSIGN OWNED).  The caller is connected to SPI and is the extension's
 * owner.
 */
void
ReassignProjections(const char *from, const char *to)
{
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2] = {CStringGetTextDatum(from), CStringGetTextDatum(to)};

	ExecKeptPlan(KeptPlan(&reassign_plan,
						  "UPDATE eventstore.projections SET"
						  " owner = CASE WHEN owner = $1 THEN $2 ELSE owner END,"
						  " handler_owner = CASE WHEN handler_owner = $1 THEN $2"
						  "  ELSE handler_owner END,"
						  " updated_at = clock_timestamp()"
						  " WHERE owner = $1 OR handler_owner = $1",
						  2, argtypes),
				 values, NULL, false, 0);
	NoteProjectionsChanged();
}

/*
 * Drop role `owner`'s projections with their skips and dead letters (DROP
 * OWNED).  The caller is connected to SPI and is the extension's owner.
 */
void
DropProjectionsOwnedBy(const char *owner)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(owner)};

	ExecKeptPlan(KeptPlan(&drop_owned_plan,
						  "WITH p AS (DELETE FROM eventstore.projections"
						  "  WHERE owner = $1 RETURNING projection_id),"
						  " s AS (DELETE FROM eventstore.projection_skips"
						  "  WHERE projection_id IN (SELECT projection_id FROM p))"
						  " DELETE FROM eventstore.projection_dead_letters"
						  " WHERE projection_id IN (SELECT projection_id FROM p)",
						  1, argtypes),
				 values, NULL, false, 0);
	NoteProjectionsChanged();
}

/* Delete a projection's registry row, skips and dead letters. */
void
DeleteProjection(int32 id)
{
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(id)};

	ExecKeptPlan(KeptPlan(&delete_plan,
						  "WITH s AS (DELETE FROM eventstore.projection_skips"
						  "  WHERE projection_id = $1),"
						  " d AS (DELETE FROM eventstore.projection_dead_letters"
						  "  WHERE projection_id = $1)"
						  " DELETE FROM eventstore.projections"
						  " WHERE projection_id = $1",
						  1, argtypes),
				 values, NULL, false, 0);
	NoteProjectionsChanged();
}

/*
 * How far the projection has applied the log, for the rebuild about to
 * start: what it will apply again (eventstore.replaying() true), as a log
 * place; false for everything up to replay_until.  An inline projection
 * whose replay was done has applied every event as it was appended (but
 * for pending skips); any other, up to its checkpoint, or, in the middle of
 * a build from the start, as far as that build or the one before reached.
 */
static bool
AppliedThrough(Projection *p, LogPlace *through)
{
	if (p->inline_mode && p->caught_up)
		return false;
	*through = p->checkpoint;
	if (!p->caught_up && CompareLogPlaces(p->replayed_through, *through) > 0)
		*through = p->replayed_through;
	return true;
}

/*
 * Mark the projection rebuilding with its checkpoint at the start of the
 * log and its last failure cleared; the replay is done once its horizon has
 * passed replay_until, and applies again the events the projection had
 * applied (AppliedThrough).
 */
void
ResetProjectionForRebuild(Projection *p, FullTransactionId replay_until)
{
	Oid			argtypes[4] = {INT4OID, XID8OID, XID8OID, INT8OID};
	Datum		values[4] = {Int32GetDatum(p->id),
	FullTransactionIdGetDatum(replay_until)};
	char		nulls[4] = {' ', ' ', 'n', 'n'};
	LogPlace	through;

	if (AppliedThrough(p, &through))
	{
		values[2] = FullTransactionIdGetDatum(through.xid);
		values[3] = Int64GetDatum(through.position);
		nulls[2] = nulls[3] = ' ';
	}
#define RESET_PROJECTION(replayed) \
	"UPDATE eventstore.projections SET status = '" STATUS_REBUILDING "'," \
	" caught_up = false, \"position\" = 0," \
	" transaction_id = '0', replay_until = $2, last_error = NULL," \
	" error_sqlstate = NULL, error_position = NULL," \
	" error_event_id = NULL, failed_at = NULL," \
	" rebuild_started_at = clock_timestamp()," \
	" updated_at = clock_timestamp()" replayed \
	" WHERE projection_id = $1"
	/* a 0.2.0 registry has no replayed_* columns: it replays all as before */
	if (RegistryKeepsOids())
		ExecKeptPlan(KeptPlan(&reset_0_2_plan, RESET_PROJECTION(""), 2, argtypes),
					 values, nulls, false, 0);
	else
		ExecKeptPlan(KeptPlan(&reset_plan,
							  RESET_PROJECTION(", replayed_xid = $3, replayed_position = $4,"
											   " backfilled_at = NULL"),
							  4, argtypes),
					 values, nulls, false, 0);
	/* a parallel projection's replay is split in partitions afresh */
	if (p->parallel > 1)
		SplitReplay(p->id);
	NoteProjectionsChanged();
}

/*
 * Whether the projection's build from the start, just reset, reads the
 * archive too (rebuild_projection's include_archive).  A 0.2.0 registry has
 * no archive.
 */
void
SetReplayArchive(Projection *p, bool include_archive)
{
	Oid			argtypes[2] = {INT4OID, BOOLOID};
	Datum		values[2] = {Int32GetDatum(p->id), BoolGetDatum(include_archive)};

	if (RegistryKeepsOids())
		return;
	ExecKeptPlan(KeptPlan(&replay_archive_plan,
						  "UPDATE eventstore.projections SET replay_archive = $2"
						  " WHERE projection_id = $1",
						  2, argtypes),
				 values, NULL, false, 0);
	p->replay_archive = include_archive;
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
						  " last_error = CASE WHEN $2 = '" STATUS_FAILED "'"
						  "   THEN last_error END,"
						  " error_sqlstate = CASE WHEN $2 = '" STATUS_FAILED "'"
						  "   THEN error_sqlstate END,"
						  " error_position = CASE WHEN $2 = '" STATUS_FAILED "'"
						  "   THEN error_position END,"
						  " error_event_id = CASE WHEN $2 = '" STATUS_FAILED "'"
						  "   THEN error_event_id END,"
						  " failed_at = CASE WHEN $2 = '" STATUS_FAILED "'"
						  "   THEN failed_at END,"
						  " updated_at = clock_timestamp()"
						  " WHERE projection_id = $1",
						  6, argtypes),
				 values, NULL, false, 0);
}

/*
 * Give the projection a new status (its caught_up flag and checkpoint as
 * they are in *p), for every backend from this transaction's commit.
 */
void
SetProjectionStatus(Projection *p, ProjectionStatus status)
{
	p->status = status;
	SaveProjectionProgress(p, 0);
	NoteProjectionsChanged();
}

/*
 * Mark the projection failed on the event at `position` (event_id NULL:
 * not an event's fault; position < 0: not at an event at all, say its
 * handler is missing), with the error.
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
	char		nulls[5] = {' ', ' ', ' ', position < 0 ? 'n' : ' ',
	event_id ? ' ' : 'n'};

	p->status = PROJECTION_FAILED;
	ereport(WARNING,
			(errcode(error->sqlerrcode),
			 position < 0
			 ? errmsg("projection \"%s\" version %d failed", p->name, p->version)
			 : errmsg("projection \"%s\" version %d failed at position " INT64_FORMAT,
					  p->name, p->version, position),
			 errdetail("%s", error->message ? error->message : "unknown error"),
			 errhint("Fix the handler or the event's cause, then call eventstore.start_projection to retry it.")));
	NoteProjectionsChanged();
	ExecKeptPlan(KeptPlan(&failure_plan,
						  "UPDATE eventstore.projections SET status = '" STATUS_FAILED "',"
						  " last_error = $2, error_sqlstate = $3,"
						  " error_position = $4, error_event_id = $5,"
						  " failed_at = clock_timestamp(),"
						  " updated_at = clock_timestamp()"
						  " WHERE projection_id = $1",
						  5, argtypes),
				 values, nulls, false, 0);
}

/* Record that the projection skipped row i, in this transaction. */
void
RecordSkip(Projection *p, EventRows *rows, int i)
{
	Oid			argtypes[5] = {INT4OID, INT8OID, XID8OID, TIMESTAMPTZOID, TEXTOID};
	LogPlace	place = EventRowsPlace(rows, i);
	Datum		values[5] = {Int32GetDatum(p->id), Int64GetDatum(place.position),
		FullTransactionIdGetDatum(place.xid),
		TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()),
	EventRowsColumn(rows, i, EVENTS_STREAM_ID)};

	/* a 0.2.0 table has no stream_id */
	if (OidIsValid(OptionalEventstoreRelid("projection_skips_stream_idx")))
		ExecKeptPlan(KeptPlan(&skip_plan,
							  "INSERT INTO eventstore.projection_skips"
							  " (projection_id, global_position, transaction_id, skipped_at,"
							  "  stream_id)"
							  " VALUES ($1, $2, $3, $4, $5)",
							  5, argtypes),
					 values, NULL, false, 0);
	else
		ExecKeptPlan(KeptPlan(&skip_0_2_plan,
							  "INSERT INTO eventstore.projection_skips"
							  " (projection_id, global_position, transaction_id, skipped_at)"
							  " VALUES ($1, $2, $3, $4)",
							  4, argtypes),
					 values, NULL, false, 0);
}

/*
 * A pending skip of the projection (of the stream, when by_stream), as
 * SnapshotSelf sees it: committed, or this transaction's own.
 */
static bool
AnyPendingSkip(Relation skips, Oid index, int32 projection_id, Datum stream_id,
			   bool by_stream)
{
	ScanKeyData keys[2];
	SysScanDesc scan;
	bool		pending;

	ScanKeyInit(&keys[0], SKIPS_PROJECTION_ID, BTEqualStrategyNumber, F_INT4EQ,
				Int32GetDatum(projection_id));
	ScanKeyInit(&keys[1], SKIPS_STREAM_ID, BTEqualStrategyNumber, F_TEXTEQ,
				stream_id);
	scan = systable_beginscan(skips, index, true, SnapshotSelf, by_stream ? 2 : 1,
							  keys);
	pending = systable_getnext(scan) != NULL;
	systable_endscan(scan);
	return pending;
}

/*
 * Has the projection a skip of the stream not drained yet, committed or
 * this transaction's own?  Then a later event of that stream must not be
 * applied before it: the append records a skip for it too, and the drain
 * applies both in log order.  On every inline application, so: while the
 * projection is known to have no pending skip at all (pending_skips.c), a
 * comparison; otherwise an index probe on the pending skips, which are few
 * or none, without SPI, of the projection's (which, when there is none,
 * makes it known) and then of the stream's.  An appender that skipped an
 * earlier event of the stream held the stream's lock until it committed,
 * so its skip, and the invalidation that makes it unknown, are seen here.
 */
bool
StreamHasPendingSkips(Projection *p, Datum stream_id)
{
	Oid			index;
	Relation	skips;
	bool		pending;

	if (NoPendingSkipsKnown(p->id))
		return false;
	index = OptionalEventstoreRelid("projection_skips_stream_idx");
	if (!OidIsValid(index))
		return false;
	skips = table_open(EventstoreRelid("projection_skips"), AccessShareLock);
	pending = AnyPendingSkip(skips, index, p->id, (Datum) 0, false);
	if (!pending)
		NoteNoPendingSkips(skips, p->id);
	else
		pending = AnyPendingSkip(skips, index, p->id, stream_id, true);
	table_close(skips, NoLock);
	return pending;
}

/*
 * A dead letter's error columns (error_sqlstate, error_message,
 * error_detail, error_context) as query arguments, into values[0 .. 4).
 */
static void
ErrorColumns(ErrorData *error, Datum *values, char *nulls)
{
	values[0] = CStringGetTextDatum(unpack_sql_state(error->sqlerrcode));
	values[1] = CStringGetTextDatum(error->message ? error->message : "unknown error");
	values[2] = error->detail ? CStringGetTextDatum(error->detail) : (Datum) 0;
	nulls[2] = error->detail ? ' ' : 'n';
	values[3] = error->context ? CStringGetTextDatum(error->context) : (Datum) 0;
	nulls[3] = error->context ? ' ' : 'n';
}

/*
 * Record row i as a dead letter of the projection, with its error; returns
 * its dead_letter_id.
 */
int64
RecordDeadLetter(Projection *p, EventRows *rows, int i, ErrorData *error)
{
	Datum		id;

	Oid			argtypes[10] = {INT4OID, INT8OID, UUIDOID, TEXTOID, TEXTOID,
	TEXTOID, TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID};
	Datum		values[10];
	char		nulls[10] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};

	values[0] = Int32GetDatum(p->id);
	values[1] = EventRowsColumn(rows, i, EVENTS_GLOBAL_POSITION);
	values[2] = EventRowsColumn(rows, i, EVENTS_EVENT_ID);
	values[3] = EventRowsColumn(rows, i, EVENTS_STREAM_ID);
	values[4] = EventRowsColumn(rows, i, EVENTS_EVENT_TYPE);
	ErrorColumns(error, values + 5, nulls + 5);
	values[9] = TimestampTzGetDatum(GetCurrentTimestamp());

	ExecKeptPlan(KeptPlan(&dead_letter_plan,
						  "INSERT INTO eventstore.projection_dead_letters"
						  " (projection_id, global_position, event_id, stream_id,"
						  "  event_type, error_sqlstate, error_message,"
						  "  error_detail, error_context, failed_at)"
						  " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
						  " RETURNING dead_letter_id",
						  10, argtypes),
				 values, nulls, false, 0);
	if (!GetFirstResult(&id))
		elog(ERROR, "a dead letter was inserted without its id");
	return DatumGetInt64(id);
}

/*
 * Does this database's registry know parked events (0.3.0's
 * projection_skips.parked and dead_letter_id, and dead letters' resolution)?
 */
bool
RegistryParks(void)
{
	return OidIsValid(OptionalEventstoreRelid("projection_skips_parked_idx"));
}

/*
 * Record row i as parked, in this transaction: a pending skip row marked
 * parked, standing for dead letter dead_letter_id (0: parked behind its
 * stream's).  A row the event already has (an inline skip, a drained skip
 * of an earlier rebuild) is made pending and parked.
 */
void
RecordParked(Projection *p, EventRows *rows, int i, int64 dead_letter_id)
{
	Oid			argtypes[6] = {INT4OID, INT8OID, XID8OID, TIMESTAMPTZOID, TEXTOID,
	INT8OID};
	LogPlace	place = EventRowsPlace(rows, i);
	Datum		values[6] = {Int32GetDatum(p->id), Int64GetDatum(place.position),
		FullTransactionIdGetDatum(place.xid),
		TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()),
		EventRowsColumn(rows, i, EVENTS_STREAM_ID),
	Int64GetDatum(dead_letter_id)};
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', dead_letter_id == 0 ? 'n' : ' '};

	ExecKeptPlan(KeptPlan(&parked_plan,
						  "INSERT INTO eventstore.projection_skips AS s"
						  " (projection_id, global_position, transaction_id, skipped_at,"
						  "  stream_id, parked, dead_letter_id)"
						  " VALUES ($1, $2, $3, $4, $5, true, $6)"
						  " ON CONFLICT (projection_id, global_position) DO UPDATE"
						  " SET parked = true, dead_letter_id = excluded.dead_letter_id,"
						  "  skipped_at = CASE WHEN s.drained_at IS NULL THEN s.skipped_at"
						  "   ELSE excluded.skipped_at END,"
						  "  drained_at = NULL, outcome = NULL",
						  6, argtypes),
				 values, nulls, false, 0);
}

/*
 * The streams of rows[0 .. n) that the projection has parked behind a dead
 * letter, as text datums in the current memory context, seen with this
 * transaction's own writes.  The caller is connected to SPI.
 */
List *
ParkedStreams(Projection *p, EventRows *rows, int n)
{
	Oid			argtypes[2] = {INT4OID, TEXTARRAYOID};
	Datum		values[2];
	Datum	   *ids = palloc(sizeof(Datum) * Max(n, 1));
	List	   *streams = NIL;
	MemoryContext context = CurrentMemoryContext;

	/* only the batch's streams: a bug may park thousands of others */
	for (int i = 0; i < n; i++)
		ids[i] = EventRowsColumn(rows, i, EVENTS_STREAM_ID);
	values[0] = Int32GetDatum(p->id);
	values[1] = PointerGetDatum(construct_array(ids, n, TEXTOID, -1, false,
												TYPALIGN_INT));
	QueryLatest(KeptPlan(&parked_streams_plan,
						 "SELECT DISTINCT stream_id FROM eventstore.projection_skips"
						 " WHERE projection_id = $1 AND drained_at IS NULL"
						 " AND dead_letter_id IS NOT NULL AND stream_id = ANY ($2)",
						 2, argtypes),
				values, NULL);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Datum		stream = SPI_getbinval(SPI_tuptable->vals[i],
										   SPI_tuptable->tupdesc, 1, &isnull);
		MemoryContext old = MemoryContextSwitchTo(context);

		streams = lappend(streams, DatumGetTextPCopy(stream));
		MemoryContextSwitchTo(old);
	}
	return streams;
}

/*
 * Resolve a dead letter as `resolution` (retried, discarded) by role `by`;
 * its stream's row, if it parked one, is drained (applied, discarded).
 */
void
ResolveDeadLetter(Projection *p, int64 dead_letter_id, const char *resolution,
				  const char *by)
{
	Oid			argtypes[5] = {INT4OID, INT8OID, TEXTOID, TEXTOID, TEXTOID};
	bool		retried = strcmp(resolution, RESOLUTION_RETRIED) == 0;
	Datum		values[5] = {Int32GetDatum(p->id), Int64GetDatum(dead_letter_id),
		CStringGetTextDatum(resolution), CStringGetTextDatum(by),
	CStringGetTextDatum(retried ? SKIP_OUTCOME_APPLIED : SKIP_OUTCOME_DISCARDED)};

	ExecKeptPlan(KeptPlan(&resolve_plan,
						  "WITH s AS (UPDATE eventstore.projection_skips"
						  "  SET drained_at = pg_catalog.clock_timestamp(), outcome = $5"
						  "  WHERE projection_id = $1 AND dead_letter_id = $2"
						  "  AND drained_at IS NULL)"
						  " UPDATE eventstore.projection_dead_letters"
						  " SET resolution = $3, resolved_by = $4,"
						  "  resolved_at = pg_catalog.clock_timestamp()"
						  " WHERE dead_letter_id = $2",
						  5, argtypes),
				 values, NULL, false, 0);
}

/* A retried dead letter failed again: it keeps the new error. */
void
RecordRetryFailure(int64 dead_letter_id, ErrorData *error)
{
	Oid			argtypes[5] = {INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};

	values[0] = Int64GetDatum(dead_letter_id);
	ErrorColumns(error, values + 1, nulls + 1);
	ExecKeptPlan(KeptPlan(&retry_failure_plan,
						  "UPDATE eventstore.projection_dead_letters"
						  " SET error_sqlstate = $2, error_message = $3,"
						  "  error_detail = $4, error_context = $5,"
						  "  failed_at = pg_catalog.clock_timestamp()"
						  " WHERE dead_letter_id = $1",
						  5, argtypes),
				 values, nulls, false, 0);
}

/*
 * A rebuild replays the log from the start and meets every event again:
 * the projection's unresolved dead letters are resolved as rebuilt by role
 * `by`, and the rows it parked are given back to the replay (a poison event
 * is dead-lettered again, and parks its stream again under 'park').
 */
void
ReturnDeadLettersToReplay(Projection *p, const char *by)
{
	Oid			argtypes[2] = {INT4OID, TEXTOID};
	Datum		values[2] = {Int32GetDatum(p->id), CStringGetTextDatum(by)};

	if (!RegistryParks())
		return;
	ExecKeptPlan(KeptPlan(&rebuilt_plan,
						  "WITH s AS (UPDATE eventstore.projection_skips"
						  "  SET drained_at = pg_catalog.clock_timestamp(),"
						  "  outcome = '" SKIP_OUTCOME_REBUILT "'"
						  "  WHERE projection_id = $1 AND drained_at IS NULL AND parked)"
						  " UPDATE eventstore.projection_dead_letters"
						  " SET resolution = '" RESOLUTION_REBUILT "', resolved_by = $2,"
						  "  resolved_at = pg_catalog.clock_timestamp()"
						  " WHERE projection_id = $1 AND resolution IS NULL",
						  2, argtypes),
				 values, NULL, false, 0);
}

/* Mark the skips of the events at positions[0 .. n) drained. */
void
MarkSkipsDrained(Projection *p, int64 *positions, int n, bool applied)
{
	Oid			argtypes[3] = {INT4OID, INT8ARRAYOID, TEXTOID};
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));
	Datum		values[3];

	if (n == 0)
		return;
	for (int i = 0; i < n; i++)
		elems[i] = Int64GetDatum(positions[i]);
	values[0] = Int32GetDatum(p->id);
	values[1] = PointerGetDatum(construct_array(elems, n, INT8OID, sizeof(int64),
												FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[2] = CStringGetTextDatum(applied ? SKIP_OUTCOME_APPLIED : SKIP_OUTCOME_ALREADY);
	ExecKeptPlan(KeptPlan(&drained_plan,
						  "UPDATE eventstore.projection_skips"
						  " SET drained_at = pg_catalog.clock_timestamp(), outcome = $3"
						  " WHERE projection_id = $1 AND global_position = ANY ($2)",
						  3, argtypes),
				 values, NULL, false, 0);
}

/*
 * Tell every backend, when this transaction commits, that the registry
 * changed: their caches of inline projections reload on next use.  The
 * message goes out before the transaction's locks are released, so whoever
 * is granted a projection's lock next sees the change.
 */
static void
NoteProjectionsChanged(void)
{
	CacheInvalidateRelcacheByRelid(EventstoreRelid("projections"));
	WakeWorkersAtCommit();
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
