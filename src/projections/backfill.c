/*
 * projections/backfill.c
 *		The set-based first build: a projection's backfill statement, run
 *		once as its owner when the projection builds from the start, over
 *		eventstore.backfill_events().
 *
 * The statement runs in one snapshot, taken for it, whose read horizon
 * (LogHorizonOf, as the runner's batches judge it) bounds what
 * backfill_events() returns: every event below the horizon that the
 * projection takes, in log order.  Below the horizon every transaction is
 * over, so the set is final: the checkpoint moves, through that same
 * snapshot, to the last event below the horizon (AdvanceToHead), and the
 * handler goes on from the event after.  A transaction that took its
 * transaction id before the snapshot and commits after it is at or above
 * the horizon: its events are the handler's, never the backfill's.
 *
 * on_reset, the statement, the checkpoint and the mark that the backfill
 * is done commit together, in the transaction of the run that did them: a
 * crash or an error leaves none of it, and the next run starts the
 * backfill again, on_reset first.  A statement that fails fails the
 * projection with its error (on_error, which is about events, does not
 * apply), its effects rolled back.
 *
 * backfill_events() is SQL, inlined into the statement that reads it, over
 * the view eventstore.backfill_log: the statement's plan reads the log
 * directly, as an INSERT ... SELECT over eventstore.events would, and the
 * owner needs no privilege on the log (the view reads it as the
 * extension's owner).  The view's functions here answer only inside a
 * backfill, and only to the role it runs as (SE020 otherwise).
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "core/errors.h"
#include "core/kept_plans.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "projections/projections.h"
#include "schemas/schemas.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/snapmgr.h"
#include "utils/xid8.h"

PG_FUNCTION_INFO_V1(eventstore_backfill_horizon);
PG_FUNCTION_INFO_V1(eventstore_backfill_types);
PG_FUNCTION_INFO_V1(eventstore_backfill_upcasts);
PG_FUNCTION_INFO_V1(eventstore_backfill_data);
PG_FUNCTION_INFO_V1(eventstore_backfill_schema_version);

/* What backfill_events() returns in the backfill running now. */
typedef struct BackfillScope
{
	Oid			owner;			/* the role the statement runs as */
	FullTransactionId horizon;	/* events below it */
	ArrayType  *types;			/* of these types; NULL: every type */
	bool		upcast;			/* upcast, and some type has a schema */
} BackfillScope;

/* NULL: no backfill is running in this backend */
static BackfillScope *scope = NULL;

static SPIPlanPtr backfilled_plan;

/*
 * Is the projection's build from the start still to run its backfill?
 * The mark that it ran (backfilled_at) is cleared by every rebuild.
 */
bool
BackfillPending(Projection *p)
{
	return p->backfill != NULL && !p->caught_up && !p->backfilled;
}

/* The projection's event types as a text[], NULL for every type. */
static ArrayType *
TypesArray(Projection *p)
{
	Datum	   *elems;

	if (p->ntypes == 0)
		return NULL;
	elems = palloc(sizeof(Datum) * p->ntypes);
	for (int i = 0; i < p->ntypes; i++)
		elems[i] = CStringGetTextDatum(p->types[i]);
	return construct_array(elems, p->ntypes, TEXTOID, -1, false, TYPALIGN_INT);
}

/*
 * The work of a backfill, in a subtransaction of its own: on_reset, the
 * statement as the owner with its captured settings in a snapshot taken
 * for it (eventstore.replaying() true), and the checkpoint moved through
 * that snapshot to the last event below its horizon.
 */
static void
RunBackfillStatement(Projection *p, void *arg)
{
	BackfillScope *s = (BackfillScope *) arg;
	BackfillScope *volatile previous = scope;
	volatile bool was_replaying;
	Snapshot	snapshot;
	SPIPlanPtr	plan;
	RoleSwitch	saved;
	volatile int rc = 0;

	RunOnReset(p);
	/* upcasting costs nothing per event when no type has a schema */
	if (s->upcast)
		s->upcast = LockSchemaRegistry(AccessShareLock) && RegisteredTypeCount() > 0;
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	s->horizon = LogHorizonOf(snapshot);

	saved = EnterProjectionOwner(p);
	/* parsed as the owner, with its settings: its names resolve as its own */
	plan = SPI_prepare(p->backfill, 0, NULL);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare of a backfill failed: %s",
			 SPI_result_code_string(SPI_result));
	was_replaying = SetReplaying(true);
	scope = s;
	PG_TRY();
	{
		rc = SPI_execute_snapshot(plan, NULL, NULL, snapshot, InvalidSnapshot,
								  false, true, 0);
	}
	PG_FINALLY();
	{
		scope = previous;
		SetReplaying(was_replaying);
	}
	PG_END_TRY();
	if (rc < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the backfill of projection \"%s\" failed: %s",
						p->name, SPI_result_code_string(rc)),
				 errhint("backfill is one SQL statement such as INSERT ... SELECT ... FROM eventstore.backfill_events().")));
	SPI_freeplan(plan);
	LeaveProjectionOwner(saved);

	AdvanceToHead(p, snapshot, s->horizon);
	UnregisterSnapshot(snapshot);
}

/*
 * Run the projection's backfill (BackfillPending) and record where it
 * stopped, in the caller's transaction.  Returns false when its statement
 * failed: the projection is failed with the error then, and nothing of the
 * backfill is left.  An error that is not the statement's own (a cancel, a
 * shutdown, a deadlock, a serialization failure) is raised on: the run is
 * rolled back, and the next one starts the backfill again.  The caller is
 * connected to SPI, runs as the extension's owner and holds the
 * projection's runner lock.
 */
bool
Backfill(Projection *p)
{
	BackfillScope s;
	LogPlace	start = p->checkpoint;
	ErrorData  *error;
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(p->id)};

	s.owner = p->owner;
	s.types = TypesArray(p);
	s.upcast = p->upcast;
	s.horizon = InvalidFullTransactionId;
	error = TrySubtransaction(p, RunBackfillStatement, &s, true);
	if (error != NULL)
	{
		p->checkpoint = start;
		if (!IsPoison(error))
			ReThrowError(error);
		error->message = psprintf("the backfill statement failed: %s",
								  error->message ? error->message : "unknown error");
		/* not any event's fault: no error position */
		RecordProjectionFailure(p, error, -1, NULL);
		return false;
	}
	p->backfilled = true;
	SaveProjectionProgress(p, 0);
	ExecKeptPlan(KeptPlan(&backfilled_plan,
						  "UPDATE eventstore.projections"
						  " SET backfilled_at = pg_catalog.clock_timestamp()"
						  " WHERE projection_id = $1",
						  1, argtypes),
				 values, NULL, false, 0);
	return true;
}

/* The backfill running now, for its own role; else SE020. */
static BackfillScope *
CurrentScope(void)
{
	if (scope == NULL || GetUserId() != scope->owner)
		ereport(ERROR,
				(errcode(ERRCODE_ES_NO_BACKFILL),
				 errmsg("eventstore.backfill_events() can only be read by a projection's backfill statement"),
				 errdetail("It returns the events of the projection being built, and only while its backfill runs."),
				 errhint("Pass the statement as create_projection(..., backfill => '...'): it runs when the projection builds from the start.")));
	return scope;
}

/* SQL: backfill_horizon(): backfill_events() returns the events below it. */
Datum
eventstore_backfill_horizon(PG_FUNCTION_ARGS)
{
	PG_RETURN_FULLTRANSACTIONID(CurrentScope()->horizon);
}

/* SQL: backfill_types(): of these types; NULL: every type. */
Datum
eventstore_backfill_types(PG_FUNCTION_ARGS)
{
	BackfillScope *s = CurrentScope();

	if (s->types == NULL)
		PG_RETURN_NULL();
	PG_RETURN_ARRAYTYPE_P(s->types);
}

/* SQL: backfill_upcasts(): does backfill_events() upcast events? */
Datum
eventstore_backfill_upcasts(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(CurrentScope()->upcast);
}

/*
 * SQL: backfill_data(event_type, schema_version, data): the data as the
 * projection's handler would receive it (upcast to its type's latest
 * version, unless the projection takes events as stored).
 */
Datum
eventstore_backfill_data(PG_FUNCTION_ARGS)
{
	BackfillScope *s = CurrentScope();
	RegisteredType *t;

	if (PG_ARGISNULL(2))
		PG_RETURN_NULL();
	if (!s->upcast || PG_ARGISNULL(0) ||
		(t = TypeToUpcast(PG_GETARG_TEXT_PP(0), PG_ARGISNULL(1) ? 0 : PG_GETARG_INT32(1),
						  PG_ARGISNULL(1))) == NULL)
		PG_RETURN_DATUM(PG_GETARG_DATUM(2));
	PG_RETURN_JSONB_P(UpcastDataFrom(t, PG_ARGISNULL(1) ? 0 : PG_GETARG_INT32(1),
									 PG_ARGISNULL(1), PG_GETARG_JSONB_P(2)));
}

/*
 * SQL: backfill_schema_version(event_type, schema_version): the version of
 * the data backfill_data returns.
 */
Datum
eventstore_backfill_schema_version(PG_FUNCTION_ARGS)
{
	BackfillScope *s = CurrentScope();
	RegisteredType *t;

	if (!s->upcast || PG_ARGISNULL(0) ||
		(t = TypeToUpcast(PG_GETARG_TEXT_PP(0), PG_ARGISNULL(1) ? 0 : PG_GETARG_INT32(1),
						  PG_ARGISNULL(1))) == NULL)
	{
		if (PG_ARGISNULL(1))
			PG_RETURN_NULL();
		PG_RETURN_INT32(PG_GETARG_INT32(1));
	}
	PG_RETURN_INT32(t->latest);
}
