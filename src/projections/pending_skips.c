/*
 * projections/pending_skips.c
 *		What this backend knows of the projections' pending skips: which
 *		projections have none, so that the per-stream order check of an
 *		inline application (StreamHasPendingSkips) costs a comparison, not an
 *		index probe, while no skip is pending.
 *
 * A projection is known to have no pending skip when a probe of its
 * pending rows (projection_skips_stream_idx, through SnapshotSelf) found
 * none, and no invalidation of projection_skips has been received since.
 * Every row written pending (a skip; an update that leaves or makes a row
 * pending) passes the table's trigger projection_skips_pending, which asks
 * for that invalidation: it goes out when the writing transaction commits,
 * after its rows are visible and before its locks are released, like any
 * catalog change; it is seen by every backend at its next
 * AcceptInvalidationMessages, which the check calls first, and at once by
 * the writer's own backend.  So a known "none" is what a probe would say:
 * a pending row it misses was committed by a transaction whose
 * invalidation had not gone out yet, which is still releasing its locks;
 * an appender of the same stream waited for that transaction's stream lock
 * and has its invalidation by then.
 *
 * The invalidation names the table's TOAST relation (the table itself
 * when it has none), which no backend keeps open: receivers pay a hash
 * lookup, not a rebuild of the table's relcache entry.  An invalidation of
 * the table itself (a rewrite, a new or dropped index or trigger, a drop)
 * forgets everything too.  A projection is remembered only while that
 * trigger is in place and enabled ALWAYS (so that it fires under every
 * session_replication_role); otherwise every check probes.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_trigger.h"
#include "commands/trigger.h"
#include "core/catalog.h"
#include "projections/projections.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

/* The trigger whose invalidations keep the knowledge right. */
#define PENDING_TRIGGER "projection_skips_pending"

PG_FUNCTION_INFO_V1(eventstore_note_pending_skip);

static int32 *none_pending = NULL;	/* projection ids, in TopMemoryContext */
static int	none_count = 0;
static int	none_space = 0;
static Oid	watched_table = InvalidOid; /* projection_skips when they were seen */
static Oid	watched_toast = InvalidOid;
static bool callback_registered = false;

/* Relcache callback: projection_skips changed, or everything is reset. */
static void
ForgetNoPendingSkips(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == watched_table || relid == watched_toast)
		none_count = 0;
}

/* The relation whose invalidation tells of a pending row of `skips`. */
static Oid
PendingSignalRelid(Relation skips)
{
	Oid			toast = skips->rd_rel->reltoastrelid;

	return OidIsValid(toast) ? toast : RelationGetRelid(skips);
}

/*
 * Is the projection known to have no pending skip, as this transaction
 * would see it now?  Processes the invalidations received first.
 */
bool
NoPendingSkipsKnown(int32 projection_id)
{
	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(ForgetNoPendingSkips, (Datum) 0);
		callback_registered = true;
	}
	AcceptInvalidationMessages();
	for (int i = 0; i < none_count; i++)
		if (none_pending[i] == projection_id)
			return true;
	return false;
}

/* Is the trigger that signals pending rows on `skips`, firing always? */
static bool
PendingTriggerInPlace(Relation skips)
{
	TriggerDesc *triggers = skips->trigdesc;

	if (triggers == NULL)
		return false;
	for (int i = 0; i < triggers->numtriggers; i++)
	{
		Trigger    *t = &triggers->triggers[i];

		if (strcmp(t->tgname, PENDING_TRIGGER) == 0 &&
			t->tgenabled == TRIGGER_FIRES_ALWAYS &&
			TRIGGER_FOR_ROW(t->tgtype) && TRIGGER_FOR_BEFORE(t->tgtype) &&
			TRIGGER_FOR_INSERT(t->tgtype) && TRIGGER_FOR_UPDATE(t->tgtype) &&
			t->tgnattr == 0 && t->tgqual == NULL &&
			get_func_namespace(t->tgfoid) == RelationGetNamespace(skips))
		{
			char	   *name = get_func_name(t->tgfoid);

			if (name != NULL && strcmp(name, "note_pending_skip") == 0)
				return true;
		}
	}
	return false;
}

/*
 * A probe of `skips` (open, locked) found no pending row of the projection:
 * remember it until the next invalidation of the table.
 */
void
NoteNoPendingSkips(Relation skips, int32 projection_id)
{
	if (!PendingTriggerInPlace(skips))
		return;
	/* a change of the table since the check: the callback forgot already */
	if (watched_table != RelationGetRelid(skips) ||
		watched_toast != PendingSignalRelid(skips))
	{
		watched_table = RelationGetRelid(skips);
		watched_toast = PendingSignalRelid(skips);
		none_count = 0;
	}
	if (none_count == none_space)
	{
		int			space = Max(8, none_space * 2);

		none_pending = none_pending == NULL
			? MemoryContextAlloc(TopMemoryContext, sizeof(int32) * space)
			: repalloc(none_pending, sizeof(int32) * space);
		none_space = space;
	}
	none_pending[none_count++] = projection_id;
}

/*
 * Trigger projection_skips_pending (BEFORE INSERT OR UPDATE, FOR EACH ROW,
 * enabled ALWAYS): a row that is pending once written invalidates what
 * every backend knows of pending skips, at commit; this backend forgets at
 * once.
 */
Datum
eventstore_note_pending_skip(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	HeapTuple	row;
	bool		drained_null;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		elog(ERROR, "note_pending_skip must be called as a BEFORE INSERT OR UPDATE row trigger");
	row = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event)
		? trigdata->tg_newtuple : trigdata->tg_trigtuple;
	(void) heap_getattr(row, SKIPS_DRAINED_AT,
						RelationGetDescr(trigdata->tg_relation), &drained_null);
	if (drained_null)
	{
		CacheInvalidateRelcacheByRelid(PendingSignalRelid(trigdata->tg_relation));
		none_count = 0;
	}
	return PointerGetDatum(row);
}
