/*
 * schemas/validate.c
 *		An event's data checked against a compiled schema, walking its jsonb
 *		in place (no text round trip).  The first rule broken is reported
 *		with its JSON path ($.items[2].sku); keywords are checked in a fixed
 *		order and object properties in jsonb's key order, so the same data
 *		always gives the same report.
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "schemas/schemas.h"
#include "utils/builtins.h"
#include "utils/json.h"

/* A step of the path to the value being checked: a key or an index. */
typedef struct PathStep
{
	const char *key;			/* NULL: an array index */
	int			len;
	int			index;
} PathStep;

/* A validation in progress: the path so far and the first failure. */
typedef struct Walk
{
	PathStep   *steps;
	int			depth;
	int			capacity;
	char	   *path;			/* of the failure */
	char	   *rule;
} Walk;

static bool Check(SchemaNode *s, JsonbValue *v, Walk *w);

/* Enter a key or an index of the value being checked. */
static void
Push(Walk *w, const char *key, int len, int index)
{
	if (w->depth == w->capacity)
	{
		/* beyond the caller's array on the stack: a growing one */
		PathStep   *steps = palloc(sizeof(PathStep) * w->capacity * 2);

		memcpy(steps, w->steps, sizeof(PathStep) * w->capacity);
		w->steps = steps;
		w->capacity *= 2;
	}
	w->steps[w->depth].key = key;
	w->steps[w->depth].len = len;
	w->steps[w->depth].index = index;
	w->depth++;
}

/* Record the failure of `rule` at the current path; returns false. */
static bool
pg_attribute_printf(2, 3)
Fail(Walk *w, const char *fmt,...)
{
	StringInfoData path;
	StringInfoData rule;
	va_list		args;

	initStringInfo(&path);
	appendStringInfoChar(&path, '$');
	for (int i = 0; i < w->depth; i++)
	{
		if (w->steps[i].key != NULL)
			AppendPathKey(&path, w->steps[i].key, w->steps[i].len);
		else
			appendStringInfo(&path, "[%d]", w->steps[i].index);
	}
	initStringInfo(&rule);
	for (;;)
	{
		int			needed;

		va_start(args, fmt);
		needed = appendStringInfoVA(&rule, fmt, args);
		va_end(args);
		if (needed == 0)
			break;
		enlargeStringInfo(&rule, needed);
	}
	w->path = path.data;
	w->rule = rule.data;
	return false;
}

/* The value's JSON type, as the "type" keyword names it. */
static const char *
TypeName(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return "null";
		case jbvBool:
			return "a boolean";
		case jbvNumeric:
			return "a number";
		case jbvString:
			return "a string";
		case jbvBinary:
			return JsonContainerIsArray(v->val.binary.data) ? "an array" : "an object";
		default:
			elog(ERROR, "unexpected jsonb value type %d", v->type);
	}
	return NULL;				/* keep compiler quiet */
}

/* Is the number an integer (no fractional part: 2.0 is one)? */
static bool
IsIntegral(Numeric n)
{
	/* no digits after the point: the usual case, without a computation */
	if (DatumGetInt32(DirectFunctionCall1(numeric_scale, NumericGetDatum(n))) == 0)
		return true;
	return DatumGetBool(DirectFunctionCall2(numeric_eq, NumericGetDatum(n),
											DirectFunctionCall2(numeric_trunc,
																NumericGetDatum(n),
																Int32GetDatum(0))));
}

/* Does the value have one of the types the schema allows? */
static bool
HasType(uint8 types, JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return types & SCHEMA_TYPE_NULL;
		case jbvBool:
			return types & SCHEMA_TYPE_BOOLEAN;
		case jbvString:
			return types & SCHEMA_TYPE_STRING;
		case jbvNumeric:
			return (types & SCHEMA_TYPE_NUMBER) ||
				((types & SCHEMA_TYPE_INTEGER) && IsIntegral(v->val.numeric));
		case jbvBinary:
			return types & (JsonContainerIsArray(v->val.binary.data) ?
							SCHEMA_TYPE_ARRAY : SCHEMA_TYPE_OBJECT);
		default:
			return false;
	}
}

/*
 * Are two JSON values equal, as enum and const compare them?  Numbers by
 * value (1 and 1.0 are equal), strings byte for byte, objects and arrays
 * element by element; a boolean is never a number.
 */
bool
JsonValuesEqual(JsonbValue *a, JsonbValue *b)
{
	if (a->type != b->type)
		return false;
	switch (a->type)
	{
		case jbvNull:
			return true;
		case jbvBool:
			return a->val.boolean == b->val.boolean;
		case jbvString:
			return a->val.string.len == b->val.string.len &&
				memcmp(a->val.string.val, b->val.string.val, a->val.string.len) == 0;
		case jbvNumeric:
			return DatumGetBool(DirectFunctionCall2(numeric_eq,
													NumericGetDatum(a->val.numeric),
													NumericGetDatum(b->val.numeric)));
		case jbvBinary:
			return JsonContainerIsArray(a->val.binary.data) ==
				JsonContainerIsArray(b->val.binary.data) &&
				JsonContainerSize(a->val.binary.data) ==
				JsonContainerSize(b->val.binary.data) &&
				compareJsonbContainers(a->val.binary.data, b->val.binary.data) == 0;
		default:
			return false;
	}
}

/* Compare two numbers exactly. */
static int
CompareNumbers(Numeric a, Numeric b)
{
	return DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(a),
											 NumericGetDatum(b)));
}

/* A number as text, for a failure's rule. */
static char *
NumberText(Numeric n)
{
	return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(n)));
}

/* minimum, maximum, exclusiveMinimum, exclusiveMaximum */
static bool
CheckNumber(SchemaNode *s, Numeric n, Walk *w)
{
	if (s->minimum && CompareNumbers(n, s->minimum) < 0)
		return Fail(w, "\"minimum\" is %s, the value is %s",
					NumberText(s->minimum), NumberText(n));
	if (s->exclusive_minimum && CompareNumbers(n, s->exclusive_minimum) <= 0)
		return Fail(w, "\"exclusiveMinimum\" is %s, the value is %s",
					NumberText(s->exclusive_minimum), NumberText(n));
	if (s->maximum && CompareNumbers(n, s->maximum) > 0)
		return Fail(w, "\"maximum\" is %s, the value is %s",
					NumberText(s->maximum), NumberText(n));
	if (s->exclusive_maximum && CompareNumbers(n, s->exclusive_maximum) >= 0)
		return Fail(w, "\"exclusiveMaximum\" is %s, the value is %s",
					NumberText(s->exclusive_maximum), NumberText(n));
	return true;
}

/* minLength, maxLength (in characters), pattern, format */
static bool
CheckString(SchemaNode *s, const char *str, int len, Walk *w)
{
	/* a string has no more characters than bytes: count only when needed */
	if ((s->min_length > 0 && len >= s->min_length) ||
		(s->max_length >= 0 && len > s->max_length))
	{
		int			chars = pg_mbstrlen_with_len(str, len);

		if (s->min_length >= 0 && chars < s->min_length)
			return Fail(w, "\"minLength\" is %d, the value has %d characters",
						s->min_length, chars);
		if (s->max_length >= 0 && chars > s->max_length)
			return Fail(w, "\"maxLength\" is %d, the value has %d characters",
						s->max_length, chars);
	}
	else if (s->min_length > 0 && len < s->min_length)
		return Fail(w, "\"minLength\" is %d, the value has %d characters",
					s->min_length, pg_mbstrlen_with_len(str, len));
	if (s->pattern)
	{
		pg_wchar	local[128];
		pg_wchar   *wide = len < (int) lengthof(local) ? local :
			palloc((len + 1) * sizeof(pg_wchar));
		int			wlen = pg_mb2wchar_with_len(str, wide, len);
		int			rc = pg_regexec(s->pattern, wide, wlen, 0, NULL, 0, NULL, 0);

		if (wide != local)
			pfree(wide);
		if (rc == REG_NOMATCH)
			return Fail(w, "\"pattern\" is \"%s\", the value does not match it",
						s->pattern_text);
		if (rc != REG_OKAY)
		{
			char		message[256];

			pg_regerror(rc, s->pattern, message, sizeof(message));
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_REGULAR_EXPRESSION),
					 errmsg("regular expression \"%s\" failed: %s", s->pattern_text, message)));
		}
	}
	if (s->format == SCHEMA_FORMAT_UUID && !IsUuidText(str, len))
		return Fail(w, "\"format\" is \"uuid\", the value is not a UUID");
	if (s->format == SCHEMA_FORMAT_DATE_TIME && !IsDateTimeText(str, len))
		return Fail(w, "\"format\" is \"date-time\", the value is not an RFC 3339 date-time");
	return true;
}

/*
 * The first name of "required" the object lacks, or -1.  (Only a failing
 * object's names are all looked up: a valid one's were seen in the walk.)
 */
static int
FirstMissingRequired(SchemaNode *s, JsonbContainer *object)
{
	JsonbValue	value;

	for (int i = 0; i < s->nrequired; i++)
		if (getKeyJsonValueFromContainer(object, s->required[i].name,
										 s->required[i].len, &value) == NULL)
			return i;
	return -1;
}

/* Report required property i missing, at the object's path. */
static bool
FailMissing(SchemaNode *s, int i, Walk *w, int depth)
{
	StringInfoData name;

	w->depth = depth;
	initStringInfo(&name);
	escape_json(&name, s->required[i].name);
	return Fail(w, "\"required\" property %s is missing", name.data);
}

/*
 * A rule broken inside the object: a missing required property is
 * reported before it, as "required" is checked first.
 */
static bool
FailInObject(SchemaNode *s, JsonbContainer *object, Walk *w, int depth)
{
	int			missing = FirstMissingRequired(s, object);

	return missing < 0 ? false : FailMissing(s, missing, w, depth);
}

/*
 * required, properties, additionalProperties, in one walk over the
 * object's keys: they come in jsonb's order, the order the properties
 * were sorted in, so the two are merged, with no lookup per key.
 */
static bool
CheckObject(SchemaNode *s, JsonbContainer *object, Walk *w)
{
	JsonbIterator *it;
	JsonbValue	key;
	JsonbValue	value;
	JsonbIteratorToken token;
	int			depth = w->depth;
	int			next = 0;
	int			required_seen = 0;

	/* names without a property schema are looked up */
	if (s->nrequired > s->nrequired_in_properties)
		for (int i = 0; i < s->nrequired; i++)
			if (!s->required[i].in_properties &&
				getKeyJsonValueFromContainer(object, s->required[i].name,
											 s->required[i].len, &value) == NULL)
				return FailMissing(s, FirstMissingRequired(s, object), w, depth);
	if (s->nproperties == 0 && s->additional == NULL)
		return true;
	it = JsonbIteratorInit(object);
	while ((token = JsonbIteratorNext(&it, &key, true)) != WJB_DONE)
	{
		SchemaNode *ps = NULL;

		if (token != WJB_KEY)
			continue;
		token = JsonbIteratorNext(&it, &value, true);
		while (next < s->nproperties)
		{
			SchemaProperty *p = &s->properties[next];
			int			c = CompareKeys(p->name, p->len, key.val.string.val,
										key.val.string.len);

			if (c > 0)
				break;
			next++;
			if (c == 0)
			{
				ps = p->schema;
				required_seen += p->required;
				break;
			}
		}
		Push(w, key.val.string.val, key.val.string.len, 0);
		if (ps == NULL && s->additional != NULL &&
			s->additional->is_boolean && !s->additional->accepts)
		{
			Fail(w, "\"additionalProperties\" is false, the property is not allowed");
			return FailInObject(s, object, w, depth);
		}
		if (ps == NULL)
			ps = s->additional;
		if (ps != NULL && !Check(ps, &value, w))
			return FailInObject(s, object, w, depth);
		w->depth--;
	}
	if (required_seen < s->nrequired_in_properties)
		return FailMissing(s, FirstMissingRequired(s, object), w, depth);
	return true;
}

/* items */
static bool
CheckArray(SchemaNode *s, JsonbContainer *array, Walk *w)
{
	JsonbIterator *it;
	JsonbValue	value;
	JsonbIteratorToken token;
	int			index = 0;

	it = JsonbIteratorInit(array);
	while ((token = JsonbIteratorNext(&it, &value, true)) != WJB_DONE)
	{
		if (token != WJB_ELEM)
			continue;
		Push(w, NULL, 0, index++);
		if (!Check(s->items, &value, w))
			return false;
		w->depth--;
	}
	return true;
}

/* Check a value against a schema: its type, then its values' rules. */
static bool
Check(SchemaNode *s, JsonbValue *v, Walk *w)
{
	check_stack_depth();
	CHECK_FOR_INTERRUPTS();
	if (s->is_boolean)
		return s->accepts ? true :
			Fail(w, "the schema is false, no value is allowed");
	if (s->types != 0 && !HasType(s->types, v))
		return Fail(w, "\"type\" is %s, the value is %s", s->type_text,
					v->type == jbvNumeric && (s->types & SCHEMA_TYPE_INTEGER) ?
					"a number with a fraction" : TypeName(v));
	if (s->nenum > 0)
	{
		bool		found = false;

		for (int i = 0; i < s->nenum && !found; i++)
			found = JsonValuesEqual(&s->enum_values[i], v);
		if (!found)
			return Fail(w, "\"enum\" allows %d values, the value is none of them", s->nenum);
	}
	if (s->const_value != NULL && !JsonValuesEqual(s->const_value, v))
		return Fail(w, "\"const\" allows one value, the value is another");
	switch (v->type)
	{
		case jbvNumeric:
			return CheckNumber(s, v->val.numeric, w);
		case jbvString:
			return CheckString(s, v->val.string.val, v->val.string.len, w);
		case jbvBinary:
			if (JsonContainerIsObject(v->val.binary.data))
				return CheckObject(s, v->val.binary.data, w);
			return s->items == NULL || CheckArray(s, v->val.binary.data, w);
		default:
			return true;
	}
}

/*
 * A jsonb datum as the value at its root, which the walks of compile.c and
 * validate.c take: a scalar as itself, a container as a binary value.
 */
void
JsonbRootValue(Jsonb *jsonb, JsonbValue *root)
{
	if (JB_ROOT_IS_SCALAR(jsonb))
		JsonbExtractScalar(&jsonb->root, root);
	else
	{
		root->type = jbvBinary;
		root->val.binary.data = &jsonb->root;
		root->val.binary.len = VARSIZE(jsonb) - VARHDRSZ;
	}
}

/*
 * Does the document match the schema?  When it does not, *path is where
 * (for example $.items[2].sku) and *rule the rule it breaks.
 */
bool
ValidateJsonb(SchemaNode *schema, Jsonb *document, char **path, char **rule)
{
	Walk		w;
	JsonbValue	root;
	PathStep	steps[16];

	JsonbRootValue(document, &root);
	w.capacity = lengthof(steps);
	w.steps = steps;
	w.depth = 0;
	w.path = NULL;
	w.rule = NULL;
	if (Check(schema, &root, &w))
		return true;
	*path = w.path;
	*rule = w.rule;
	return false;
}
