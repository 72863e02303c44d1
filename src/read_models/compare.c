/*
 * read_models/compare.c
 *		compare_read_models(a, b): whether two relations hold the same rows
 *		as multisets, and how many rows of each the other lacks.
 *
 * The parity check of a re-implemented read model (SPEC 3.1).  It reads
 * both relations through SPI as its caller (SELECT * FROM each, so the
 * caller's privileges and row-level security apply, as to a SELECT), in the
 * caller's snapshot, and never holds more than one row of either in memory:
 *
 * - Each row becomes a 128-bit hash of an encoding of its values (see
 *   EncodeColumn): two 64-bit lookup3 hashes (hash_bytes_extended) of the
 *   same bytes under two seeds.
 * - Pass 1 scans each relation once and adds every row's hash to one of
 *   COMPARE_BUCKETS buckets chosen by its top bits: per bucket and relation,
 *   the row count and the sum of the hashes modulo 2^128.  A sum does not
 *   depend on the order of the rows and counts duplicates, so equal buckets
 *   hold equal multisets of hashes (barring a collision, see the README).
 *   When every bucket is equal the relations are identical: one scan each.
 * - A bucket that differs and is empty on one side holds only unmatched
 *   rows.  The others need pass 2: a second scan of each relation, in the
 *   same snapshot, that puts the hashes of those buckets' rows in a
 *   tuplesort per relation (in work_mem, spilling to temporary files
 *   beyond it); a merge of the two sorted runs counts the hashes of each
 *   side the other lacks.  Pass 2 also recomputes each relation's totals
 *   and fails if they changed (a view returning different rows each time).
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "access/tupdesc.h"
#include "access/tupmacs.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "core/args.h"
#include "core/kept_plans.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "port/pg_bswap.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/tuplesort.h"
#include "utils/typcache.h"
#include "utils/uuid.h"

PG_FUNCTION_INFO_V1(eventstore_compare_read_models);

/* Buckets of pass 1: 2 x 1024 x 24 bytes of counts and sums. */
#define COMPARE_BUCKET_BITS 10
#define COMPARE_BUCKETS (1 << COMPARE_BUCKET_BITS)

/* The two seeds of a row's 128-bit hash (any two distinct constants). */
#define COMPARE_SEED_HI UINT64CONST(0x9e3779b97f4a7c15)
#define COMPARE_SEED_LO UINT64CONST(0xc2b2ae3d27d4eb4f)

/*
 * A value longer than this goes into its row's encoding as its own 128-bit
 * hash rather than its bytes, so that a row's encoding stays small however
 * wide its values are.
 */
#define COMPARE_INLINE_MAX 1024

/* The tags that start each column's encoding. */
#define TAG_NULL	0
#define TAG_BYTES	1
#define TAG_HASHED	2

/* The number of columns in a result row. */
#define COMPARE_RESULT_NATTS 5

typedef struct RowHash
{
	uint64		hi;
	uint64		lo;
} RowHash;

/* Rows and the sum of their hashes modulo 2^128. */
typedef struct HashSum
{
	uint64		rows;
	uint64		sum_hi;
	uint64		sum_lo;
} HashSum;

/*
 * How a column's values are encoded.  Every form is a function of the value
 * alone, and both relations' columns at one position have the same type,
 * hence the same form.
 */
typedef enum ValueForm
{
	FORM_BYVAL,					/* built-in pass-by-value: its typlen bytes */
	FORM_FIXED,					/* uuid: its 16 bytes */
	FORM_BYTES,					/* text, varchar, bpchar, bytea: the bytes */
	FORM_SEND,					/* the type's binary send function */
	FORM_OUTPUT					/* a type with no send function: its text */
} ValueForm;

typedef struct ColumnCoder
{
	ValueForm	form;
	int16		typlen;
	FmgrInfo	fn;				/* send or output function */
} ColumnCoder;

/* The receiver of one scan: hashes every row and files the hash. */
typedef struct RowHasher
{
	DestReceiver pub;
	int			natts;
	ColumnCoder *columns;
	StringInfoData buf;			/* the current row's encoding */
	MemoryContext rowcxt;		/* reset after each row */
	HashSum    *buckets;		/* pass 1: COMPARE_BUCKETS sums */
	const bool *collect;		/* pass 2: buckets whose hashes to sort */
	Tuplesortstate *sort;		/* pass 2: where they go */
	HashSum		total;			/* every row, for pass 2's check */
} RowHasher;

/* One relation being compared. */
typedef struct Side
{
	Oid			relid;
	char	   *name;			/* schema-qualified, quoted as needed */
	char	   *query;			/* SELECT * FROM name */
	TupleDesc	desc;
	int			natts;			/* its live columns */
	HashSum		buckets[COMPARE_BUCKETS];
	HashSum		total;
	int64		unmatched;		/* rows the other side lacks */
} Side;

static void
AddHash(HashSum *sum, RowHash h)
{
	uint64		lo = sum->sum_lo + h.lo;

	sum->sum_hi += h.hi + (lo < h.lo ? 1 : 0);
	sum->sum_lo = lo;
	sum->rows++;
}

static bool
HashSumsEqual(const HashSum *x, const HashSum *y)
{
	return x->rows == y->rows && x->sum_hi == y->sum_hi &&
		x->sum_lo == y->sum_lo;
}

/* The 128-bit hash of len bytes at data. */
static RowHash
HashBytes(const char *data, int len)
{
	RowHash		h;

	h.hi = hash_bytes_extended((const unsigned char *) data, len, COMPARE_SEED_HI);
	h.lo = hash_bytes_extended((const unsigned char *) data, len, COMPARE_SEED_LO);
	return h;
}

/*
 * Append a value of len bytes: inline when short (with its length when the
 * type's length varies), or as its own hash when long.
 */
static void
AppendValue(StringInfo buf, const char *data, int len, bool varies)
{
	char	   *to;

	if (len > COMPARE_INLINE_MAX)
	{
		RowHash		h = HashBytes(data, len);

		enlargeStringInfo(buf, 1 + sizeof(h));
		to = buf->data + buf->len;
		*to++ = TAG_HASHED;
		memcpy(to, &h, sizeof(h));
		buf->len += 1 + sizeof(h);
		buf->data[buf->len] = '\0';
		return;
	}
	/* one check of the room, then plain copies: this runs for every value */
	enlargeStringInfo(buf, 1 + sizeof(uint32) + len);
	to = buf->data + buf->len;
	*to++ = TAG_BYTES;
	if (varies)
	{
		uint32		n = (uint32) len;

		memcpy(to, &n, sizeof(n));
		to += sizeof(n);
	}
	memcpy(to, data, len);
	to += len;
	*to = '\0';
	buf->len = to - buf->data;
}

/*
 * Append one column of a row.  A NULL is its tag alone, so it differs from
 * every value, the empty string included.  A value is what the type's
 * binary send function makes of it (numeric keeps its scale, so 1.0 and
 * 1.00 differ; floats their IEEE bits, so -0 and 0 differ; jsonb its
 * normalized text; arrays their bounds and elements; composites each
 * field), or, for the built-in types whose stored form is exactly that, the
 * stored bytes, which say the same and cost no call.
 */
static void
EncodeColumn(StringInfo buf, ColumnCoder *col, Datum value, bool isnull)
{
	if (isnull)
	{
		appendStringInfoCharMacro(buf, TAG_NULL);
		return;
	}
	switch (col->form)
	{
		case FORM_BYVAL:
			{
				char		bytes[sizeof(Datum)];

				store_att_byval(bytes, value, col->typlen);
				AppendValue(buf, bytes, col->typlen, false);
				break;
			}
		case FORM_FIXED:
			AppendValue(buf, DatumGetPointer(value), col->typlen, false);
			break;
		case FORM_BYTES:
			{
				struct varlena *v = pg_detoast_datum_packed((struct varlena *) DatumGetPointer(value));

				AppendValue(buf, VARDATA_ANY(v), VARSIZE_ANY_EXHDR(v), true);
				break;
			}
		case FORM_SEND:
			{
				bytea	   *sent = SendFunctionCall(&col->fn, value);

				AppendValue(buf, VARDATA(sent), VARSIZE(sent) - VARHDRSZ, true);
				break;
			}
		case FORM_OUTPUT:
			{
				char	   *text = OutputFunctionCall(&col->fn, value);

				AppendValue(buf, text, strlen(text), true);
				break;
			}
	}
}

/* Whether typid has a binary send function (a few types have none). */
static bool
TypeHasSendFunction(Oid typid)
{
	HeapTuple	tuple = SearchSysCache1(TYPEOID, ObjectIdGetDatum(typid));
	bool		has;

	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for type %u", typid);
	has = OidIsValid(((Form_pg_type) GETSTRUCT(tuple))->typsend);
	ReleaseSysCache(tuple);
	return has;
}

/* How to encode a column of type typid. */
static void
InitColumnCoder(ColumnCoder *col, Oid typid)
{
	int16		typlen;
	bool		typbyval;
	Oid			func;
	bool		isvarlena;

	get_typlenbyval(typid, &typlen, &typbyval);
	col->typlen = typlen;
	switch (typid)
	{
		case BOOLOID:
		case CHAROID:
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case FLOAT4OID:
		case FLOAT8OID:
		case OIDOID:
		case DATEOID:
		case TIMEOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			/* int8, float8 and timestamps are by reference on 32-bit builds */
			if (typbyval)
			{
				col->form = FORM_BYVAL;
				return;
			}
			break;
		case UUIDOID:
			col->form = FORM_FIXED;
			return;
		case TEXTOID:
		case VARCHAROID:
		case BPCHAROID:
		case BYTEAOID:
			col->form = FORM_BYTES;
			return;
		default:
			break;
	}
	if (TypeHasSendFunction(typid))
	{
		getTypeBinaryOutputInfo(typid, &func, &isvarlena);
		col->form = FORM_SEND;
		fmgr_info(func, &col->fn);
		return;
	}
	getTypeOutputInfo(typid, &func, &isvarlena);
	col->form = FORM_OUTPUT;
	fmgr_info(func, &col->fn);
}

/* Receive one row: encode it, hash it, file the hash. */
static bool
HashRow(TupleTableSlot *slot, DestReceiver *self)
{
	RowHasher  *hasher = (RowHasher *) self;
	MemoryContext caller = MemoryContextSwitchTo(hasher->rowcxt);
	RowHash		h;
	int			bucket;

	slot_getallattrs(slot);
	resetStringInfo(&hasher->buf);
	for (int i = 0; i < hasher->natts; i++)
		EncodeColumn(&hasher->buf, &hasher->columns[i],
					 slot->tts_values[i], slot->tts_isnull[i]);
	h = HashBytes(hasher->buf.data, hasher->buf.len);
	MemoryContextSwitchTo(caller);
	MemoryContextReset(hasher->rowcxt);

	AddHash(&hasher->total, h);
	bucket = (int) (h.hi >> (64 - COMPARE_BUCKET_BITS));
	if (hasher->buckets != NULL)
		AddHash(&hasher->buckets[bucket], h);
	if (hasher->collect != NULL && hasher->collect[bucket])
	{
		pg_uuid_t	key;
		uint64		hi = pg_hton64(h.hi);
		uint64		lo = pg_hton64(h.lo);

		/* big-endian, so that the bytes sort as the number does */
		memcpy(key.data, &hi, sizeof(hi));
		memcpy(key.data + sizeof(hi), &lo, sizeof(lo));
		tuplesort_putdatum(hasher->sort, UUIDPGetDatum(&key), false);
	}
	return true;
}

static void
HasherStartup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
	RowHasher  *hasher = (RowHasher *) self;

	/* the relation is locked: SELECT * returns the columns compared */
	if (typeinfo->natts != hasher->natts)
		elog(ERROR, "compare_read_models expected %d columns, the scan returned %d",
			 hasher->natts, typeinfo->natts);
}

static void
HasherShutdown(DestReceiver *self)
{
}

static void
HasherDestroy(DestReceiver *self)
{
}

/*
 * Scan one relation through SPI as the caller, in the active snapshot,
 * into a hasher that files into buckets (pass 1) or into sort the hashes
 * of the buckets in collect (pass 2).  Returns the totals of every row.
 */
static HashSum
ScanRelation(Side *side, ColumnCoder *columns, HashSum *buckets,
			 const bool *collect, Tuplesortstate *sort)
{
	RowHasher	hasher;
	SPIExecuteOptions options;
	int			rc;

	memset(&hasher, 0, sizeof(hasher));
	hasher.pub.receiveSlot = HashRow;
	hasher.pub.rStartup = HasherStartup;
	hasher.pub.rShutdown = HasherShutdown;
	hasher.pub.rDestroy = HasherDestroy;
	hasher.pub.mydest = DestNone;
	hasher.natts = side->natts;
	hasher.columns = columns;
	hasher.buckets = buckets;
	hasher.collect = collect;
	hasher.sort = sort;
	initStringInfo(&hasher.buf);
	hasher.rowcxt = AllocSetContextCreate(CurrentMemoryContext,
										  "compare_read_models row",
										  ALLOCSET_DEFAULT_SIZES);

	memset(&options, 0, sizeof(options));
	options.read_only = true;
	options.dest = (DestReceiver *) &hasher;
	rc = SPI_execute_extended(side->query, &options);
	if (rc < 0)
		elog(ERROR, "SPI_execute_extended failed for \"%s\": %s",
			 side->query, SPI_result_code_string(rc));

	MemoryContextDelete(hasher.rowcxt);
	pfree(hasher.buf.data);
	return hasher.total;
}

/*
 * Open the relation of a regclass argument, locked as a SELECT locks it,
 * and check that it is one whose rows can be read and that the caller may
 * read every column of it.
 */
static void
OpenSide(Side *side, FunctionCallInfo fcinfo, int argno, const char *argname)
{
	Relation	rel;
	Oid			user = GetUserId();

	RequireArgNotNull(fcinfo, argno, argname,
					  "Pass the two relations to compare, for example 'app.sales_v1' and 'app.sales_v2'.");
	side->relid = PG_GETARG_OID(argno);
	rel = try_relation_open(side->relid, AccessShareLock);
	if (rel == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", side->relid),
				 errhint("Pass the name of an existing table or view.")));
	side->name = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
											RelationGetRelationName(rel));
	switch (rel->rd_rel->relkind)
	{
		case RELKIND_RELATION:
		case RELKIND_PARTITIONED_TABLE:
		case RELKIND_VIEW:
		case RELKIND_MATVIEW:
		case RELKIND_FOREIGN_TABLE:
			break;
		default:
			ereport(ERROR,
					(errcode(ERRCODE_WRONG_OBJECT_TYPE),
					 errmsg("relation %s is not a table, view, materialized view, or foreign table",
							side->name),
					 errdetail_relkind_not_supported(rel->rd_rel->relkind),
					 errhint("Compare the relations that hold or show the rows of read models.")));
	}
	if (pg_class_aclcheck(side->relid, user, ACL_SELECT) != ACLCHECK_OK &&
		pg_attribute_aclcheck_all(side->relid, user, ACL_SELECT,
								  ACLMASK_ALL) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to compare relation %s", side->name),
				 errdetail("compare_read_models reads every column of both relations as its caller, role \"%s\", who may not SELECT all of %s.",
						   GetUserNameFromId(user, false), side->name),
				 errhint("Grant SELECT on %s to \"%s\", or call compare_read_models as a role that may read it.",
						 side->name, GetUserNameFromId(user, false))));
	side->desc = CreateTupleDescCopy(RelationGetDescr(rel));
	side->query = psprintf("SELECT * FROM %s", side->name);
	/* keep the lock to the end of the transaction, as a SELECT does */
	relation_close(rel, NoLock);
}

/* The live (not dropped) columns of desc, as SELECT * returns them. */
static int
LiveColumns(TupleDesc desc, Form_pg_attribute *out)
{
	int			n = 0;

	for (int i = 0; i < desc->natts; i++)
		if (!TupleDescAttr(desc, i)->attisdropped)
			out[n++] = TupleDescAttr(desc, i);
	return n;
}

/*
 * The columns of a and b must pair up by position with the same types
 * (typmods and names are not compared: the values say what matters, as in
 * EXCEPT).  Returns their coders and sets each side's count of live
 * columns.
 */
static ColumnCoder *
PairColumns(Side *a, Side *b)
{
	Form_pg_attribute *cols_a = palloc(sizeof(Form_pg_attribute) * Max(a->desc->natts, 1));
	Form_pg_attribute *cols_b = palloc(sizeof(Form_pg_attribute) * Max(b->desc->natts, 1));
	int			na = LiveColumns(a->desc, cols_a);
	int			nb = LiveColumns(b->desc, cols_b);
	ColumnCoder *coders;
	const char *hint = "Rows are compared column by column, by position: compare views that select the same columns in the same order, cast to the same types.";

	if (na != nb)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("relations %s and %s have different numbers of columns",
						a->name, b->name),
				 errdetail("%s has %d columns, %s has %d.", a->name, na, b->name, nb),
				 errhint("%s", hint)));
	for (int i = 0; i < na; i++)
		if (cols_a[i]->atttypid != cols_b[i]->atttypid)
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("column %d of %s and %s differ in type",
							i + 1, a->name, b->name),
					 errdetail("Column %d is \"%s\" %s in %s but \"%s\" %s in %s.",
							   i + 1,
							   NameStr(cols_a[i]->attname),
							   format_type_be(cols_a[i]->atttypid), a->name,
							   NameStr(cols_b[i]->attname),
							   format_type_be(cols_b[i]->atttypid), b->name),
					 errhint("%s", hint)));

	coders = palloc0(sizeof(ColumnCoder) * Max(na, 1));
	for (int i = 0; i < na; i++)
		InitColumnCoder(&coders[i], cols_a[i]->atttypid);
	a->natts = na;
	b->natts = nb;
	return coders;
}

/* A sort of 128-bit hashes, as uuids, in work_mem then temporary files. */
static Tuplesortstate *
BeginHashSort(void)
{
	TypeCacheEntry *uuid = lookup_type_cache(UUIDOID, TYPECACHE_LT_OPR);

	return tuplesort_begin_datum(UUIDOID, uuid->lt_opr, InvalidOid, false,
								 work_mem, NULL, TUPLESORT_NONE);
}

/* The next hash of a sorted run into key; false at its end. */
static bool
NextHash(Tuplesortstate *sort, pg_uuid_t *key)
{
	Datum		value;
	bool		isnull;

	if (!tuplesort_getdatum(sort, true, &value, &isnull, NULL))
		return false;
	memcpy(key, DatumGetUUIDP(value), sizeof(*key));
	pfree(DatumGetPointer(value));
	return true;
}

/*
 * Merge two sorted runs of hashes: a hash of one run not matched by an
 * equal hash of the other (one for one, duplicates included) is a row the
 * other relation lacks.
 */
static void
CountUnmatched(Tuplesortstate *sort_a, Tuplesortstate *sort_b, Side *a, Side *b)
{
	pg_uuid_t	ka;
	pg_uuid_t	kb;
	bool		more_a = NextHash(sort_a, &ka);
	bool		more_b = NextHash(sort_b, &kb);

	while (more_a && more_b)
	{
		int			cmp = memcmp(ka.data, kb.data, UUID_LEN);

		CHECK_FOR_INTERRUPTS();
		if (cmp < 0)
		{
			a->unmatched++;
			more_a = NextHash(sort_a, &ka);
		}
		else if (cmp > 0)
		{
			b->unmatched++;
			more_b = NextHash(sort_b, &kb);
		}
		else
		{
			more_a = NextHash(sort_a, &ka);
			more_b = NextHash(sort_b, &kb);
		}
	}
	while (more_a)
	{
		a->unmatched++;
		more_a = NextHash(sort_a, &ka);
	}
	while (more_b)
	{
		b->unmatched++;
		more_b = NextHash(sort_b, &kb);
	}
}

/* Pass 2 of one relation: sort the hashes of the collected buckets. */
static Tuplesortstate *
SortCollected(Side *side, ColumnCoder *coders, const bool *collect)
{
	Tuplesortstate *sort = BeginHashSort();
	HashSum		again = ScanRelation(side, coders, NULL, collect, sort);

	if (!HashSumsEqual(&again, &side->total))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("relation %s returned different rows when read again", side->name),
				 errdetail("compare_read_models reads each relation twice, in one snapshot, when the two differ: "
						   "the first read returned " UINT64_FORMAT " rows, the second " UINT64_FORMAT " rows with other values.",
						   side->total.rows, again.rows),
				 errhint("Compare tables, or views whose rows depend on the data alone (no volatile functions).")));
	tuplesort_performsort(sort);
	return sort;
}

/*
 * SQL: compare_read_models(a regclass, b regclass) RETURNS TABLE (rows_a,
 * rows_b, only_in_a, only_in_b, identical)
 */
Datum
eventstore_compare_read_models(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Side	   *a = palloc0(sizeof(Side));
	Side	   *b = palloc0(sizeof(Side));
	ColumnCoder *coders;
	bool	   *collect = palloc0(sizeof(bool) * COMPARE_BUCKETS);
	bool		any_collected = false;
	Datum		values[COMPARE_RESULT_NATTS];
	bool		nulls[COMPARE_RESULT_NATTS] = {false};

	InitMaterializedSRF(fcinfo, 0);
	OpenSide(a, fcinfo, 0, "a");
	OpenSide(b, fcinfo, 1, "b");
	coders = PairColumns(a, b);

	ConnectSpi();
	a->total = ScanRelation(a, coders, a->buckets, NULL, NULL);
	b->total = ScanRelation(b, coders, b->buckets, NULL, NULL);

	/* buckets that differ: unmatched at once when one side has none */
	for (int i = 0; i < COMPARE_BUCKETS; i++)
	{
		if (HashSumsEqual(&a->buckets[i], &b->buckets[i]))
			continue;
		if (a->buckets[i].rows == 0 || b->buckets[i].rows == 0)
		{
			a->unmatched += a->buckets[i].rows;
			b->unmatched += b->buckets[i].rows;
			continue;
		}
		collect[i] = true;
		any_collected = true;
	}
	if (any_collected)
	{
		Tuplesortstate *sort_a = SortCollected(a, coders, collect);
		Tuplesortstate *sort_b = SortCollected(b, coders, collect);

		CountUnmatched(sort_a, sort_b, a, b);
		tuplesort_end(sort_a);
		tuplesort_end(sort_b);
	}
	SPI_finish();

	values[0] = Int64GetDatum((int64) a->total.rows);
	values[1] = Int64GetDatum((int64) b->total.rows);
	values[2] = Int64GetDatum(a->unmatched);
	values[3] = Int64GetDatum(b->unmatched);
	values[4] = BoolGetDatum(a->total.rows == b->total.rows &&
							 a->unmatched == 0 && b->unmatched == 0);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return (Datum) 0;
}
