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
#include "utils/guc_tables.h"
#include "utils/memutils.h"
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
 * A captured setting, parsed once per backend: its GUC record (NULL when
 * it is not defined here, say plpgsql not loaded yet) and what its value
 * was last seen as, so that a call whose session has it already costs a
 * comparison, not a lookup.
 */
typedef struct OwnerSetting
{
	char	   *name;
	char	   *value;
	struct config_generic *record;
	bool		seen_valid;		/* seen is a value equal to `value` */
	double		seen;			/* for bool, int, real and enum settings */
	char	   *seen_string;	/* for a string shown through a hook: the
								 * variable when it showed as `value` */
	int			options_seen;	/* settings defined when `record` was last
								 * looked for, for an extension's */
} OwnerSetting;

struct OwnerSettings
{
	int			count;
	OwnerSetting items[FLEXIBLE_ARRAY_MEMBER];
};

/* The GUC record of setting `name`, NULL when there is none (yet). */
static struct config_generic *
FindSetting(const char *name)
{
#if PG_VERSION_NUM >= 160000
	int			n;
	struct config_generic **records = get_guc_variables(&n);
#else
	int			n = GetNumConfigOptions();
	struct config_generic **records = get_guc_variables();
#endif

	for (int i = 0; i < n; i++)
		if (pg_strcasecmp(records[i]->name, name) == 0)
			return records[i];
	return NULL;
}

/* Parse a projection's settings (text[] of name=value) in `context`. */
static OwnerSettings *
ParseOwnerSettings(ArrayType *settings, MemoryContext context)
{
	Datum	   *items;
	bool	   *nulls;
	int			n;
	OwnerSettings *parsed;

	deconstruct_array(settings, TEXTOID, -1, false, TYPALIGN_INT,
					  &items, &nulls, &n);
	parsed = MemoryContextAllocZero(context, offsetof(OwnerSettings, items) +
									sizeof(OwnerSetting) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		char	   *item;
		char	   *value;
		OwnerSetting *s;

		if (nulls[i])
			continue;
		item = TextDatumGetCString(items[i]);
		value = strchr(item, '=');
		if (value == NULL)
			continue;
		*value++ = '\0';
		s = &parsed->items[parsed->count++];
		s->name = MemoryContextStrdup(context, item);
		s->value = MemoryContextStrdup(context, value);
	}
	return parsed;
}

/* The numeric value of a non-string setting, to tell whether it changed. */
static double
SettingToken(struct config_generic *record)
{
	switch (record->vartype)
	{
		case PGC_BOOL:
			return *((struct config_bool *) record)->variable;
		case PGC_INT:
			return *((struct config_int *) record)->variable;
		case PGC_REAL:
			return *((struct config_real *) record)->variable;
		case PGC_ENUM:
			return *((struct config_enum *) record)->variable;
		default:
			return 0;
	}
}

/* Has the session setting s at its captured value already? */
static bool
AlreadySet(OwnerSetting *s)
{
	const char *current;

	if (s->record == NULL && strchr(s->name, '.') == NULL)
		s->record = FindSetting(s->name);

	/*
	 * An extension's (dotted) setting has a placeholder record until the
	 * extension loads, which replaces and frees it: only a real record is
	 * kept, looked for again only when settings have been defined since.
	 */
	else if (s->record == NULL && s->options_seen != GetNumConfigOptions())
	{
		struct config_generic *record = FindSetting(s->name);

		s->options_seen = GetNumConfigOptions();
		if (record != NULL && (record->flags & GUC_CUSTOM_PLACEHOLDER) == 0)
			s->record = record;
	}
	if (s->record != NULL && s->record->vartype == PGC_STRING)
	{
		char	   *value = *((struct config_string *) s->record)->variable;

		if (((struct config_string *) s->record)->show_hook == NULL)
			return strcmp(value ? value : "", s->value) == 0;

		/*
		 * Shown through a hook (TimeZone, the only one captured, shows the
		 * zone its string names): the same string shows the same.
		 */
		if (s->seen_string != NULL && strcmp(value ? value : "", s->seen_string) == 0)
			return true;
	}
	if (s->record != NULL && s->record->vartype != PGC_STRING &&
		s->seen_valid && SettingToken(s->record) == s->seen)
		return true;
	current = GetConfigOption(s->name, true, false);
	if (current == NULL || strcmp(current, s->value) != 0)
		return false;
	if (s->record != NULL && s->record->vartype != PGC_STRING)
	{
		s->seen = SettingToken(s->record);
		s->seen_valid = true;
	}
	else if (s->record != NULL)
	{
		char	   *value = *((struct config_string *) s->record)->variable;

		if (s->seen_string != NULL)
			pfree(s->seen_string);
		s->seen_string = MemoryContextStrdup(GetMemoryChunkContext(s->name),
											 value ? value : "");
	}
	return true;
}

/*
 * Set the captured settings for the owner's code, in the GUC nesting level
 * the caller opened; a setting already at its captured value is left
 * alone (the usual case: a comparison each).  *cache, parsed on first use
 * in `context`, belongs to the projection.
 */
void
ApplyOwnerSettings(ArrayType *settings, OwnerSettings **cache,
				   MemoryContext context)
{
	if (*cache == NULL)
		*cache = ParseOwnerSettings(settings, context);
	for (int i = 0; i < (*cache)->count; i++)
	{
		OwnerSetting *s = &(*cache)->items[i];

		if (!AlreadySet(s))
			(void) set_config_option(s->name, s->value, PGC_USERSET,
									 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0,
									 false);
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
	char	   *unsafe;

	if (!HeapTupleIsValid(tuple))
		return NULL;
	unsafe = UnsafeSearchPathOf(tuple);
	ReleaseSysCache(tuple);
	return unsafe;
}

/* The same, of the handler's pg_proc row the caller looked up already. */
char *
UnsafeSearchPathOf(HeapTuple proc)
{
	Datum		config;
	bool		isnull;
	char	   *unsafe = NULL;

	config = SysCacheGetAttr(PROCOID, proc, Anum_pg_proc_proconfig, &isnull);
	if (!isnull)
	{
		Datum	   *items;
		bool	   *nulls;
		int			n;

		deconstruct_array(DatumGetArrayTypeP(config), TEXTOID, -1, false,
						  TYPALIGN_INT, &items, &nulls, &n);
		for (int i = 0; i < n; i++)
		{
			char	   *item;
			List	   *names;

			if (nulls[i])
				continue;
			item = TextDatumGetCString(items[i]);
			if (strncmp(item, "search_path=", 12) != 0)
				continue;
			if (!SplitIdentifierString(pstrdup(item + 12), ',', &names) ||
				names == NIL || strcmp(llast(names), "pg_temp") != 0)
				unsafe = pstrdup(item + 12);
		}
	}
	return unsafe;
}
