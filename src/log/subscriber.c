/*
 * log/subscriber.c
 *		A logical replication subscriber of the log: each replicated event
 *		takes its place in this node's own order, and nothing else appends.
 *
 * Keys of the publisher mean nothing here: its late-committing transaction
 * arrives after events a reader on this node has already passed.  So in
 * subscriber mode a row trigger, enabled for replica sessions only (the
 * apply and table-sync workers), gives every replicated event the key an
 * append here would have (this node's apply transaction, raised to its
 * stream's previous key) and keeps eventstore.streams in the same
 * transaction, so a reader never sees a stream before its events, also
 * during the initial copy, which is why streams is not published.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "core/args.h"
#include "core/catalog.h"
#include "core/errors.h"
#include "core/kept_plans.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "log/log.h"
#include "utils/rel.h"
#include "utils/xid8.h"
#include "worker/worker.h"

PG_FUNCTION_INFO_V1(eventstore_take_replicated_event);
PG_FUNCTION_INFO_V1(eventstore_create_log_publication);
PG_FUNCTION_INFO_V1(eventstore_set_subscriber_mode);

/* The trigger subscriber mode enables, as the install script names it. */
#define SUBSCRIBER_TRIGGER "events_from_publisher"

static SPIPlanPtr keep_stream_plan;

/* Is this node a subscriber of the log: is its trigger enabled on events? */
bool
SubscriberModeOn(Relation events)
{
	TriggerDesc *triggers = events->trigdesc;

	if (triggers == NULL)
		return false;
	for (int i = 0; i < triggers->numtriggers; i++)
		if (strcmp(triggers->triggers[i].tgname, SUBSCRIBER_TRIGGER) == 0)
			return triggers->triggers[i].tgenabled == TRIGGER_FIRES_ON_REPLICA;
	return false;
}

/* Refuse an append on a subscriber: its log is the publisher's. */
void
RefuseAppendOnSubscriber(Relation events)
{
	if (SubscriberModeOn(events))
		ereport(ERROR,
				(errcode(ERRCODE_ES_SUBSCRIBER_APPEND),
				 errmsg("this database is a subscriber of the event log and cannot append"),
				 errdetail("Its events are replicated from a publisher; an event appended here would take a position the publisher also issues."),
				 errhint("Append on the publisher, or call eventstore.set_subscriber_mode(false) once this database no longer subscribes.")));
}

/*
 * BEFORE INSERT row trigger on eventstore.events, fired in replica sessions
 * once subscriber mode is on: re-key the replicated event into this node's
 * order and keep its stream's row.
 */
Datum
eventstore_take_replicated_event(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	events;
	TupleDesc	desc;
	HeapTuple	row;
	bool		isnull;
	Datum		stream_id;
	int64		revision;
	Datum		created_at;
	FullTransactionId key;
	int			column = EVENTS_TRANSACTION_ID;
	Datum		key_datum;
	bool		key_null = false;
	Oid			argtypes[4] = {TEXTOID, INT8OID, TIMESTAMPTZOID, XID8OID};
	Datum		values[4];

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
		elog(ERROR, "take_replicated_event must be called as a BEFORE INSERT row trigger");

	events = trigdata->tg_relation;
	desc = RelationGetDescr(events);
	row = trigdata->tg_trigtuple;

	/*
	 * Enabled otherwise than by set_subscriber_mode (ENABLE TRIGGER ALL
	 * after a pg_restore --disable-triggers, say): an append of this node's
	 * own, keyed already.
	 */
	if (SessionReplicationRole != SESSION_REPLICATION_ROLE_REPLICA)
		return PointerGetDatum(row);
	stream_id = heap_getattr(row, EVENTS_STREAM_ID, desc, &isnull);
	revision = DatumGetInt64(heap_getattr(row, EVENTS_REVISION, desc, &isnull));
	created_at = heap_getattr(row, EVENTS_CREATED_AT, desc, &isnull);

	key = StreamOrderedKey(events, OwnLogKey(LogOffsetForWrite(true)),
						   DatumGetTextPP(stream_id), revision);
	key_datum = FullTransactionIdGetDatum(key);

	/*
	 * The initial copy brings a stream's events in any order, so the row
	 * keeps the highest revision and the earliest time seen.
	 */
	values[0] = stream_id;
	values[1] = Int64GetDatum(revision);
	values[2] = created_at;
	values[3] = key_datum;
	ConnectSpi();
	ExecKeptPlan(KeptPlan(&keep_stream_plan,
						  "INSERT INTO eventstore.streams AS s"
						  " (stream_id, revision, created_at, updated_at, transaction_id)"
						  " VALUES ($1, $2, $3, $3, $4)"
						  " ON CONFLICT (stream_id) DO UPDATE SET"
						  " revision = greatest(s.revision, excluded.revision),"
						  " created_at = least(s.created_at, excluded.created_at),"
						  " updated_at = greatest(s.updated_at, excluded.updated_at),"
						  " transaction_id = greatest(s.transaction_id, excluded.transaction_id)",
						  4, argtypes),
				 values, NULL, false, 0);
	SPI_finish();

	WakeWorkersAtCommit();
	return PointerGetDatum(heap_modify_tuple_by_cols(row, desc, 1, &column,
													 &key_datum, &key_null));
}

/* Run a utility statement; the caller is connected to SPI. */
static void
RunUtility(const char *sql)
{
	int			rc = SPI_execute(sql, false, 0);

	if (rc != SPI_OK_UTILITY)
		elog(ERROR, "SPI_execute failed: %s", SPI_result_code_string(rc));
}

/* SQL: create_log_publication(publication_name) */
Datum
eventstore_create_log_publication(PG_FUNCTION_ARGS)
{
	const char *name;

	RequireArgNotNull(fcinfo, 0, "publication_name",
					  "Name the publication the subscribers will subscribe to.");
	name = NameStr(*PG_GETARG_NAME(0));

	/*
	 * Only the events, and only their inserts: a subscriber keeps its own
	 * streams rows (so none shows before its events), checkpoints,
	 * registry and clock.
	 */
	ConnectSpi();
	RunUtility(psprintf("CREATE PUBLICATION %s FOR TABLE " EVENTSTORE_SCHEMA
						".events WITH (publish = 'insert')",
						quote_identifier(name)));
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * Refuse to leave subscriber mode while a subscription of this database
 * replicates eventstore.events (enabled or not: enabled again, it goes on).
 * The events it brought once the trigger is off would keep the publisher's
 * keys, which sort before events a follower here has already passed, and
 * leave eventstore.streams behind them.  The caller is connected to SPI.
 */
static void
RefuseWhileSubscribed(void)
{
	Oid			argtypes[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(EventstoreRelid("events"))};
	int			rc;
	char	   *subscription;

	rc = SPI_execute_with_args("SELECT s.subname::text"
							   " FROM pg_catalog.pg_subscription_rel r"
							   " JOIN pg_catalog.pg_subscription s ON s.oid = r.srsubid"
							   " WHERE r.srrelid = $1 ORDER BY 1 LIMIT 1",
							   1, argtypes, values, NULL, true, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(rc));
	if (SPI_processed == 0)
		return;
	subscription = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("subscription \"%s\" still replicates the event log into this database",
					subscription),
			 errdetail("Events it brought with subscriber mode off would keep the publisher's keys, which sort before events already read here, and leave eventstore.streams behind."),
			 errhint("Drop the subscription first (DROP SUBSCRIPTION %s), then turn subscriber mode off.",
					 quote_identifier(subscription))));
}

/* SQL: set_subscriber_mode(enabled) */
Datum
eventstore_set_subscriber_mode(PG_FUNCTION_ARGS)
{
	bool		enabled;
	bool		was_on;
	Relation	events;

	RequireArgNotNull(fcinfo, 0, "enabled",
					  "Pass true to make this database a subscriber of the log, false to end it.");
	enabled = PG_GETARG_BOOL(0);
	PreventCommandDuringRecovery("set_subscriber_mode");
	events = table_open(EventstoreRelid("events"), AccessShareLock);
	was_on = SubscriberModeOn(events);
	table_close(events, NoLock);
	ConnectSpi();
	if (!enabled && was_on)
	{
		RefuseWhileSubscribed();
		/* it appends on its own now: past every position its publisher issued */
		MovePositionsToNewBlock();
	}
	RunUtility(psprintf("ALTER TABLE " EVENTSTORE_SCHEMA ".events %s TRIGGER "
						SUBSCRIBER_TRIGGER,
						enabled ? "ENABLE REPLICA" : "DISABLE"));
	SPI_finish();
	PG_RETURN_VOID();
}
