/*
 * retention/delete_stream.c
 *		delete_stream: a stream's tombstone (soft), or the removal of its
 *		events from the log for good (hard).
 *
 * Both lock the stream's row as an append does, so a deletion and the
 * appends to its stream serialize on that row and on nothing else, and the
 * deletion sees every event appended before it.  A soft deletion only
 * marks the row: its events stay in the log (read_all returns them), and
 * read_stream and stream_revision show the stream as deleted until an
 * append re-creates it.  A hard deletion removes the stream's events, keeps
 * their places in eventstore.removed_log_places (so a cursor or checkpoint
 * at one resumes where it was) and marks the row deleted for good, all in
 * one transaction: a reader's snapshot has the whole stream or none of it.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "core/args.h"
#include "core/catalog.h"
#include "core/errors.h"
#include "core/kept_plans.h"
#include "core/role.h"
#include "fmgr.h"
#include "log/log.h"
#include "log/log_writer.h"
#include "miscadmin.h"
#include "retention/retention.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(eventstore_delete_stream);

static SPIPlanPtr remove_events_plan;
static SPIPlanPtr discard_skips_plan;
static SPIPlanPtr discard_dead_letters_plan;

/* The stream to lock has no row: a maintenance function's SE015. */
static bool
RefuseUnknownStream(void *arg)
{
	ereport(ERROR,
			(errcode(ERRCODE_ES_UNKNOWN_STREAM),
			 errmsg("stream \"%s\" does not exist", text_to_cstring((text *) arg)),
			 errdetail("No event was ever appended to it."),
			 errhint("Check the stream id (eventstore.streams has a row for every stream appended to).")));
	return true;
}

/*
 * Lock the stream's row for maintenance function `operation`, as an append
 * does (waiting for the appends in flight), or raise SE015 when the stream
 * does not exist.  Returns the writer holding the lock, with the stream's
 * revision and tombstone.  The caller runs as the extension's owner, and
 * connects to SPI only afterwards: the writer outlives the connection.
 */
LogWriter *
LockStreamForMaintenance(const char *operation, text *stream_id,
						 int64 *revision, StreamDeletion *deletion)
{
	LogWriter  *writer = LogWriterOpen(operation);
	bool		found_only;

	if (!LogWriterLockStream(writer, stream_id, revision, RefuseUnknownStream,
							 stream_id, false, &found_only))
		elog(ERROR, "stream row created by a maintenance function");
	*deletion = LogWriterStreamDeletion(writer);
	return writer;
}

/*
 * Remove the locked stream's events from the log and the archive, keeping
 * their places; returns how many.  What projections left pending of them (skips to
 * drain, dead letters to retry) can never be applied now: the skips are
 * drained as discarded and the dead letters resolved as discarded by
 * `performed_by`, so that no projection waits for them.
 */
static int64
RemoveStreamEvents(text *stream_id, const char *performed_by,
				   int64 *skips, int64 *dead_letters)
{
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2] = {PointerGetDatum(stream_id),
	CStringGetTextDatum(performed_by)};
	LogChange	previous = AllowLogChange(LOG_CHANGE_DELETE);
	volatile int64 removed = 0;

	PG_TRY();
	{
		removed = ExecKeptPlan(KeptPlan(&remove_events_plan,
										"WITH removed AS ("
										" DELETE FROM eventstore.events WHERE stream_id = $1"
										" RETURNING global_position, transaction_id),"
										/* and its archived events: their places
										 * were the archive's */
										" removed_archived AS ("
										" DELETE FROM eventstore.events_archive WHERE stream_id = $1"
										" RETURNING global_position, transaction_id)"
										" INSERT INTO eventstore.removed_log_places"
										" SELECT global_position, transaction_id FROM removed"
										" UNION ALL"
										" SELECT global_position, transaction_id FROM removed_archived",
										1, argtypes),
							   values, NULL, false, 0);
	}
	PG_FINALLY();
	{
		RestoreLogChange(previous);
	}
	PG_END_TRY();

	*skips = ExecKeptPlan(KeptPlan(&discard_skips_plan,
								   "UPDATE eventstore.projection_skips"
								   " SET drained_at = pg_catalog.clock_timestamp(),"
								   "  outcome = '" SKIP_OUTCOME_DISCARDED "'"
								   " WHERE stream_id = $1 AND drained_at IS NULL",
								   1, argtypes),
						  values, NULL, false, 0);
	*dead_letters = ExecKeptPlan(KeptPlan(&discard_dead_letters_plan,
										  "UPDATE eventstore.projection_dead_letters"
										  " SET resolution = '" RESOLUTION_DISCARDED "',"
										  "  resolved_by = $2,"
										  "  resolved_at = pg_catalog.clock_timestamp()"
										  " WHERE stream_id = $1 AND resolution IS NULL",
										  2, argtypes),
								 values, NULL, false, 0);
	return removed;
}

/*
 * SQL: delete_stream(stream_id, hard, expected_revision) RETURNS bigint,
 * the events deleted (soft: those it hid; hard: those it removed).
 *
 * expected_revision is checked as an append checks it (SE001), a
 * soft-deleted stream being no stream.  A stream already deleted for good
 * is deleted again without an expected revision (a retry: 0 events), and
 * SE014 with one.  Each call that deletes is recorded in maintenance_log.
 */
Datum
eventstore_delete_stream(PG_FUNCTION_ARGS)
{
	text	   *stream_id = RequireStreamId(fcinfo, 0);
	bool		hard;
	bool		any = PG_ARGISNULL(2);
	int64		expected = any ? 0 : PG_GETARG_INT64(2);
	const char *caller = GetUserNameFromId(GetUserId(), false);
	RoleSwitch	saved;
	LogWriter  *writer;
	int64		revision;
	StreamDeletion deletion;
	int64		deleted = 0;
	int64		skips = 0;
	int64		dead_letters = 0;
	int64		maintenance_id;

	RequireArgNotNull(fcinfo, 1, "hard",
					  "Pass false to leave a tombstone, true to remove the stream's events for good.");
	hard = PG_GETARG_BOOL(1);
	if (!any && expected < -2)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("expected_revision must be NULL, -1, -2 or a revision >= 0"),
				 errdetail("Got " INT64_FORMAT ".", expected),
				 errhint("NULL deletes at any revision, -2 requires a stream that is not deleted, n its revision n.")));

	saved = BecomeRole(ExtensionOwner());
	writer = LockStreamForMaintenance("delete_stream", stream_id, &revision,
									  &deletion);
	if (deletion.hard && !any)
		ReportStreamDeletedForGood(stream_id, "a deletion with an expected revision");
	if (!deletion.hard)
		CheckLockedStreamRevision(stream_id, any, expected, revision, deletion);

	ConnectSpi();
	maintenance_id = StartMaintenance("delete_stream", text_to_cstring(stream_id),
									  NULL, caller);
	if (deletion.hard)
		deleted = 0;			/* gone already */
	else if (hard)
		deleted = RemoveStreamEvents(stream_id, caller, &skips, &dead_letters);
	else
		deleted = revision - deletion.revision; /* 0: it reads as deleted */
	if (!deletion.hard && (hard || !deletion.deleted))
		LogWriterDeleteStream(writer, hard, GetCurrentTransactionStartTimestamp());
	FinishMaintenance(maintenance_id, deleted,
					  psprintf("{\"hard\": %s, \"revision\": " INT64_FORMAT ","
							   " \"skips_discarded\": " INT64_FORMAT ","
							   " \"dead_letters_discarded\": " INT64_FORMAT "}",
							   hard ? "true" : "false", revision, skips,
							   dead_letters));
	/* disconnect first: AFTER triggers fired on close run outside our SPI */
	SPI_finish();
	LogWriterClose(writer);
	RestoreRole(saved);
	PG_RETURN_INT64(deleted);
}
