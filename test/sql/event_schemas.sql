-- Event schemas: registration, the validator's exact errors (the JSON path
-- and the rule) for every keyword, unsupported keywords, versions, drops,
-- the unregistered_types setting, and a bad event in a batch of 1,000.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_eventstore CASCADE;
CREATE EXTENSION pg_eventstore;
RESET client_min_messages;
\set VERBOSITY default
\pset null '(null)'

-- A helper: append one event of type t, reporting only the outcome.
CREATE FUNCTION try(t text, d jsonb) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	PERFORM eventstore.append_event('s-' || t, t, d);
	RETURN 'ok';
EXCEPTION WHEN SQLSTATE 'SE016' THEN
	DECLARE detail text;
	BEGIN
		GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
		RETURN detail;
	END;
END $$;

-- type: a name or an array of names; integer is a number without fraction
SELECT eventstore.register_event_schema('T', 1, '{"type": "object", "properties": {
	"s": {"type": "string"}, "n": {"type": "number"}, "i": {"type": "integer"},
	"b": {"type": "boolean"}, "z": {"type": "null"}, "a": {"type": "array"},
	"o": {"type": "object"}, "sn": {"type": ["string", "null"]}}}');
SELECT d, try('T', d::jsonb) FROM (VALUES
	('{"s": "x", "n": 1.5, "i": 2, "b": true, "z": null, "a": [], "o": {}, "sn": null}'),
	('{"i": 2.0}'), ('{"i": 1e2}'), ('{"i": 2.5}'), ('{"i": "2"}'), ('{"n": "1"}'),
	('{"s": 1}'), ('{"b": 0}'), ('{"z": false}'), ('{"a": {}}'), ('{"o": []}'),
	('{"sn": 3}'), ('[]'), ('"text"')) v(d);

-- required and additionalProperties (false, and a schema), nested
SELECT eventstore.register_event_schema('Order', 1, '{
	"type": "object",
	"required": ["id", "items"],
	"additionalProperties": false,
	"properties": {
		"id": {"type": "string", "format": "uuid"},
		"items": {"type": "array", "items": {
			"type": "object", "required": ["sku", "qty"],
			"properties": {"sku": {"type": "string", "pattern": "^[A-Z]{2}[0-9]+$"},
						   "qty": {"type": "integer", "minimum": 1, "maximum": 99}},
			"additionalProperties": {"type": "string"}}},
		"note": {"type": "string"},
		"odd key": {"type": "boolean"}}}');
SELECT d, try('Order', d::jsonb) FROM (VALUES
	('{"id": "0190e3a0-7c1d-7000-8000-000000000001", "items": [{"sku": "AB1", "qty": 1}]}'),
	('{"items": []}'),
	('{"id": "0190e3a0-7c1d-7000-8000-000000000001"}'),
	('{"id": "0190e3a0-7c1d-7000-8000-000000000001", "items": [], "extra": 1}'),
	('{"id": "0190e3a0-7c1d-7000-8000-000000000001", "items": [], "odd key": 1}'),
	('{"id": "0190e3a0-7c1d-7000-8000-000000000001", "items": [{"sku": "AB1", "qty": 1}, {"sku": "AB2", "qty": 2}, {"sku": "ab3", "qty": 3}]}'),
	('{"id": "0190e3a0-7c1d-7000-8000-000000000001", "items": [{"sku": "AB1", "qty": 1}, {"qty": 2}]}'),
	('{"id": "0190e3a0-7c1d-7000-8000-000000000001", "items": [{"sku": "AB1", "qty": 0}]}'),
	('{"id": "0190e3a0-7c1d-7000-8000-000000000001", "items": [{"sku": "AB1", "qty": 100}]}'),
	('{"id": "0190e3a0-7c1d-7000-8000-000000000001", "items": [{"sku": "AB1", "qty": 99, "gift": "yes"}]}'),
	('{"id": "0190e3a0-7c1d-7000-8000-000000000001", "items": [{"sku": "AB1", "qty": 99, "gift": true}]}'),
	('{"id": "0190e3a0-7c1d-7000-8000-00000000000", "items": []}'),
	('{"id": "0190e3a07c1d70008000000000000001", "items": []}')) v(d);

-- numbers compared exactly, at and past each bound
SELECT eventstore.register_event_schema('Num', 1, '{"properties": {
	"min": {"minimum": 0.1}, "max": {"maximum": 12345678901234567890.5},
	"xmin": {"exclusiveMinimum": 0}, "xmax": {"exclusiveMaximum": -1.5}}}');
SELECT d, try('Num', d::jsonb) FROM (VALUES
	('{"min": 0.1}'), ('{"min": 0.10000000000000000001}'), ('{"min": 0.09999999999999999999}'),
	('{"max": 12345678901234567890.5}'), ('{"max": 12345678901234567890.50000001}'),
	('{"xmin": 0.0000001}'), ('{"xmin": 0}'), ('{"xmin": -0.0}'),
	('{"xmax": -1.51}'), ('{"xmax": -1.5}'), ('{"min": "0"}')) v(d);

-- strings: lengths in characters (not bytes), patterns, formats
SELECT eventstore.register_event_schema('Str', 1, '{"properties": {
	"name": {"type": "string", "minLength": 2, "maxLength": 4},
	"code": {"pattern": "^[a-z]+-[0-9]{2}$"}, "word": {"pattern": "é"},
	"at": {"type": "string", "format": "date-time"}}}');
SELECT d, try('Str', d::jsonb) FROM (VALUES
	('{"name": "ab"}'), ('{"name": "a"}'), ('{"name": "abcd"}'), ('{"name": "abcde"}'),
	('{"name": "éé"}'), ('{"name": "日本語語"}'), ('{"name": "日本語語語"}'), ('{"name": "😀"}'),
	('{"name": "😀😀😀😀"}'), ('{"name": 12345}'),
	('{"code": "ab-12"}'), ('{"code": "ab-123"}'), ('{"code": "AB-12"}'),
	('{"word": "café"}'), ('{"word": "cafe"}'),
	('{"at": "2026-12-01T14:05:00Z"}'), ('{"at": "2026-12-01t14:05:00.123456+01:00"}'),
	('{"at": "2024-02-29T00:00:00-00:00"}'), ('{"at": "2016-12-31T23:59:60Z"}'),
	('{"at": "2023-02-29T00:00:00Z"}'), ('{"at": "2026-13-01T00:00:00Z"}'),
	('{"at": "2026-12-01 14:05:00Z"}'), ('{"at": "2026-12-01T14:05:00"}'),
	('{"at": "2026-12-01T24:00:00Z"}'), ('{"at": "2026-12-01T14:05:00.Z"}'),
	('{"at": "2026-12-01T14:05:00+1:00"}'), ('{"at": "2026-12-01"}')) v(d);

-- enum and const: JSON equality (1 and 1.0 are equal, true is not 1)
SELECT eventstore.register_event_schema('Enum', 1, '{"properties": {
	"e": {"enum": ["a", 1, null, {"k": [1, 2]}]},
	"c": {"const": {"x": [true]}}, "one": {"const": 1}}}');
SELECT d, try('Enum', d::jsonb) FROM (VALUES
	('{"e": "a"}'), ('{"e": 1.0}'), ('{"e": null}'), ('{"e": {"k": [1, 2.00]}}'),
	('{"e": "b"}'), ('{"e": true}'), ('{"e": {"k": [2, 1]}}'), ('{"e": {"k": [1, 2], "l": 0}}'),
	('{"c": {"x": [true]}}'), ('{"c": {"x": [1]}}'), ('{"c": {"x": true}}'),
	('{"one": 1}'), ('{"one": true}')) v(d);

-- boolean schemas, items of items, a schema that is an array at the root
SELECT eventstore.register_event_schema('Bool', 1, '{"properties": {
	"never": false, "any": true,
	"grid": {"items": {"items": {"type": "integer"}}}}}');
SELECT d, try('Bool', d::jsonb) FROM (VALUES
	('{"any": [1]}'), ('{"never": 1}'), ('{"grid": [[1, 2], [3, 4.5]]}'),
	('{"grid": [[1], 2]}')) v(d);
SELECT eventstore.register_event_schema('Root', 1, '{"type": "array", "items": {"type": "string"}, "maxLength": 1}');
SELECT d, try('Root', d::jsonb) FROM (VALUES ('["a", "bb"]'), ('["a", 1]')) v(d);

-- unsupported and malformed keywords are refused at registration
SELECT eventstore.register_event_schema('Bad', 1, '{"oneOf": [{"type": "string"}]}');
SELECT eventstore.register_event_schema('Bad', 1, '{"properties": {"a": {"items": {"$ref": "#"}}}}');
SELECT eventstore.register_event_schema('Bad', 1, '{"properties": {"a b": {"minItems": 1}}}');
SELECT eventstore.register_event_schema('Bad', 1, '{"items": [{"type": "string"}]}');
SELECT eventstore.register_event_schema('Bad', 1, '{"type": "text"}');
SELECT eventstore.register_event_schema('Bad', 1, '{"type": ["string", "string"]}');
SELECT eventstore.register_event_schema('Bad', 1, '{"format": "email"}');
SELECT eventstore.register_event_schema('Bad', 1, '{"minLength": -1}');
SELECT eventstore.register_event_schema('Bad', 1, '{"maxLength": 1.5}');
SELECT eventstore.register_event_schema('Bad', 1, '{"minimum": "1"}');
SELECT eventstore.register_event_schema('Bad', 1, '{"pattern": "("}');
SELECT eventstore.register_event_schema('Bad', 1, '{"enum": []}');
SELECT eventstore.register_event_schema('Bad', 1, '{"required": ["a", "a"]}');
SELECT eventstore.register_event_schema('Bad', 1, '{"properties": {"a": 1}}');
SELECT eventstore.register_event_schema('Bad', 1, '"string"');
-- annotations are accepted
SELECT eventstore.register_event_schema('Annotated', 1, '{"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "A", "description": "B", "$comment": "C", "default": {}, "examples": [{}]}');

-- versions: from 1, in order, never replaced; upcasters take (jsonb) -> jsonb
SELECT eventstore.register_event_schema('V', 2, '{}');
SELECT eventstore.register_event_schema('V', 0, '{}');
SELECT eventstore.register_event_schema('V', 1, '{}');
SELECT eventstore.register_event_schema('V', 1, '{}');
SELECT eventstore.register_event_schema('V', 3, '{}');
SELECT eventstore.register_event_schema('', 1, '{}');
SELECT eventstore.register_event_schema(NULL, 1, '{}');
SELECT eventstore.register_event_schema('V', 1, NULL);
CREATE FUNCTION up_text(d text) RETURNS jsonb LANGUAGE sql AS $$ SELECT d::jsonb $$;
CREATE FUNCTION up_set(d jsonb) RETURNS SETOF jsonb LANGUAGE sql AS $$ SELECT d $$;
CREATE FUNCTION up_ok(d jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT d || '{"v": 2}' $$;
SELECT eventstore.register_event_schema('V', 2, '{}', 'up_text(text)');
SELECT eventstore.register_event_schema('V', 2, '{}', 'up_set(jsonb)');
SELECT eventstore.register_event_schema('Fresh', 1, '{}', 'up_ok(jsonb)');
SELECT eventstore.register_event_schema('V', 2, '{"required": ["v"]}', 'up_ok(jsonb)');
SELECT event_type, version, latest, upcast, upcast_signature, registered_by
FROM eventstore.event_schemas WHERE event_type = 'V' ORDER BY version;

-- an event records the version it was validated against
SELECT eventstore.append_event('v-1', 'V', '{"v": 2}') IS NOT NULL AS appended;
SELECT eventstore.append_event('v-1', 'Untyped', '{}') IS NOT NULL AS appended;
SELECT event_type, schema_version FROM eventstore.events WHERE stream_id = 'v-1' ORDER BY revision;

-- only the latest version can be dropped, and only while no event uses it
SELECT eventstore.drop_event_schema('V', 1);
SELECT eventstore.drop_event_schema('V', 2);
SELECT eventstore.drop_event_schema('V', 3);
SELECT eventstore.drop_event_schema('Nope', 1);
SELECT eventstore.drop_event_schema('Annotated', 1);
SELECT count(*) FROM eventstore.event_schemas WHERE event_type = 'Annotated';

-- pg_eventstore.unregistered_types: allow (default), warn, refuse
SHOW pg_eventstore.unregistered_types;
SET pg_eventstore.unregistered_types = warn;
SELECT (eventstore.append_to_stream('u-1', '[{"type": "U1"}, {"type": "U1"}, {"type": "U2"}, {"type": "V", "data": {"v": 1}}]')).next_expected_revision;
SET pg_eventstore.unregistered_types = refuse;
SELECT eventstore.append_to_stream('u-1', '[{"type": "V", "data": {"v": 1}}, {"type": "U3"}]');
SET pg_eventstore.unregistered_types = sometimes;
RESET pg_eventstore.unregistered_types;
-- only superusers may change it
CREATE ROLE schemas_app;
SET ROLE schemas_app;
SET pg_eventstore.unregistered_types = allow;
RESET ROLE;

-- one bad event in a batch of 1,000 appends nothing
SELECT eventstore.register_event_schema('Line', 1, '{"type": "object", "required": ["n"], "properties": {"n": {"type": "integer", "maximum": 1000}}}');
SELECT eventstore.append_to_stream('batch-1',
	(SELECT jsonb_agg(jsonb_build_object('type', 'Line', 'data',
		jsonb_build_object('n', CASE WHEN i = 777 THEN 1001 ELSE i END)) ORDER BY i)
	 FROM generate_series(1, 1000) i));
SELECT count(*) AS events, eventstore.stream_revision('batch-1') AS revision
FROM eventstore.events WHERE stream_id = 'batch-1';
SELECT (eventstore.append_to_stream('batch-1',
	(SELECT jsonb_agg(jsonb_build_object('type', 'Line', 'data', jsonb_build_object('n', i)) ORDER BY i)
	 FROM generate_series(1, 1000) i))).next_expected_revision;

-- privileges: registration is granted, like the other management functions
SET ROLE schemas_app;
SELECT eventstore.register_event_schema('Mine', 1, '{}');
SELECT eventstore.drop_event_schema('Line', 1);
RESET ROLE;
DROP ROLE schemas_app;
