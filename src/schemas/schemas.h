/*
 * schemas/schemas.h
 *		Event schemas: JSON Schemas compiled into trees (compile.c), events'
 *		data checked against them on jsonb directly (validate.c, format.c),
 *		the registry cached per backend (cache.c), the SQL API (registry.c),
 *		upcasting through each version's upcaster (upcast.c) and the check
 *		of an append's batch (append_check.c).
 */
#ifndef ES_SCHEMAS_H
#define ES_SCHEMAS_H

#include "access/htup.h"
#include "access/tupdesc.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "log/log.h"
#include "regex/regex.h"
#include "storage/lockdefs.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

/* JSON types, as the "type" keyword names them: bits of SchemaNode.types */
#define SCHEMA_TYPE_NULL		0x01
#define SCHEMA_TYPE_BOOLEAN		0x02
#define SCHEMA_TYPE_OBJECT		0x04
#define SCHEMA_TYPE_ARRAY		0x08
#define SCHEMA_TYPE_NUMBER		0x10
#define SCHEMA_TYPE_STRING		0x20
#define SCHEMA_TYPE_INTEGER		0x40	/* a number without a fraction */

typedef enum SchemaFormat
{
	SCHEMA_FORMAT_NONE,
	SCHEMA_FORMAT_UUID,
	SCHEMA_FORMAT_DATE_TIME
} SchemaFormat;

typedef struct SchemaNode SchemaNode;

/* A property of "properties", by name. */
typedef struct SchemaProperty
{
	char	   *name;
	int			len;
	SchemaNode *schema;
	bool		required;		/* of properties: "required" names it too */
	bool		in_properties;	/* of required: "properties" has it too */
} SchemaProperty;

/*
 * A compiled schema.  A boolean schema (true, false) has only is_boolean
 * and accepts; otherwise each rule is absent unless its keyword was given.
 */
struct SchemaNode
{
	bool		is_boolean;
	bool		accepts;		/* of a boolean schema */
	uint8		types;			/* 0: any type */
	char	   *type_text;		/* "type" as given, for errors */
	int			nenum;			/* 0: no "enum" */
	JsonbValue *enum_values;	/* its values */
	JsonbValue *const_value;	/* NULL: no "const" */
	Numeric		minimum;
	Numeric		maximum;
	Numeric		exclusive_minimum;
	Numeric		exclusive_maximum;
	int32		min_length;		/* -1: none; in characters */
	int32		max_length;
	char	   *pattern_text;
	regex_t    *pattern;
	SchemaFormat format;
	int			nrequired;
	SchemaProperty *required;	/* schema unused */
	int			nrequired_in_properties;
	int			nproperties;
	SchemaProperty *properties; /* sorted by (len, bytes) */
	SchemaNode *additional;		/* NULL: any other property is allowed */
	SchemaNode *items;			/* NULL: any elements */
};

/* compile.c */
extern SchemaNode *CompileSchema(Jsonb *schema);
extern int	CompareKeys(const char *a, int alen, const char *b, int blen);
extern void AppendPathKey(StringInfo path, const char *key, int len);

/* validate.c: true when valid; else *path and *rule say why */
extern bool ValidateJsonb(SchemaNode *schema, Jsonb *document,
						  char **path, char **rule);
extern bool JsonValuesEqual(JsonbValue *a, JsonbValue *b);
extern void JsonbRootValue(Jsonb *jsonb, JsonbValue *root);

/* format.c */
extern bool IsUuidText(const char *s, int len);
extern bool IsDateTimeText(const char *s, int len);

/* One version of a registered type, as the cache keeps it. */
typedef struct SchemaVersion
{
	int32		version;
	char	   *upcast_name;	/* NULL: the data is kept as it is */
	char	   *upcast_owner;
	char	   *registered_by;
} SchemaVersion;

/* A registered event type: its versions 1 .. latest. */
typedef struct RegisteredType
{
	char	   *type;
	int			len;
	int32		latest;
	SchemaNode *latest_schema;
	SchemaVersion *versions;	/* [v - 1] */
} RegisteredType;

/* cache.c */
extern bool LockSchemaRegistry(LOCKMODE mode);
extern bool SchemaCacheCurrent(void);
extern RegisteredType *FindRegisteredType(const char *type, int len);
extern int	RegisteredTypeCount(void);

/* upcast.c */
extern HeapTuple UpcastEvent(HeapTupleHeader event, TupleDesc desc);
extern RegisteredType *TypeToUpcast(text *type, int32 version, bool version_null);
extern Jsonb *UpcastDataFrom(RegisteredType *t, int32 version, bool version_null,
							 Jsonb *data);
extern Jsonb *UpcastData(RegisteredType *t, int32 from_version, Jsonb *data);
extern Jsonb *CallUpcaster(Oid upcaster, const char *name, const char *run_as,
						   Jsonb *data);
extern Oid	ResolveUpcaster(const char *name, const char *owner,
							const char *type, int32 version);

/* append_check.c */
extern void CheckBatchSchemas(EventBatch *batch);

#endif							/* ES_SCHEMAS_H */
