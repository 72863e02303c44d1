/*
 * log/event_batch.c
 *		Validation of the events an append receives, before anything is
 *		written: a bad batch leaves no trace.
 */
#include "postgres.h"

#include "log/log.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"


static Jsonb *EmptyJsonbObject(void);
static void ParseEvent(JsonbContainer *object, int index, EventInput *event);
static void RequireDistinctIds(EventBatch *batch);

/* Value of a hexadecimal digit, or -1. */
static int
HexValue(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Parse a UUID in its canonical form (8-4-4-4-12 hex digits) or as 32 bare
 * hex digits; false when the text is neither.  Unlike uuid_in, this lets the
 * caller report which event is wrong.
 */
static bool
ParseUuid(const char *text, int len, pg_uuid_t *out)
{
	bool		canonical = (len == 36);
	int			byte = 0;

	if (len != 36 && len != 32)
		return false;
	for (int i = 0; i < len;)
	{
		int			hi,
					lo;

		if (canonical && (i == 8 || i == 13 || i == 18 || i == 23))
		{
			if (text[i] != '-')
				return false;
			i++;
			continue;
		}
		hi = HexValue(text[i]);
		lo = HexValue(text[i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		out->data[byte++] = (uint8) (hi << 4 | lo);
		i += 2;
	}
	return byte == UUID_LEN;
}

/* An empty JSON object, the default for data and metadata. */
static Jsonb *
EmptyJsonbObject(void)
{
	JsonbParseState *state = NULL;
	JsonbValue *res;

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	res = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(res);
}

/*
 * Turn the events argument of append_to_stream, a JSON array of event
 * objects, into a batch; every malformed piece is an error naming the
 * event's index.
 */
EventBatch *
EventBatchFromJsonb(Jsonb *events)
{
	EventBatch *batch = palloc0(sizeof(EventBatch));

	if (!JB_ROOT_IS_ARRAY(events) || JB_ROOT_IS_SCALAR(events))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("events must be a JSON array of event objects"),
				 errhint("Pass for example '[{\"type\": \"ItemAdded\", \"data\": {\"sku\": \"A1\"}}]'.")));

	batch->count = JB_ROOT_COUNT(events);
	if (batch->count == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("events must not be an empty array"),
				 errhint("Pass at least one event object.")));

	batch->events = palloc0(sizeof(EventInput) * batch->count);
	batch->all_ids_given = true;
	for (int i = 0; i < batch->count; i++)
	{
		JsonbValue *element = getIthJsonbValueFromContainer(&events->root, i);

		if (element->type != jbvBinary ||
			!JsonContainerIsObject(element->val.binary.data))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("event %d is not a JSON object", i),
					 errhint("Each element of events must be an object with at least a \"type\" key.")));
		ParseEvent(element->val.binary.data, i, &batch->events[i]);
		batch->any_id_given |= batch->events[i].id_given;
		batch->all_ids_given &= batch->events[i].id_given;
	}

	RequireDistinctIds(batch);
	return batch;
}

/* Validate one event object and fill in its defaults. */
static void
ParseEvent(JsonbContainer *object, int index, EventInput *event)
{
	JsonbValue	value;
	int			keys_found = 0;

	if (getKeyJsonValueFromContainer(object, "type", 4, &value) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event %d has no \"type\"", index),
				 errhint("Every event needs a non-empty string \"type\", for example \"ItemAdded\".")));
	keys_found++;
	if (value.type != jbvString || value.val.string.len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event %d has a \"type\" that is not a non-empty string", index),
				 errhint("Every event needs a non-empty string \"type\", for example \"ItemAdded\".")));
	RequireMeaningfulName(value.val.string.val, value.val.string.len,
						  "event_type", index);
	event->type = cstring_to_text_with_len(value.val.string.val,
										   value.val.string.len);

	if (getKeyJsonValueFromContainer(object, "data", 4, &value) != NULL)
	{
		keys_found++;
		event->data = JsonbValueToJsonb(&value);
	}
	else
		event->data = EmptyJsonbObject();

	if (getKeyJsonValueFromContainer(object, "metadata", 8, &value) != NULL)
	{
		keys_found++;
		if (value.type != jbvBinary ||
			!JsonContainerIsObject(value.val.binary.data))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("event %d has \"metadata\" that is not a JSON object", index),
					 errhint("Pass metadata as an object, for example {\"correlation_id\": \"c-1\"}, or leave it out.")));
		event->metadata = JsonbValueToJsonb(&value);
	}
	else
		event->metadata = EmptyJsonbObject();

	if (getKeyJsonValueFromContainer(object, "id", 2, &value) != NULL)
	{
		keys_found++;
		if (value.type != jbvString)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("event %d has an \"id\" that is not a string", index),
					 errhint("Pass the id as a UUID string, or leave it out to get a generated one.")));
		if (!ParseUuid(value.val.string.val, value.val.string.len, &event->id))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
					 errmsg("event %d has an \"id\" that is not a UUID: \"%s\"", index,
							pnstrdup(value.val.string.val, value.val.string.len)),
					 errhint("Pass the id as a UUID string such as \"0190e3a0-7c1d-7000-8000-000000000001\", or leave it out.")));
		event->id_given = true;
	}

	if ((int) JsonContainerSize(object) > keys_found)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event %d has a key other than \"type\", \"data\", \"metadata\" and \"id\"", index),
				 errhint("Put application fields inside \"data\" or \"metadata\".")));
}

/* Order ids by their bytes, for RequireDistinctIds. */
static int
CompareIndexedIds(const void *a, const void *b)
{
	const EventInput *const *ea = a;
	const EventInput *const *eb = b;

	return memcmp(&(*ea)->id, &(*eb)->id, sizeof(pg_uuid_t));
}

/* Refuse a batch that names one event id twice (sorting, not n squared). */
static void
RequireDistinctIds(EventBatch *batch)
{
	EventInput **given;
	int			ngiven = 0;

	if (!batch->any_id_given || batch->count < 2)
		return;
	given = palloc(sizeof(EventInput *) * batch->count);
	for (int i = 0; i < batch->count; i++)
		if (batch->events[i].id_given)
			given[ngiven++] = &batch->events[i];
	qsort(given, ngiven, sizeof(EventInput *), CompareIndexedIds);
	for (int i = 1; i < ngiven; i++)
		if (CompareIndexedIds(&given[i - 1], &given[i]) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("events %d and %d have the same id",
							(int) Min(given[i - 1] - batch->events, given[i] - batch->events),
							(int) Max(given[i - 1] - batch->events, given[i] - batch->events)),
					 errhint("Give every event of a batch its own id.")));
	pfree(given);
}

/*
 * A batch of one event, from append_event's arguments; id may be NULL and
 * metadata may be NULL for the defaults.
 */
EventBatch *
EventBatchFromOne(text *type, Jsonb *data, Jsonb *metadata, pg_uuid_t *id)
{
	EventBatch *batch = palloc0(sizeof(EventBatch));
	EventInput *event = palloc0(sizeof(EventInput));

	if (VARSIZE_ANY_EXHDR(type) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event_type must not be empty"),
				 errhint("Pass the event's type, for example 'ItemAdded'.")));
	RequireMeaningfulName(VARDATA_ANY(type), VARSIZE_ANY_EXHDR(type),
						  "event_type", -1);
	if (metadata != NULL &&
		(JB_ROOT_IS_SCALAR(metadata) || !JB_ROOT_IS_OBJECT(metadata)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("metadata must be a JSON object"),
				 errhint("Pass metadata as an object, for example '{\"correlation_id\": \"c-1\"}', or NULL.")));

	event->type = type;
	event->data = data;
	event->metadata = metadata ? metadata : EmptyJsonbObject();
	if (id != NULL)
	{
		event->id = *id;
		event->id_given = true;
	}
	batch->count = 1;
	batch->any_id_given = event->id_given;
	batch->all_ids_given = event->id_given;
	batch->events = event;
	return batch;
}
