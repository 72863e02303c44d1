/*
 * consumers/processor_owners.c
 *		Every processor (its checkpoint row and its claim) belongs to a role:
 *		the one that first stored, reset or claimed it.  Only members of
 *		that role may store, reset, claim or release it.
 *
 * The checkpoint functions are not SECURITY DEFINER, so that the caller is
 * known; they do their bookkeeping as the extension's owner.  A row from
 * before 0.3.0 has no owner: the first role to store, reset, claim or
 * release it after the update takes it.  A 0.2.0 table, which this library
 * writes until ALTER EXTENSION UPDATE, has no owner column: nothing is
 * checked there, as before.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "consumers/consumers.h"
#include "core/catalog.h"
#include "core/kept_plans.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"

static void RequireOwnerRole(const char *owner, text *processor,
							 text *partition, Oid caller);

static SPIPlanPtr owner_plan;
static SPIPlanPtr owned_by_plan;
static SPIPlanPtr reassign_plan;
static SPIPlanPtr drop_owned_plan;

/* Does eventstore.checkpoints have its owner column (0.3.0 on)? */
bool
ProcessorsHaveOwners(void)
{
	return get_attnum(EventstoreRelid("checkpoints"), "owner") == CHECKPOINTS_OWNER;
}

/* The columns of eventstore.checkpoints in this database's layout. */
int
CheckpointsNatts(void)
{
	return ProcessorsHaveOwners() ? CHECKPOINTS_NATTS : CHECKPOINTS_OWNER - 1;
}

/*
 * Refuse `caller` the processor unless it is a member of the role owning
 * it (or the processor has no owner yet).  The caller is connected to SPI
 * and runs as the extension's owner.
 */
void
RequireProcessorOwner(text *processor, text *partition, Oid caller)
{
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2] = {PointerGetDatum(processor), PointerGetDatum(partition)};
	char	   *owner;

	if (!ProcessorsHaveOwners())
		return;
	QueryKeptPlanThrough(KeptPlan(&owner_plan,
								  "SELECT owner FROM eventstore.checkpoints"
								  " WHERE processor_id = $1 AND partition = $2",
								  2, argtypes),
						 values, NULL, GetLatestSnapshot(), 1);
	if (SPI_processed == 0)
		return;
	owner = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	RequireOwnerRole(owner, processor, partition, caller);
}

/*
 * The same for the processor's row once it is locked: a row another role
 * created (and committed) after the first look is that role's.
 */
void
RequireOwnerOfLockedRow(TupleTableSlot *row, text *processor, text *partition,
						Oid caller)
{
	bool		isnull;
	Datum		owner;

	if (row->tts_tupleDescriptor->natts < CHECKPOINTS_OWNER)
		return;
	owner = slot_getattr(row, CHECKPOINTS_OWNER, &isnull);
	if (!isnull)
		RequireOwnerRole(TextDatumGetCString(owner), processor, partition, caller);
}

/* Refuse `caller` unless it is a member of role `owner` (NULL: none yet). */
static void
RequireOwnerRole(const char *owner, text *processor, text *partition, Oid caller)
{
	if (owner == NULL || has_privs_of_role(caller, get_role_oid(owner, true)))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("processor \"%s\" partition \"%s\" belongs to role %s",
					text_to_cstring(processor), text_to_cstring(partition),
					quote_identifier(owner)),
			 errdetail("Only members of the role that first stored, reset or claimed a processor may store, reset, claim or release it."),
			 errhint("Run the processor as that role (or a member of it), or use another processor_id.")));
}

/*
 * The processors role `owner` owns, as "processor p partition x, ...";
 * NULL when none.  The caller is connected to SPI and is the extension's
 * owner.
 */
char *
ProcessorsOwnedBy(const char *owner)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(owner)};

	if (!ProcessorsHaveOwners())
		return NULL;
	ExecKeptPlan(KeptPlan(&owned_by_plan,
						  "SELECT string_agg(format('processor %s partition %s', processor_id, partition),"
						  "  ', ' ORDER BY processor_id, partition)"
						  " FROM eventstore.checkpoints WHERE owner = $1",
						  1, argtypes),
				 values, NULL, true, 1);
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
}

/* Give role `from`'s processors to role `to` (REASSIGN OWNED). */
void
ReassignProcessors(const char *from, const char *to)
{
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2] = {CStringGetTextDatum(from), CStringGetTextDatum(to)};

	if (!ProcessorsHaveOwners())
		return;
	ExecKeptPlan(KeptPlan(&reassign_plan,
						  "UPDATE eventstore.checkpoints SET owner = $2 WHERE owner = $1",
						  2, argtypes),
				 values, NULL, false, 0);
}

/* Drop role `owner`'s processors, checkpoints and all (DROP OWNED). */
void
DropProcessorsOwnedBy(const char *owner)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(owner)};

	if (!ProcessorsHaveOwners())
		return;
	ExecKeptPlan(KeptPlan(&drop_owned_plan,
						  "DELETE FROM eventstore.checkpoints WHERE owner = $1",
						  1, argtypes),
				 values, NULL, false, 0);
}
