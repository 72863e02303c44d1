-- pgTAP: event schema versions and upcasting: a chain of three versions,
-- upcast(e) on reads, the check of a new version against stored events,
-- who upcasters run as, and the cache's invalidation across sessions.
\ir setup.psql
DROP EXTENSION IF EXISTS dblink CASCADE;
CREATE EXTENSION dblink;
CALL pg_temp.drop_roles(ARRAY['schema_admin', 'schema_reader']);

SELECT plan(24);

-- Version 1: {"name": "Ada Lovelace"}; version 2 splits the name; version 3
-- renames "first" to "given" and adds a default country.
CREATE FUNCTION public.person_v2(d jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
	SELECT (d - 'name') || jsonb_build_object('first', split_part(d->>'name', ' ', 1),
											  'last', split_part(d->>'name', ' ', 2))
$$;
CREATE FUNCTION public.person_v3(d jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
	SELECT (d - 'first') || jsonb_build_object('given', d->'first', 'country', 'unknown')
$$;

SELECT lives_ok($$SELECT eventstore.register_event_schema('PersonAdded', 1,
	'{"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}')$$,
	'version 1 registers');
SELECT is((eventstore.append_event('p-1', 'PersonAdded', '{"name": "Ada Lovelace"}')).next_expected_revision,
	0::bigint, 'an event of version 1 appends');

SELECT lives_ok($$SELECT eventstore.register_event_schema('PersonAdded', 2,
	'{"type": "object", "required": ["first", "last"], "additionalProperties": false,
	  "properties": {"first": {"type": "string"}, "last": {"type": "string"}}}',
	'public.person_v2(jsonb)')$$,
	'version 2 registers: its upcaster turns the stored version 1 event into valid data');
SELECT is(pg_temp.error_of($$SELECT eventstore.append_event('p-1', 'PersonAdded', '{"name": "Grace Hopper"}')$$),
	ARRAY['SE016', 'event 0 does not match the schema of event type "PersonAdded" version 2',
		  'At $: "required" property "first" is missing.',
		  'Fix the event''s data; a new shape of the type needs a new schema version (eventstore.register_event_schema).'],
	'appends are validated against the latest version');
SELECT lives_ok($$SELECT eventstore.append_event('p-1', 'PersonAdded', '{"first": "Grace", "last": "Hopper"}')$$,
	'an event of version 2 appends');

-- a third version whose upcaster breaks the contract is refused, naming
-- the first stored event it fails on
CREATE FUNCTION public.person_v3_bad(d jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
	SELECT d - 'first'
$$;
SELECT is((pg_temp.error_of($$SELECT eventstore.register_event_schema('PersonAdded', 3,
	'{"type": "object", "required": ["given", "last", "country"],
	  "properties": {"given": {"type": "string"}, "country": {"type": "string", "minLength": 2}}}',
	'public.person_v3_bad(jsonb)')$$))[1:3],
	ARRAY['SE016',
		  format('version 3 of event type "PersonAdded" does not accept the stored event %s',
				 (SELECT event_id FROM eventstore.events WHERE stream_id = 'p-1' AND revision = 0)),
		  format('The event at global_position %s, written with version 1, brought to version 3: at $: "required" property "given" is missing.',
				 (SELECT global_position FROM eventstore.events WHERE stream_id = 'p-1' AND revision = 0))],
	'a version whose upcaster does not turn the stored events into valid data is refused, naming the first that fails');
SELECT is((SELECT max(version) FROM eventstore.event_schemas WHERE event_type = 'PersonAdded'), 2,
	'and not registered');
-- nor one that changes the shape without an upcaster
SELECT is((pg_temp.error_of($$SELECT eventstore.register_event_schema('PersonAdded', 3,
	'{"required": ["given"]}')$$))[1], 'SE016',
	'a breaking version without an upcaster is refused too');

SELECT lives_ok($$SELECT eventstore.register_event_schema('PersonAdded', 3,
	'{"type": "object", "required": ["given", "last", "country"], "additionalProperties": false,
	  "properties": {"given": {"type": "string"}, "last": {"type": "string"},
					 "country": {"type": "string", "minLength": 2}}}',
	'public.person_v3(jsonb)')$$,
	'version 3 registers');
SELECT lives_ok($$SELECT eventstore.append_event('p-1', 'PersonAdded', '{"given": "Alan", "last": "Turing", "country": "UK"}')$$,
	'an event of version 3 appends');

-- upcast(e) on reads: every event at version 3; stored events unchanged
SELECT is(array_agg(e.schema_version ORDER BY e.revision), ARRAY[1, 2, 3],
	'each event records the version it was written with')
FROM eventstore.read_stream('p-1') e;
SELECT is(array_agg(u.data ORDER BY u.revision), ARRAY[
	'{"given": "Ada", "last": "Lovelace", "country": "unknown"}'::jsonb,
	'{"given": "Grace", "last": "Hopper", "country": "unknown"}',
	'{"given": "Alan", "last": "Turing", "country": "UK"}'],
	'upcast(e) brings versions 1 and 2 through the chain to version 3 and leaves version 3 as it is')
FROM eventstore.read_stream('p-1') e, eventstore.upcast(e) u;
SELECT is(array_agg(u.schema_version ORDER BY u.revision), ARRAY[3, 3, 3],
	'the upcast events say version 3')
FROM eventstore.read_all() e, eventstore.upcast(e) u;
SELECT is((SELECT data FROM eventstore.events WHERE stream_id = 'p-1' AND revision = 0),
	'{"name": "Ada Lovelace"}'::jsonb, 'stored events never change');
SELECT is((SELECT eventstore.upcast(e)::text FROM eventstore.events e WHERE revision = 2 AND stream_id = 'p-1'),
	(SELECT e::text FROM eventstore.events e WHERE revision = 2 AND stream_id = 'p-1'),
	'an event at the latest version is returned as it is');
SELECT eventstore.append_event('other-1', 'Untyped', '{"x": 1}');
SELECT is((SELECT (eventstore.upcast(e)).data FROM eventstore.events e WHERE stream_id = 'other-1'),
	'{"x": 1}'::jsonb, 'an event of a type without a schema is returned as it is');

-- an event stored before its type had a schema is taken as of version 1
SELECT eventstore.append_event('late-1', 'Late', '{"n": 1}');
SELECT eventstore.register_event_schema('Late', 1, '{"required": ["n"]}');
CREATE FUNCTION public.late_v2(d jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
	SELECT jsonb_build_object('count', d->'n')
$$;
SELECT eventstore.register_event_schema('Late', 2, '{"required": ["count"]}', 'public.late_v2(jsonb)');
SELECT is((SELECT e.schema_version FROM eventstore.read_stream('late-1') e), NULL::integer,
	'an event appended before its type had a schema has no schema version');
SELECT is((SELECT row(u.data, u.schema_version)::text FROM eventstore.read_stream('late-1') e, eventstore.upcast(e) u),
	row('{"count": 1}'::jsonb, 2)::text,
	'upcast takes it as of version 1 and brings it to version 2');

-- another session sees a new version at once (the cache is invalidated)
SELECT dblink_connect('other', format('dbname=%L port=%s host=%L', current_database(), current_setting('port'),
	COALESCE(NULLIF(split_part(current_setting('unix_socket_directories'), ',', 1), ''), 'localhost')));
SELECT * FROM dblink('other', $$SELECT (eventstore.append_event('p-2', 'PersonAdded', '{"given": "A", "last": "Bo", "country": "NL"}')).stream_id$$) t(s text);
SELECT eventstore.register_event_schema('PersonAdded', 4,
	'{"type": "object", "required": ["given", "last", "country"], "properties": {"last": {"minLength": 2}}}');
SELECT throws_ok($$SELECT * FROM dblink('other', $x$SELECT (eventstore.append_event('p-2', 'PersonAdded', '{"given": "A", "last": "B", "country": "NL"}')).stream_id$x$) t(s text)$$,
	'SE016', NULL, 'another session validates against the version registered after its last append');
SELECT dblink_disconnect('other');

-- upcasters run as the role that registered them, whoever reads
CREATE ROLE schema_admin;
CREATE ROLE schema_reader;
GRANT EXECUTE ON FUNCTION eventstore.register_event_schema(text, integer, jsonb, regprocedure) TO schema_admin;
GRANT EXECUTE ON FUNCTION eventstore.upcast(eventstore.events) TO schema_reader;
GRANT EXECUTE ON FUNCTION eventstore.read_stream(text, bigint, integer, boolean) TO schema_reader;
CREATE FUNCTION public.who_v2(d jsonb) RETURNS jsonb LANGUAGE sql AS $$
	SELECT d || jsonb_build_object('by', current_user::text)
$$;
ALTER FUNCTION public.who_v2(jsonb) OWNER TO schema_admin;
SELECT eventstore.register_event_schema('Who', 1, '{}');
SELECT eventstore.append_event('w-1', 'Who', '{}');
SET ROLE schema_admin;
SELECT lives_ok($$SELECT eventstore.register_event_schema('Who', 2, '{"required": ["by"]}', 'public.who_v2(jsonb)')$$,
	'a role granted register_event_schema registers a version with its own upcaster');
RESET ROLE;
SET ROLE schema_reader;
SELECT is((SELECT u.data->>'by' FROM eventstore.read_stream('w-1') e, eventstore.upcast(e) u),
	'schema_admin', 'the upcaster runs as its registrant, not as the reader');
RESET ROLE;
SELECT is((pg_temp.error_of($$SELECT eventstore.upcast(e) FROM eventstore.events e WHERE false$$)), NULL,
	'upcast is callable by the extension owner');
SET ROLE schema_admin;
SELECT is((pg_temp.error_of($$SELECT eventstore.upcast(e) FROM eventstore.events e$$))[1], '42501',
	'upcast is not granted to PUBLIC');
RESET ROLE;
-- a function of the same signature owned by another role is never run
ALTER FUNCTION public.who_v2(jsonb) OWNER TO CURRENT_USER;
SELECT is((pg_temp.error_of($$SELECT eventstore.upcast(e) FROM eventstore.events e WHERE stream_id = 'w-1'$$))[1:2],
	ARRAY['42501', 'the upcaster public.who_v2(pg_catalog.jsonb) of event type "Who" version 2 is no longer owned by role "schema_admin"'],
	'an upcaster that changed owner is refused');

SELECT * FROM finish();

DROP FUNCTION public.person_v2(jsonb), public.person_v3(jsonb), public.person_v3_bad(jsonb), public.who_v2(jsonb), public.late_v2(jsonb);
CALL pg_temp.drop_roles(ARRAY['schema_admin', 'schema_reader']);
DROP EXTENSION dblink CASCADE;
DROP EXTENSION pgtap CASCADE;
DROP EXTENSION pg_eventstore CASCADE;
