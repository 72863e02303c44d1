/*
 * projections/inline.c
 *		Inline projections, applied inside the appending transaction.
 *
 * Each backend keeps the projections of its database in a cache.
 * Every change to the registry sends an invalidation at commit, before the
 * changing transaction's locks are released; an append takes the registry
 * table's lock (RowExclusiveLock, which creating a projection conflicts
 * with) and, after a projection's apply lock, processes invalidations, so
 * the status it acts on is never older than the last change committed under
 * a lock it has since been granted.
 *
 * For each inline projection that takes some of the batch's event types,
 * the append tries the projection's apply lock in share mode, never
 * waiting; with the lock and an active projection it calls the handler,
 * otherwise it records a skip row for each of those events, in the same
 * transaction, for the rebuild's drain.
 */
#include "postgres.h"

#include "core/catalog.h"
#include "core/kept_plans.h"
#include "projections/projections.h"
#include "storage/lmgr.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "worker/worker.h"

static MemoryContext cache_context = NULL;
static List *projections = NIL;	/* of Projection, in cache_context */
static bool cache_valid = false;
static Oid	registry_relid = InvalidOid;
static bool callback_registered = false;

/* Nesting of ApplyInlineProjections (a handler may append), and the cache
 * contexts replaced meanwhile, freed when the outermost one returns. */
static int	applying_depth = 0;
static List *retired_contexts = NIL;	/* in TopMemoryContext */

/* Relcache callback: the registry changed, or everything is being reset. */
static void
InvalidateProjectionCache(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == registry_relid)
	{
		cache_valid = false;
		registry_relid = InvalidOid;
	}
}

/* Load the registry through the latest snapshot. */
static void
LoadProjectionCache(void)
{
	/* under the caller's context until loaded: an error frees it */
	MemoryContext context = AllocSetContextCreate(CurrentMemoryContext,
												  "pg_eventstore projection cache",
												  ALLOCSET_SMALL_SIZES);
	List	   *loaded;

	ConnectSpi();
	loaded = LoadAllProjections(context);
	SPI_finish();
	MemoryContextSetParent(context, TopMemoryContext);

	/*
	 * A handler applying an older entry may have appended (and so reloaded)
	 * in the middle of its call: keep the old entries until it returns.
	 */
	if (cache_context != NULL)
	{
		if (applying_depth > 0)
		{
			MemoryContext top = MemoryContextSwitchTo(TopMemoryContext);

			retired_contexts = lappend(retired_contexts, cache_context);
			MemoryContextSwitchTo(top);
		}
		else
			MemoryContextDelete(cache_context);
	}
	cache_context = context;
	projections = loaded;
	cache_valid = true;
}

/*
 * Lock the registry for this append and make sure the cache is current;
 * false when this database's extension has no registry (an older version).
 */
static bool
LockRegistry(void)
{
	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(InvalidateProjectionCache, (Datum) 0);
		callback_registered = true;
	}
	if (!OidIsValid(registry_relid))
	{
		registry_relid = RegistryRelid();
		cache_valid = false;
		if (!OidIsValid(registry_relid))
			return false;
	}
	/* granting the lock processes pending invalidations */
	LockRelationOid(registry_relid, RowExclusiveLock);
	if (!cache_valid)
		LoadProjectionCache();
	return true;
}

/* Does any event of the batch have a type the projection takes? */
static bool
WantsAnyOf(Projection *p, EventBatch *batch)
{
	for (int i = 0; i < batch->count; i++)
		if (ProjectionWantsType(p, VARDATA_ANY(batch->events[i].type),
								VARSIZE_ANY_EXHDR(batch->events[i].type)))
			return true;
	return false;
}

/*
 * Called by an append before it inserts its events: does an inline
 * projection take any of them?  Then the append collects its rows for
 * ApplyInlineProjections.  When an async projection (or a rebuild) takes
 * some, the workers are woken when the append commits.
 */
bool
PrepareProjectionsForAppend(EventBatch *batch)
{
	ListCell   *lc;
	bool		inline_wanted = false;
	bool		wake = false;

	if (!LockRegistry())
		return false;
	foreach(lc, projections)
	{
		Projection *p = (Projection *) lfirst(lc);

		if (p->inline_mode)
			inline_wanted = inline_wanted || WantsAnyOf(p, batch);
		else if (p->status == PROJECTION_ACTIVE ||
				 p->status == PROJECTION_REBUILDING)
			wake = wake || WantsAnyOf(p, batch);
	}
	if (wake)
		WakeWorkersAtCommit();
	return inline_wanted;
}

/* The cached inline projection with this id, NULL when there is none. */
static Projection *
CachedProjection(int32 id)
{
	ListCell   *lc;

	if (!cache_valid)
		LoadProjectionCache();
	foreach(lc, projections)
	{
		Projection *p = (Projection *) lfirst(lc);

		if (p->id == id)
			return p;
	}
	return NULL;
}

/*
 * The rows of types the projection takes: all of them as they are (the
 * common case), a copy of some, or NULL for none.
 */
static EventRows *
RowsItTakes(Projection *p, EventRows *rows)
{
	int			n = EventRowsCount(rows);
	int			first_not = n;
	EventRows  *some;

	if (p->ntypes == 0)
		return rows;
	for (int i = 0; i < n && first_not == n; i++)
	{
		text	   *type = EventRowsType(rows, i);

		if (!ProjectionWantsType(p, VARDATA_ANY(type), VARSIZE_ANY_EXHDR(type)))
			first_not = i;
	}
	if (first_not == n)
		return rows;
	some = EventRowsCreate(n);
	for (int i = 0; i < n; i++)
	{
		text	   *type = EventRowsType(rows, i);

		if (ProjectionWantsType(p, VARDATA_ANY(type), VARSIZE_ANY_EXHDR(type)))
			EventRowsCopy(some, rows, i);
	}
	return EventRowsCount(some) > 0 ? some : NULL;
}

/* Apply rows to an inline projection, counting the nesting. */
static void
ApplyCounted(Projection *p, EventRows *rows)
{
	ErrorData  *error;

	applying_depth++;
	PG_TRY();
	{
		ApplyEvents(p, rows, 0, EventRowsCount(rows), p->skip_errors, &error);
	}
	PG_FINALLY();
	{
		applying_depth--;
	}
	PG_END_TRY();
}

/*
 * Apply the appended rows to every inline projection that takes some of
 * them, or record skips where a projection cannot take them now.  A handler
 * error fails the append under on_error = 'stop'; under 'skip' the event is
 * a dead letter and the append goes on.
 */
void
ApplyInlineProjections(EventRows *rows)
{
	List	   *ids = NIL;
	ListCell   *lc;
	bool		spi = false;

	foreach(lc, projections)
		if (((Projection *) lfirst(lc))->inline_mode)
			ids = lappend_int(ids, ((Projection *) lfirst(lc))->id);

	foreach(lc, ids)
	{
		int32		id = lfirst_int(lc);
		bool		locked = LockProjection(id, PROJECTION_APPLY_LOCK, ShareLock,
											false);
		Projection *p;
		EventRows  *mine;
		bool		applying;

		/* a change committed before the lock was granted counts */
		if (locked)
			AcceptInvalidationMessages();
		p = CachedProjection(id);
		if (p == NULL)
			continue;
		mine = RowsItTakes(p, rows);
		if (mine == NULL)
			continue;
		/*
		 * A missing handler or owner: record skips; the runner then fails
		 * it.  A skip of the stream still pending: skip these too, so the
		 * drain applies the stream in order (an append is one stream's).
		 */
		applying = locked && p->status == PROJECTION_ACTIVE &&
			MissingOwnerCode(p) == NULL &&
			!StreamHasPendingSkips(p, EventRowsColumn(mine, 0, EVENTS_STREAM_ID));
		/* skips and dead letters are written through SPI */
		if (!spi && (!applying || p->skip_errors))
		{
			ConnectSpi();
			spi = true;
		}
		if (applying)
			ApplyCounted(p, mine);
		else
			for (int i = 0; i < EventRowsCount(mine); i++)
				RecordSkip(p, mine, i);
	}
	if (spi)
		SPI_finish();
	if (applying_depth == 0 && retired_contexts != NIL)
	{
		foreach(lc, retired_contexts)
			MemoryContextDelete((MemoryContext) lfirst(lc));
		list_free(retired_contexts);
		retired_contexts = NIL;
	}
}
