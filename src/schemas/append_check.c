/*
 * schemas/append_check.c
 *		The check of an append's batch against the registered schemas,
 *		before anything is written: an event of a registered type must
 *		match its type's latest version (and records it); one of a type
 *		without a schema is allowed, warned about or refused, as
 *		pg_eventstore.unregistered_types says.
 */
#include "postgres.h"

#include "core/errors.h"
#include "core/settings.h"
#include "schemas/schemas.h"
#include "utils/builtins.h"

/* Raise the error for event `index` of the batch, which breaks `rule`. */
static void
pg_attribute_noreturn()
ReportInvalidEvent(int index, RegisteredType *t, const char *path,
				   const char *rule)
{
	ereport(ERROR,
			(errcode(ERRCODE_ES_SCHEMA_VIOLATION),
			 errmsg("event %d does not match the schema of event type \"%s\" version %d",
					index, t->type, t->latest),
			 errdetail("At %s: %s.", path, rule),
			 errhint("Fix the event's data; a new shape of the type needs a new schema version (eventstore.register_event_schema).")));
}

/* Has an earlier event of the batch the same type as event i? */
static bool
TypeSeenBefore(EventBatch *batch, int i)
{
	text	   *type = batch->events[i].type;

	for (int j = 0; j < i; j++)
	{
		text	   *other = batch->events[j].type;

		if (VARSIZE_ANY_EXHDR(other) == VARSIZE_ANY_EXHDR(type) &&
			memcmp(VARDATA_ANY(other), VARDATA_ANY(type), VARSIZE_ANY_EXHDR(type)) == 0)
			return true;
	}
	return false;
}

/* An event of a type without a schema, under warn or refuse. */
static void
UnregisteredType(EventBatch *batch, int i)
{
	char	   *type = text_to_cstring(batch->events[i].type);

	if (UnregisteredTypes == UNREGISTERED_REFUSE)
		ereport(ERROR,
				(errcode(ERRCODE_ES_SCHEMA_VIOLATION),
				 errmsg("event %d has the type \"%s\", which has no registered schema", i, type),
				 errdetail("pg_eventstore.unregistered_types is \"refuse\"."),
				 errhint("Register a schema for the type with eventstore.register_event_schema first.")));
	/* once per type and batch */
	if (!TypeSeenBefore(batch, i))
		ereport(WARNING,
				(errmsg("event type \"%s\" has no registered schema", type),
				 errdetail("pg_eventstore.unregistered_types is \"warn\"; the event is appended unchecked."),
				 errhint("Register a schema for the type with eventstore.register_event_schema.")));
}

/*
 * Check every event of the batch, holding the registry's lock until the
 * append's transaction ends: a schema registered meanwhile waits for it.
 * Sets each event's schema_version (0: its type has none).
 */
void
CheckBatchSchemas(EventBatch *batch)
{
	if (!LockSchemaRegistry(RowExclusiveLock))
		return;
	/* the usual case of a store without schemas costs one lookup */
	if (RegisteredTypeCount() == 0 && UnregisteredTypes == UNREGISTERED_ALLOW)
		return;
	for (int i = 0; i < batch->count; i++)
	{
		EventInput *event = &batch->events[i];
		RegisteredType *t = FindRegisteredType(VARDATA_ANY(event->type),
											   VARSIZE_ANY_EXHDR(event->type));
		char	   *path;
		char	   *rule;

		if (t == NULL)
		{
			if (UnregisteredTypes != UNREGISTERED_ALLOW)
				UnregisteredType(batch, i);
			continue;
		}
		if (!ValidateJsonb(t->latest_schema, event->data, &path, &rule))
			ReportInvalidEvent(i, t, path, rule);
		event->schema_version = t->latest;
	}
}
