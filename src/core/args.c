/*
 * core/args.c
 *		Checks of SQL function arguments shared by the API.
 */
#include "postgres.h"

#include "core/args.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"

/* Stream ids and processor names are btree keys, whose size is bounded. */
#define ES_MAX_KEY_BYTES	1000

/* Refuse a NULL argument at argno; hint says what to pass. */
void
RequireArgNotNull(FunctionCallInfo fcinfo, int argno, const char *argname,
				  const char *hint)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", argname),
				 errhint("%s", hint)));
}

/*
 * A text argument that names something and serves as an index key: not
 * NULL, not empty, and short enough for a btree entry.  example_hint says
 * what to pass.
 */
static text *
RequireKeyText(FunctionCallInfo fcinfo, int argno, const char *argname,
			   const char *example_hint)
{
	text	   *value;

	RequireArgNotNull(fcinfo, argno, argname, example_hint);
	value = PG_GETARG_TEXT_PP(argno);
	if (VARSIZE_ANY_EXHDR(value) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", argname),
				 errhint("%s", example_hint)));
	if (VARSIZE_ANY_EXHDR(value) > ES_MAX_KEY_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is longer than %d bytes", argname, ES_MAX_KEY_BYTES),
				 errdetail("It has %d bytes.", (int) VARSIZE_ANY_EXHDR(value)),
				 errhint("It is an index key: use a short name, or a hash of a long one.")));
	return value;
}

/* The stream id argument: every event belongs to a named stream. */
text *
RequireStreamId(FunctionCallInfo fcinfo, int argno)
{
	return RequireKeyText(fcinfo, argno, "stream_id",
						  "Pass the id of the stream, for example 'cart-42'.");
}

/* A processor, partition, instance or projection name argument. */
text *
RequireName(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	return RequireKeyText(fcinfo, argno, argname,
						  "Pass a name, for example 'order-summary'.");
}

/* An event type argument (the key of the schema registry). */
text *
RequireEventType(FunctionCallInfo fcinfo, int argno)
{
	return RequireKeyText(fcinfo, argno, "event_type",
						  "Pass the event's type, for example 'ItemAdded'.");
}

/* The words as a message lists them: 'a', 'b' or 'c'. */
static char *
ChoiceList(const char *const *choices, int n)
{
	StringInfoData list;

	initStringInfo(&list);
	for (int i = 0; i < n; i++)
		appendStringInfo(&list, "%s'%s'",
						 i == 0 ? "" : i == n - 1 ? " or " : ", ", choices[i]);
	return list.data;
}

/* The argument at argno, which must be one of the n words of choices. */
const char *
RequireOneOf(FunctionCallInfo fcinfo, int argno, const char *argname,
			 const char *const *choices, int n)
{
	char	   *value;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", argname),
				 errhint("Pass %s.", ChoiceList(choices, n))));
	value = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	for (int i = 0; i < n; i++)
		if (strcmp(value, choices[i]) == 0)
			return value;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("%s must be %s", argname, ChoiceList(choices, n)),
			 errdetail("Got '%s'.", value),
			 errhint("Pass %s.", ChoiceList(choices, n))));
	return NULL;				/* keep the compiler quiet */
}

/* The argument at argno, which must be one of two words. */
const char *
RequireChoice(FunctionCallInfo fcinfo, int argno, const char *argname,
			  const char *a, const char *b)
{
	const char *const choices[2] = {a, b};

	return RequireOneOf(fcinfo, argno, argname, choices, 2);
}

/* Refuse a negative position-like argument. */
void
RequireNonNegative(int64 value, const char *argname, const char *hint)
{
	if (value < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be negative", argname),
				 errdetail("Got " INT64_FORMAT ".", value),
				 errhint("%s", hint)));
}

/* Refuse a count-like argument below 1. */
void
RequireAtLeastOne(int64 value, const char *argname, const char *hint)
{
	if (value < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be at least 1", argname),
				 errdetail("Got " INT64_FORMAT ".", value),
				 errhint("%s", hint)));
}
