/*
 * projections/owner_settings.c
 *		The settings a projection's code runs with, captured from its
 *		creator's session at create_projection.
 *
 * A handler's result must not depend on who drives it: the appender of an
 * inline projection, the caller of run_projection or the worker.  So the
 * creator's search_path (with pg_temp moved last, where it cannot capture
 * an unqualified name) and the settings that change what a query computes
 * are kept in the registry and set around every call of the owner's code;
 * nothing of the driving session's reaches it.  A handler with a SET
 * search_path of its own that does not end with pg_temp would search the
 * driving session's temporary schema first: it is refused.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "core/catalog.h"
#include "projections/projections.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/syscache.h"
#include "utils/varlena.h"

/*
 * The settings that change what a query computes or how values read and
 * print, captured with search_path.  (Planner and resource settings change
 * how fast, not what.)
 */
static const char *const captured_settings[] = {
	"DateStyle",
	"IntervalStyle",
	"TimeZone",
	"timezone_abbreviations",
	"standard_conforming_strings",
	"extra_float_digits",
	"bytea_output",
	"lc_monetary",
	"lc_numeric",
	"lc_time",
	"default_text_search_config",
	"xmlbinary",
	"xmloption",
	"transform_null_equals",
	"array_nulls",
	"backslash_quote",
	"quote_all_identifiers",
	"gin_fuzzy_search_limit",
	"row_security",
	"plpgsql.variable_conflict",	/* when plpgsql is loaded */
};

/*
 * A search_path with every pg_temp taken out and one put last: the path as
 * the creator wrote it, but a temporary object can never stand in for a
 * named one.
 */
static char *
WithTempSchemaLast(const char *path)
{
	char	   *copy = pstrdup(path);
	List	   *names;
	ListCell   *lc;
	StringInfoData result;

	initStringInfo(&result);
	if (!SplitIdentifierString(copy, ',', &names))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("search_path \"%s\" is not a list of schema names", path)));
	foreach(lc, names)
	{
		const char *name = lfirst(lc);

		if (strcmp(name, "pg_temp") == 0 || strncmp(name, "pg_temp_", 8) == 0)
			continue;
		appendStringInfo(&result, "%s, ", quote_identifier(name));
	}
	appendStringInfoString(&result, "pg_temp");
	return result.data;
}

/*
 * The settings of the calling session that the projection's code will run
 * with, as a text[] of name=value (like pg_proc.proconfig); `search_path`
 * is the creator's, read before create_projection pinned its own.
 */
Datum
CaptureCreatorSettings(const char *search_path)
{
	int			n = lengthof(captured_settings);
	Datum	   *items = palloc(sizeof(Datum) * (n + 1));
	int			count = 1;

	items[0] = CStringGetTextDatum(psprintf("search_path=%s",
											WithTempSchemaLast(search_path)));

	for (int i = 0; i < n; i++)
	{
		const char *value = GetConfigOption(captured_settings[i], true, false);

		if (value != NULL)
			items[count++] = CStringGetTextDatum(psprintf("%s=%s", captured_settings[i],
														  value));
	}
	return PointerGetDatum(construct_array(items, count, TEXTOID, -1, false,
										   TYPALIGN_INT));
}

/*
 * Set the captured settings for the owner's code, in the GUC nesting level
 * the caller opened; a setting already at its captured value is left
 * alone (the usual case: the cost of a call is then one comparison each).
 */
void
ApplyOwnerSettings(ArrayType *settings)
{
	Datum	   *items;
	bool	   *nulls;
	int			n;

	deconstruct_array(settings, TEXTOID, -1, false, TYPALIGN_INT,
					  &items, &nulls, &n);
	for (int i = 0; i < n; i++)
	{
		char	   *item;
		char	   *value;
		const char *current;

		if (nulls[i])
			continue;
		item = TextDatumGetCString(items[i]);
		value = strchr(item, '=');
		if (value == NULL)
			continue;
		*value++ = '\0';
		current = GetConfigOption(item, true, false);
		if (current != NULL && strcmp(current, value) == 0)
			continue;
		(void) set_config_option(item, value, PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
	}
}

/*
 * The handler's own SET search_path, if it has one that does not end with
 * pg_temp (NULL otherwise): PostgreSQL would search the driving session's
 * temporary schema first, so an appender's temporary table or function
 * named like the read model would run as the owner.
 */
char *
UnsafeHandlerSearchPath(Oid handler)
{
	HeapTuple	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(handler));
	Datum		config;
	bool		isnull;
	char	   *unsafe = NULL;

	if (!HeapTupleIsValid(tuple))
		return NULL;
	config = SysCacheGetAttr(PROCOID, tuple, Anum_pg_proc_proconfig, &isnull);
	if (!isnull)
	{
		Datum	   *items;
		bool	   *nulls;
		int			n;

		deconstruct_array(DatumGetArrayTypeP(config), TEXTOID, -1, false,
						  TYPALIGN_INT, &items, &nulls, &n);
		for (int i = 0; i < n; i++)
		{
			char	   *item = TextDatumGetCString(items[i]);
			List	   *names;

			if (nulls[i] || strncmp(item, "search_path=", 12) != 0)
				continue;
			if (!SplitIdentifierString(pstrdup(item + 12), ',', &names) ||
				names == NIL || strcmp(llast(names), "pg_temp") != 0)
				unsafe = pstrdup(item + 12);
		}
	}
	ReleaseSysCache(tuple);
	return unsafe;
}
