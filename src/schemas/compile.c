/*
 * schemas/compile.c
 *		A JSON Schema (jsonb) compiled into a tree of SchemaNode, once per
 *		registered version.  Only the documented keywords are known; any
 *		other is refused with its name and its path in the schema, never
 *		ignored.
 */
#include "postgres.h"

#include <ctype.h>

#include "catalog/pg_collation.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "schemas/schemas.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/memutils.h"

/* Keywords that only annotate (they validate nothing) and are accepted. */
static const char *const annotations[] = {
	"$schema", "$comment", "title", "description", "default", "examples",
	NULL
};

static SchemaNode *CompileValue(JsonbValue *value, StringInfo path);
static void LinkRequiredToProperties(SchemaNode *node);

/* Order of property names: the order jsonb keeps object keys in. */
int
CompareKeys(const char *a, int alen, const char *b, int blen)
{
	if (alen != blen)
		return alen < blen ? -1 : 1;
	return memcmp(a, b, alen);
}

/* qsort order of properties: CompareKeys of their names. */
static int
ComparePropertyNames(const void *a, const void *b)
{
	const SchemaProperty *pa = a;
	const SchemaProperty *pb = b;

	return CompareKeys(pa->name, pa->len, pb->name, pb->len);
}

/* Append a key to a path: .name, or ["name"] when it is not an identifier. */
void
AppendPathKey(StringInfo path, const char *key, int len)
{
	bool		identifier = len > 0 && !isdigit((unsigned char) key[0]);

	for (int i = 0; i < len && identifier; i++)
		identifier = isalnum((unsigned char) key[i]) || key[i] == '_';
	if (identifier)
	{
		appendStringInfoChar(path, '.');
		appendBinaryStringInfo(path, key, len);
	}
	else
	{
		appendStringInfoChar(path, '[');
		escape_json(path, pnstrdup(key, len));
		appendStringInfoChar(path, ']');
	}
}

/* Raise the error for a bad schema at path. */
static void
pg_attribute_noreturn()
BadSchema(StringInfo path, const char *keyword, const char *problem,
		  const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("schema keyword \"%s\" at %s %s", keyword, path->data, problem),
			 errhint("%s", hint)));
}

/* The keyword's value as a non-negative int32 (minLength, maxLength). */
static int32
LengthValue(JsonbValue *v, StringInfo path, const char *keyword)
{
	Numeric		n;
	int64		len;

	if (v->type != jbvNumeric)
		BadSchema(path, keyword, "is not a number",
				  "Give a non-negative integer, the length in characters.");
	n = v->val.numeric;
	if (!DatumGetBool(DirectFunctionCall2(numeric_eq, NumericGetDatum(n),
										  DirectFunctionCall2(numeric_trunc,
															  NumericGetDatum(n),
															  Int32GetDatum(0)))) ||
		numeric_is_nan(n) ||
		DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(n),
										  DirectFunctionCall1(int4_numeric,
															  Int32GetDatum(0)))) < 0 ||
		DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(n),
										  DirectFunctionCall1(int4_numeric,
															  Int32GetDatum(PG_INT32_MAX)))) > 0)
		BadSchema(path, keyword, "is not a non-negative integer",
				  "Give a non-negative integer, the length in characters.");
	len = DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(n)));
	return (int32) len;
}

/* The keyword's value as a number (minimum, maximum and the exclusive ones). */
static Numeric
NumberValue(JsonbValue *v, StringInfo path, const char *keyword)
{
	if (v->type != jbvNumeric)
		BadSchema(path, keyword, "is not a number",
				  "Give the bound as a JSON number, for example 0 or 9.99.");
	return DatumGetNumericCopy(NumericGetDatum(v->val.numeric));
}

/* The bit of a type name; 0 when it names none. */
static uint8
TypeBit(const char *name, int len)
{
	static const struct
	{
		const char *name;
		uint8		bit;
	}			types[] = {
		{"null", SCHEMA_TYPE_NULL}, {"boolean", SCHEMA_TYPE_BOOLEAN},
		{"object", SCHEMA_TYPE_OBJECT}, {"array", SCHEMA_TYPE_ARRAY},
		{"number", SCHEMA_TYPE_NUMBER}, {"string", SCHEMA_TYPE_STRING},
		{"integer", SCHEMA_TYPE_INTEGER}
	};

	for (int i = 0; i < (int) lengthof(types); i++)
		if ((int) strlen(types[i].name) == len &&
			memcmp(types[i].name, name, len) == 0)
			return types[i].bit;
	return 0;
}

/* "type": a type name or a non-empty array of distinct names. */
static void
CompileType(SchemaNode *node, JsonbValue *v, StringInfo path)
{
	const char *hint = "Use one of null, boolean, object, array, number, string, integer, or an array of them.";

	if (v->type == jbvString)
	{
		node->types = TypeBit(v->val.string.val, v->val.string.len);
		if (node->types == 0)
			BadSchema(path, "type", "names no JSON type", hint);
		node->type_text = psprintf("\"%s\"", pnstrdup(v->val.string.val,
													  v->val.string.len));
		return;
	}
	if (v->type == jbvBinary && JsonContainerIsArray(v->val.binary.data) &&
		JsonContainerSize(v->val.binary.data) > 0)
	{
		JsonbContainer *array = v->val.binary.data;
		StringInfoData text;

		initStringInfo(&text);
		appendStringInfoChar(&text, '[');
		for (uint32 i = 0; i < JsonContainerSize(array); i++)
		{
			JsonbValue *e = getIthJsonbValueFromContainer(array, i);
			uint8		bit;

			if (e->type != jbvString ||
				(bit = TypeBit(e->val.string.val, e->val.string.len)) == 0)
				BadSchema(path, "type", "has an element that names no JSON type", hint);
			if (node->types & bit)
				BadSchema(path, "type", "names a type twice", hint);
			node->types |= bit;
			if (i > 0)
				appendStringInfoString(&text, ", ");
			appendStringInfo(&text, "\"%s\"", pnstrdup(e->val.string.val,
													   e->val.string.len));
		}
		appendStringInfoChar(&text, ']');
		node->type_text = text.data;
		return;
	}
	BadSchema(path, "type", "is not a type name or a non-empty array of them", hint);
}

/* Free a compiled regular expression with the memory context holding it. */
static void
FreePattern(void *arg)
{
	pg_regfree((regex_t *) arg);
}

/* "pattern": compiled with PostgreSQL's regular expressions (ARE). */
static void
CompilePattern(SchemaNode *node, JsonbValue *v, StringInfo path)
{
	pg_wchar   *wide;
	int			wlen;
	int			rc;
	regex_t    *re;
	MemoryContextCallback *free_it;

	if (v->type != jbvString)
		BadSchema(path, "pattern", "is not a string",
				  "Give a regular expression as a string, for example \"^[A-Z]{3}$\".");
	node->pattern_text = pnstrdup(v->val.string.val, v->val.string.len);
	wide = palloc((v->val.string.len + 1) * sizeof(pg_wchar));
	wlen = pg_mb2wchar_with_len(v->val.string.val, wide, v->val.string.len);
	re = palloc(sizeof(regex_t));
	rc = pg_regcomp(re, wide, wlen, REG_ADVANCED | REG_NOSUB, C_COLLATION_OID);
	pfree(wide);
	if (rc != REG_OKAY)
	{
		char		message[256];

		pg_regerror(rc, re, message, sizeof(message));
		BadSchema(path, "pattern", psprintf("is not a valid regular expression: %s", message),
				  "Write the pattern in PostgreSQL's regular expression syntax (see the README).");
	}
	/* pg_regcomp allocates with malloc: free it with the schema */
	free_it = palloc(sizeof(MemoryContextCallback));
	free_it->func = FreePattern;
	free_it->arg = re;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, free_it);
	node->pattern = re;
}

/* "format": uuid or date-time. */
static void
CompileFormat(SchemaNode *node, JsonbValue *v, StringInfo path)
{
	const char *hint = "The supported formats are \"uuid\" and \"date-time\" (RFC 3339).";

	if (v->type != jbvString)
		BadSchema(path, "format", "is not a string", hint);
	if (v->val.string.len == 4 && memcmp(v->val.string.val, "uuid", 4) == 0)
		node->format = SCHEMA_FORMAT_UUID;
	else if (v->val.string.len == 9 && memcmp(v->val.string.val, "date-time", 9) == 0)
		node->format = SCHEMA_FORMAT_DATE_TIME;
	else
		BadSchema(path, "format",
				  psprintf("names the unsupported format \"%s\"",
						   pnstrdup(v->val.string.val, v->val.string.len)),
				  hint);
}

/* "required": an array of distinct property names. */
static void
CompileRequired(SchemaNode *node, JsonbValue *v, StringInfo path)
{
	JsonbContainer *array;
	const char *hint = "Give an array of property names, for example [\"sku\", \"qty\"].";

	if (v->type != jbvBinary || !JsonContainerIsArray(v->val.binary.data))
		BadSchema(path, "required", "is not an array", hint);
	array = v->val.binary.data;
	node->nrequired = JsonContainerSize(array);
	node->required = palloc0(sizeof(SchemaProperty) * Max(node->nrequired, 1));
	for (int i = 0; i < node->nrequired; i++)
	{
		JsonbValue *e = getIthJsonbValueFromContainer(array, i);

		if (e->type != jbvString)
			BadSchema(path, "required", "has an element that is not a string", hint);
		for (int j = 0; j < i; j++)
			if (CompareKeys(node->required[j].name, node->required[j].len,
							e->val.string.val, e->val.string.len) == 0)
				BadSchema(path, "required", "names a property twice", hint);
		node->required[i].name = pnstrdup(e->val.string.val, e->val.string.len);
		node->required[i].len = e->val.string.len;
	}
}

/* "properties": an object of schemas, one per property name. */
static void
CompileProperties(SchemaNode *node, JsonbValue *v, StringInfo path)
{
	JsonbIterator *it;
	JsonbValue	key;
	JsonbValue	value;
	JsonbIteratorToken token;
	int			n = 0;
	int			saved = path->len;

	if (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
		BadSchema(path, "properties", "is not an object",
				  "Give an object whose values are schemas, for example {\"sku\": {\"type\": \"string\"}}.");
	node->nproperties = JsonContainerSize(v->val.binary.data);
	node->properties = palloc0(sizeof(SchemaProperty) * Max(node->nproperties, 1));
	it = JsonbIteratorInit(v->val.binary.data);
	while ((token = JsonbIteratorNext(&it, &key, true)) != WJB_DONE)
	{
		if (token != WJB_KEY)
			continue;
		token = JsonbIteratorNext(&it, &value, true);
		Assert(token == WJB_VALUE);
		appendStringInfoString(path, ".properties");
		AppendPathKey(path, key.val.string.val, key.val.string.len);
		node->properties[n].name = pnstrdup(key.val.string.val, key.val.string.len);
		node->properties[n].len = key.val.string.len;
		node->properties[n].schema = CompileValue(&value, path);
		path->len = saved;
		path->data[saved] = '\0';
		n++;
	}
	qsort(node->properties, n, sizeof(SchemaProperty), ComparePropertyNames);
}

/* A copy of a JSON value that outlives the schema's jsonb (enum, const). */
static JsonbValue *
CopyValue(JsonbValue *v)
{
	JsonbValue *copy = palloc(sizeof(JsonbValue));

	if (v->type == jbvBinary)
	{
		Jsonb	   *j = JsonbValueToJsonb(v);

		copy->type = jbvBinary;
		copy->val.binary.data = &j->root;
		copy->val.binary.len = VARSIZE(j) - VARHDRSZ;
	}
	else if (v->type == jbvString)
	{
		copy->type = jbvString;
		copy->val.string.len = v->val.string.len;
		copy->val.string.val = pnstrdup(v->val.string.val, v->val.string.len);
	}
	else if (v->type == jbvNumeric)
	{
		copy->type = jbvNumeric;
		copy->val.numeric = DatumGetNumericCopy(NumericGetDatum(v->val.numeric));
	}
	else
		*copy = *v;
	return copy;
}

/* Is the key `name`? */
#define KEY_IS(k, name) \
	((k)->val.string.len == (int) strlen(name) && \
	 memcmp((k)->val.string.val, (name), (k)->val.string.len) == 0)

/* Compile one keyword of an object schema. */
static void
CompileKeyword(SchemaNode *node, JsonbValue *key, JsonbValue *v, StringInfo path)
{
	int			saved = path->len;

	if (KEY_IS(key, "type"))
		CompileType(node, v, path);
	else if (KEY_IS(key, "properties"))
		CompileProperties(node, v, path);
	else if (KEY_IS(key, "required"))
		CompileRequired(node, v, path);
	else if (KEY_IS(key, "additionalProperties"))
	{
		appendStringInfoString(path, ".additionalProperties");
		node->additional = CompileValue(v, path);
		/* true allows what no rule would refuse anyway */
		if (node->additional->is_boolean && node->additional->accepts)
			node->additional = NULL;
	}
	else if (KEY_IS(key, "items"))
	{
		appendStringInfoString(path, ".items");
		if (v->type == jbvBinary && JsonContainerIsArray(v->val.binary.data))
		{
			path->len = saved;
			path->data[saved] = '\0';
			BadSchema(path, "items", "is an array (tuple validation is not supported)",
					  "Give one schema that every element must match.");
		}
		node->items = CompileValue(v, path);
		if (node->items->is_boolean && node->items->accepts)
			node->items = NULL;
	}
	else if (KEY_IS(key, "enum"))
	{
		if (v->type != jbvBinary || !JsonContainerIsArray(v->val.binary.data) ||
			JsonContainerSize(v->val.binary.data) == 0)
			BadSchema(path, "enum", "is not a non-empty array",
					  "Give the allowed values as an array, for example [\"new\", \"paid\"].");
		node->nenum = JsonContainerSize(v->val.binary.data);
		node->enum_values = palloc(sizeof(JsonbValue) * node->nenum);
		for (int i = 0; i < node->nenum; i++)
			node->enum_values[i] =
				*CopyValue(getIthJsonbValueFromContainer(v->val.binary.data, i));
	}
	else if (KEY_IS(key, "const"))
		node->const_value = CopyValue(v);
	else if (KEY_IS(key, "minimum"))
		node->minimum = NumberValue(v, path, "minimum");
	else if (KEY_IS(key, "maximum"))
		node->maximum = NumberValue(v, path, "maximum");
	else if (KEY_IS(key, "exclusiveMinimum"))
		node->exclusive_minimum = NumberValue(v, path, "exclusiveMinimum");
	else if (KEY_IS(key, "exclusiveMaximum"))
		node->exclusive_maximum = NumberValue(v, path, "exclusiveMaximum");
	else if (KEY_IS(key, "minLength"))
		node->min_length = LengthValue(v, path, "minLength");
	else if (KEY_IS(key, "maxLength"))
		node->max_length = LengthValue(v, path, "maxLength");
	else if (KEY_IS(key, "pattern"))
		CompilePattern(node, v, path);
	else if (KEY_IS(key, "format"))
		CompileFormat(node, v, path);
	else
	{
		for (int i = 0; annotations[i] != NULL; i++)
			if (KEY_IS(key, annotations[i]))
				return;
		BadSchema(path, pnstrdup(key->val.string.val, key->val.string.len),
				  "is not supported",
				  "The supported keywords are listed in the README (Evolving events); remove this one or express the rule with them.");
	}
	path->len = saved;
	path->data[saved] = '\0';
}

/* Compile a schema: an object of keywords, or true or false. */
static SchemaNode *
CompileValue(JsonbValue *value, StringInfo path)
{
	SchemaNode *node = palloc0(sizeof(SchemaNode));
	JsonbIterator *it;
	JsonbValue	key;
	JsonbValue	v;
	JsonbIteratorToken token;

	check_stack_depth();
	node->min_length = -1;
	node->max_length = -1;
	if (value->type == jbvBool)
	{
		node->is_boolean = true;
		node->accepts = value->val.boolean;
		return node;
	}
	if (value->type != jbvBinary || !JsonContainerIsObject(value->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the schema at %s is not an object or a boolean", path->data),
				 errhint("A schema is a JSON object of keywords, for example {\"type\": \"string\"}, or true or false.")));
	it = JsonbIteratorInit(value->val.binary.data);
	while ((token = JsonbIteratorNext(&it, &key, true)) != WJB_DONE)
	{
		if (token != WJB_KEY)
			continue;
		token = JsonbIteratorNext(&it, &v, true);
		Assert(token == WJB_VALUE);
		CompileKeyword(node, &key, &v, path);
	}
	LinkRequiredToProperties(node);
	return node;
}

/*
 * Mark the properties that "required" names, and the required names that
 * have a property schema: the validator checks those in its one walk over
 * an object's keys.
 */
static void
LinkRequiredToProperties(SchemaNode *node)
{
	for (int i = 0; i < node->nrequired; i++)
		for (int j = 0; j < node->nproperties; j++)
			if (CompareKeys(node->required[i].name, node->required[i].len,
							node->properties[j].name, node->properties[j].len) == 0)
			{
				node->required[i].in_properties = true;
				node->properties[j].required = true;
				node->nrequired_in_properties++;
			}
}

/*
 * Compile a registered schema in the current memory context (whose reset
 * frees its regular expressions too); a schema with an unsupported or
 * malformed keyword is an error naming it and its path.
 */
SchemaNode *
CompileSchema(Jsonb *schema)
{
	JsonbValue	root;
	StringInfoData path;

	initStringInfo(&path);
	appendStringInfoChar(&path, '$');
	JsonbRootValue(schema, &root);
	return CompileValue(&root, &path);
}
