-- pgTAP: delete_stream and redact_events.  Soft deletion (a tombstone: the
-- stream reads as deleted, its events stay in the global log, an append
-- re-creates it with its revisions continuing), hard deletion (the events
-- removed with their places kept, the id refused for good), expected
-- revisions, unknown streams, redaction of whole data and of top-level
-- keys with the envelope kept, the record in maintenance_log, cursors,
-- checkpoints and projections carrying on, what a rebuild sees, schema
-- registration over redacted events, who may call them, and the log staying
-- append-only for everyone else, also while a maintenance function runs in
-- another session.
\ir setup.psql
DROP EXTENSION IF EXISTS dblink CASCADE;
CREATE EXTENSION dblink;
DROP SCHEMA IF EXISTS es_tap_er CASCADE;
CALL pg_temp.drop_roles(ARRAY['es_tap_eraser', 'es_tap_nobody']);

CREATE SCHEMA es_tap_er;
-- what the projections applied
CREATE TABLE es_tap_er.seen (tag text, stream_id text, revision bigint, data jsonb);
CREATE FUNCTION es_tap_er.apply(tag text, e eventstore.events) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	IF e.data ? 'poison' THEN
		RAISE EXCEPTION 'poison %:%', e.stream_id, e.revision USING ERRCODE = '22012';
	END IF;
	INSERT INTO es_tap_er.seen VALUES (tag, e.stream_id, e.revision, e.data);
END $$;
CREATE FUNCTION es_tap_er.async_seen(e eventstore.events) RETURNS void
LANGUAGE sql AS $$ SELECT es_tap_er.apply('async', e) $$;
CREATE FUNCTION es_tap_er.inline_seen(e eventstore.events) RETURNS void
LANGUAGE sql AS $$ SELECT es_tap_er.apply('inline', e) $$;
CREATE FUNCTION es_tap_er.parked_seen(e eventstore.events) RETURNS void
LANGUAGE sql AS $$ SELECT es_tap_er.apply('parked', e) $$;

CREATE FUNCTION pg_temp.append(s text, n integer DEFAULT 1, expected bigint DEFAULT NULL)
RETURNS eventstore.append_result LANGUAGE sql AS $$
	SELECT eventstore.append_to_stream(s,
		(SELECT jsonb_agg(jsonb_build_object('type', 'Added', 'data', jsonb_build_object('i', i)))
		 FROM generate_series(1, n) i), expected)
$$;
-- a stream's revisions as read_stream returns them
CREATE FUNCTION pg_temp.revisions(s text, backwards boolean DEFAULT false) RETURNS text
LANGUAGE sql AS $$
	SELECT COALESCE(string_agg(revision::text, ',' ORDER BY n), '')
	FROM eventstore.read_stream(s, CASE WHEN backwards THEN NULL ELSE 0 END, NULL, backwards)
		WITH ORDINALITY AS r(global_position, transaction_id, stream_id, revision, event_id,
							 event_type, data, metadata, created_at, schema_version, n)
$$;
-- the revisions of a stream read_all returns, from the start
CREATE FUNCTION pg_temp.in_read_all(s text) RETURNS text LANGUAGE sql AS $$
	SELECT COALESCE(string_agg(revision::text, ',' ORDER BY transaction_id, global_position), '')
	FROM eventstore.read_all(NULL, NULL) WHERE stream_id = s
$$;
CREATE FUNCTION pg_temp.last_log_entry() RETURNS eventstore.maintenance_log
LANGUAGE sql AS $$
	SELECT * FROM eventstore.maintenance_log ORDER BY maintenance_id DESC LIMIT 1
$$;

SELECT plan(121);

------------------------------------------------------------------------
-- Soft deletion: a tombstone
------------------------------------------------------------------------
SELECT pg_temp.append('soft-1', 3);
SELECT pg_temp.append('other-1', 2);
SELECT eventstore.create_projection('er-inline', 'es_tap_er.inline_seen', mode => 'inline');
SELECT eventstore.run_projection('er-inline');
SELECT is(eventstore.delete_stream('soft-1'), 3::bigint,
          'delete_stream returns the events it deleted');
SELECT results_eq($$SELECT revision, deleted_revision, deleted_at <= now(), hard_deleted
                    FROM eventstore.streams WHERE stream_id = 'soft-1'$$,
                  $$VALUES (2::bigint, 2::bigint, true, false)$$,
                  'the stream''s row keeps its revision and carries the tombstone');
SELECT is(pg_temp.revisions('soft-1'), '', 'read_stream of a soft-deleted stream returns nothing');
SELECT is(pg_temp.revisions('soft-1', true), '', '... backwards neither');
SELECT is(eventstore.stream_revision('soft-1'), NULL, 'stream_revision of a soft-deleted stream is NULL');
SELECT is(pg_temp.in_read_all('soft-1'), '0,1,2', 'its events stay in the global log: read_all returns them');
SELECT is((SELECT count(*) FROM eventstore.events WHERE stream_id = 'soft-1'), 3::bigint,
          'eventstore.events keeps them');
SELECT results_eq($$SELECT action, target, events, reason, performed_by, finished_at IS NOT NULL, details
                    FROM pg_temp.last_log_entry()$$,
                  $$VALUES ('delete_stream', 'soft-1', 3::bigint, NULL::text, current_user::text COLLATE "default", true,
                            '{"hard": false, "revision": 2, "skips_discarded": 0, "dead_letters_discarded": 0}'::jsonb)$$,
                  'the deletion is recorded in maintenance_log: who, what, how many');

-- expected revisions against a soft-deleted stream: it is no stream
SELECT is(pg_temp.error_of($$SELECT pg_temp.append('soft-1', 1, 2)$$),
          ARRAY['SE001', 'wrong expected revision for stream "soft-1"',
                'Expected revision 2, actual revision none (the stream was deleted at revision 2).',
                'Read the stream to decide again, then retry with its current revision.'],
          'an append expecting the deleted stream''s revision is SE001, saying it was deleted');
SELECT throws_ok($$SELECT pg_temp.append('soft-1', 1, -2)$$, 'SE001', NULL,
                 'an append expecting an existing stream is SE001');
SELECT is((SELECT (next_expected_revision, first_position > 0)::text
           FROM eventstore.append_to_stream('soft-1',
             '[{"type": "Reopened", "id": "0190a7e2-0000-7000-8000-000000000001"}]', -1)),
          '(3,t)', 'an append expecting no stream re-creates it, its revisions continuing');
SELECT is(pg_temp.revisions('soft-1'), '3', 'read_stream returns the events after the tombstone only');
SELECT is(pg_temp.revisions('soft-1', true), '3', '... backwards too');
SELECT is((SELECT count(*) FROM eventstore.read_stream('soft-1', 2)), 1::bigint,
          '... from a revision before the tombstone too');
SELECT is(eventstore.stream_revision('soft-1'), 3::bigint, 'stream_revision is the re-created stream''s');
SELECT is((SELECT string_agg(revision::text, ',' ORDER BY revision) FROM es_tap_er.seen
           WHERE tag = 'inline' AND stream_id = 'soft-1'), '0,1,2,3',
          'an inline projection built after the soft deletion met its events in the log, and applies the re-created stream''s as any others');
SELECT is((SELECT next_expected_revision FROM eventstore.append_to_stream('soft-1',
             '[{"type": "Reopened", "id": "0190a7e2-0000-7000-8000-000000000001"}]', -1)),
          3::bigint, 'a retry of the re-creating batch with -1 is a retry');
SELECT is((SELECT next_expected_revision FROM pg_temp.append('soft-1', 1, 3)), 4::bigint,
          'appends to the re-created stream expect its revisions');
SELECT is(eventstore.delete_stream('soft-1', false, 4), 2::bigint,
          'a second soft deletion deletes the events since the first');
SELECT is(eventstore.delete_stream('soft-1'), 0::bigint,
          'soft-deleting a stream that reads as deleted deletes nothing');
SELECT is(eventstore.delete_stream('soft-1', false, -1), 0::bigint,
          '... also expecting no stream');
SELECT throws_ok($$SELECT eventstore.delete_stream('soft-1', false, 4)$$, 'SE001', NULL,
                 '... and expecting its last revision is SE001: it is no stream');
SELECT is((SELECT next_expected_revision FROM pg_temp.append('soft-1')), 5::bigint,
          'an append with no expected revision re-creates it too');
SELECT is(pg_temp.revisions('soft-1'), '5', '... and it reads from there');

------------------------------------------------------------------------
-- delete_stream's arguments and expected revisions
------------------------------------------------------------------------
SELECT pg_temp.append('exp-1', 2);
SELECT is(pg_temp.error_of($$SELECT eventstore.delete_stream('exp-1', true, 0)$$),
          ARRAY['SE001', 'wrong expected revision for stream "exp-1"',
                'Expected revision 0, actual revision 1.',
                'Read the stream to decide again, then retry with its current revision.'],
          'a wrong expected revision is SE001, as for appends');
SELECT throws_ok($$SELECT eventstore.delete_stream('exp-1', false, -1)$$, 'SE001', NULL,
                 'expecting no stream of a live one is SE001');
SELECT is((SELECT count(*) FROM eventstore.events WHERE stream_id = 'exp-1'), 2::bigint,
          'a refused deletion removes nothing');
SELECT is(eventstore.stream_revision('exp-1'), 1::bigint, '... nor leaves a tombstone');
SELECT is((SELECT count(*) FROM eventstore.maintenance_log WHERE target = 'exp-1'), 0::bigint,
          '... nor a record');
SELECT is(pg_temp.error_of($$SELECT eventstore.delete_stream('exp-1', false, -3)$$),
          ARRAY['22023', 'expected_revision must be NULL, -1, -2 or a revision >= 0', 'Got -3.',
                'NULL deletes at any revision, -2 requires a stream that is not deleted, n its revision n.'],
          'an expected revision below -2 is 22023');
SELECT throws_ok($$SELECT eventstore.delete_stream('exp-1', NULL)$$, '22004', NULL, 'hard NULL is 22004');
SELECT throws_ok($$SELECT eventstore.delete_stream(NULL)$$, '22004', NULL, 'a NULL stream id is 22004');
SELECT throws_ok($$SELECT eventstore.delete_stream('')$$, '22023', NULL, 'an empty stream id is 22023');
SELECT is(pg_temp.error_of($$SELECT eventstore.delete_stream('no-such-stream')$$),
          ARRAY['SE015', 'stream "no-such-stream" does not exist', 'No event was ever appended to it.',
                'Check the stream id (eventstore.streams has a row for every stream appended to).'],
          'deleting an unknown stream is SE015');
SELECT throws_ok($$SELECT eventstore.delete_stream('no-such-stream', true, 0)$$, 'SE015', NULL,
                 '... with any expected revision');
SELECT is(eventstore.delete_stream('exp-1', false, -2), 2::bigint, '-2 deletes a live stream');
SELECT throws_ok($$SELECT eventstore.delete_stream('exp-1', true, -2)$$, 'SE001', NULL,
                 '... and not a soft-deleted one');

------------------------------------------------------------------------
-- Hard deletion: removed for good
------------------------------------------------------------------------
SELECT pg_temp.append('soft-1');
CREATE TEMP TABLE hard_events AS
SELECT * FROM eventstore.events WHERE stream_id = 'soft-1';
SELECT max(global_position) AS soft_last FROM eventstore.events WHERE stream_id = 'soft-1' \gset
-- an async projection whose checkpoint is at the stream's last event
SELECT eventstore.create_projection('er-async', 'es_tap_er.async_seen');
SELECT eventstore.run_projection('er-async');
SELECT pg_temp.append('other-1');
SELECT pg_temp.append('after-1', 2);
SELECT eventstore.store_checkpoint('er-consumer', :soft_last, NULL);
SELECT is(eventstore.delete_stream('soft-1', true, NULL), (SELECT count(*) FROM hard_events),
          'a hard deletion returns every event it removed, those a soft deletion hid too');
SELECT is((SELECT count(*) FROM eventstore.events WHERE stream_id = 'soft-1'), 0::bigint,
          'the stream''s events are gone from the log');
SELECT bag_eq($$SELECT global_position, transaction_id FROM eventstore.removed_log_places$$,
              $$SELECT global_position, transaction_id FROM hard_events$$,
              'removed_log_places keeps each removed event''s place in log order');
SELECT results_eq($$SELECT revision, deleted_revision, hard_deleted FROM eventstore.streams
                    WHERE stream_id = 'soft-1'$$,
                  $$VALUES (6::bigint, 6::bigint, true)$$,
                  'the stream''s row stays, deleted for good');
SELECT is(pg_temp.revisions('soft-1'), '', 'read_stream of a hard-deleted stream returns nothing');
SELECT is(eventstore.stream_revision('soft-1'), NULL, 'stream_revision is NULL');
SELECT is(pg_temp.in_read_all('soft-1'), '', 'read_all returns none of it');
SELECT results_eq($$SELECT events, (details->>'hard')::boolean FROM pg_temp.last_log_entry()$$,
                  $$VALUES ((SELECT count(*) FROM hard_events), true)$$,
                  'maintenance_log records the hard deletion and its count');

-- the id is never used again
SELECT is(pg_temp.error_of($$SELECT pg_temp.append('soft-1')$$),
          ARRAY['SE014', 'stream "soft-1" was deleted for good',
                'A hard-deleted stream''s events are removed and its id is never used again; an append to it is refused.',
                'Use another stream id.'],
          'an append to a hard-deleted stream is SE014');
SELECT throws_ok($$SELECT pg_temp.append('soft-1', 1, -1)$$, 'SE014', NULL, '... expecting no stream too');
SELECT throws_ok($$SELECT pg_temp.append('soft-1', 1, 5)$$, 'SE014', NULL, '... expecting its last revision too');
SELECT throws_ok($$SELECT pg_temp.append('soft-1', 1, -2)$$, 'SE014', NULL, '... expecting a stream too');
SELECT throws_ok($$SELECT eventstore.append_event('soft-1', 'Reopened', '{}', NULL, NULL, '0190a7e2-0000-7000-8000-000000000001')$$,
                 'SE014', NULL, 'a retry of a batch whose events were hard-deleted is SE014, not a retry');
SELECT throws_ok($$SELECT eventstore.append_event('soft-1', 'X', '{}', NULL, -1)$$, 'SE014', NULL,
                 'append_event is refused as append_to_stream');
SELECT is(eventstore.delete_stream('soft-1', true), 0::bigint,
          'a hard deletion again, without an expected revision, is a retry: 0 events');
SELECT is(eventstore.delete_stream('soft-1'), 0::bigint, '... and so is a soft one');
SELECT throws_ok($$SELECT eventstore.delete_stream('soft-1', true, 5)$$, 'SE014', NULL,
                 'a deletion of it with an expected revision is SE014');
SELECT is(eventstore.redact_events('soft-1'), 0::bigint, 'redacting it redacts nothing: nothing is left');
SELECT is((SELECT next_expected_revision FROM eventstore.append_event('elsewhere-1', 'Reopened', '{}',
             NULL, -1, '0190a7e2-0000-7000-8000-000000000001')), 0::bigint,
          'a removed event''s id is no longer stored: another stream may take it');

-- readers carry on
SELECT is((SELECT string_agg(stream_id || ':' || revision, ',' ORDER BY transaction_id, global_position)
           FROM eventstore.read_all(:soft_last, 10)), 'other-1:2,after-1:0,after-1:1,elsewhere-1:0',
          'read_all from a removed event''s position resumes at its place');
SELECT is(eventstore.read_checkpoint('er-consumer'), :soft_last::bigint,
          'a checkpoint at a removed event stays');
SELECT is(eventstore.store_checkpoint('er-consumer', (SELECT max(global_position) FROM eventstore.events
                                                      WHERE stream_id = 'after-1'), :soft_last)::text,
          'stored', '... and the consumer stores its next one from it');
SELECT lives_ok($$SELECT eventstore.reset_checkpoint('er-consumer', $$ || :soft_last || $$)$$,
                'a checkpoint may be reset to a removed event''s position');
SELECT is((SELECT "position" FROM eventstore.projections WHERE name = 'er-async'), :soft_last::bigint,
          'an async projection''s checkpoint is at a removed event');
SELECT is(eventstore.run_projection('er-async'), 4::bigint,
          'an async projection carries on after the removal');
SELECT is((SELECT string_agg(stream_id || ':' || revision, ',' ORDER BY stream_id, revision)
           FROM es_tap_er.seen WHERE tag = 'async' AND stream_id <> 'soft-1'),
          'after-1:0,after-1:1,elsewhere-1:0,exp-1:0,exp-1:1,other-1:0,other-1:1,other-1:2',
          '... having applied every remaining event once');
SELECT is((SELECT count(*) FROM es_tap_er.seen WHERE tag = 'async' AND stream_id = 'soft-1'), 7::bigint,
          'its read model keeps what it applied of the removed stream');
TRUNCATE es_tap_er.seen;
SELECT eventstore.rebuild_projection('er-async');
SELECT eventstore.run_projection('er-async');
SELECT is((SELECT count(*) FROM es_tap_er.seen WHERE tag = 'async' AND stream_id = 'soft-1'), 0::bigint,
          'a rebuild sees the log as it now is: nothing of the removed stream');
SELECT is((SELECT count(*) FROM es_tap_er.seen WHERE tag = 'async'),
          (SELECT count(*) FROM eventstore.events),
          '... and every remaining event');

------------------------------------------------------------------------
-- A hard deletion resolves what projections left pending of the stream
------------------------------------------------------------------------
SELECT eventstore.drop_projection('er-inline');
SELECT eventstore.create_projection('er-parked', 'es_tap_er.parked_seen', mode => 'inline',
                                    on_error => 'park');
SELECT eventstore.run_projection('er-parked');
SELECT eventstore.append_to_stream('poisoned-1', '[{"type": "A", "data": {"poison": true}}, {"type": "B"}]');
SELECT pg_temp.append('healthy-1');
SELECT is((SELECT (unresolved_dead_letters, parked_streams, skips_pending)::text
           FROM eventstore.projection_status WHERE name = 'er-parked'),
          '(1,1,2)', 'a poison event parks its stream behind a dead letter');
SELECT is(eventstore.delete_stream('poisoned-1', true), 2::bigint, 'the poisoned stream is hard-deleted');
SELECT results_eq($$SELECT resolution, resolved_by, resolved_at IS NOT NULL
                    FROM eventstore.projection_dead_letters$$,
                  $$VALUES ('discarded'::text, current_user::text COLLATE "default", true)$$,
                  'its dead letter is resolved as discarded, by the deleter');
SELECT is((SELECT string_agg(outcome, ',') FROM eventstore.projection_skips
           WHERE stream_id = 'poisoned-1'), 'discarded,discarded',
          'its skips are drained as discarded');
SELECT is((SELECT (unresolved_dead_letters, parked_streams, skips_pending)::text
           FROM eventstore.projection_status WHERE name = 'er-parked'),
          '(0,0,0)', 'the projection has nothing pending of it');
SELECT results_eq($$SELECT (details->>'skips_discarded')::int, (details->>'dead_letters_discarded')::int
                    FROM pg_temp.last_log_entry()$$,
                  $$VALUES (2, 1)$$, 'maintenance_log counts them');
SELECT is(eventstore.run_projection('er-parked'), 0::bigint, 'a run finds nothing to drain');
SELECT is((SELECT string_agg(stream_id, ',') FROM es_tap_er.seen
           WHERE tag = 'parked' AND stream_id IN ('healthy-1', 'poisoned-1')), 'healthy-1',
          'other streams were applied');
SELECT eventstore.drop_projection('er-parked');

------------------------------------------------------------------------
-- Redaction
------------------------------------------------------------------------
SELECT eventstore.append_to_stream('customer-7', '[
  {"type": "Registered", "data": {"name": "Ada", "email": "ada@example.com", "plan": "pro"},
   "metadata": {"correlation_id": "r-1"}},
  {"type": "Moved", "data": {"address": "1 Main St", "email": "ada@new.example.com"}},
  {"type": "Upgraded", "data": {"plan": "max"}},
  {"type": "Noted", "data": "a string"},
  {"type": "Noted", "data": [1, 2]}]');
CREATE TEMP TABLE before_redaction AS SELECT * FROM eventstore.events WHERE stream_id = 'customer-7';
SELECT is(eventstore.redact_events('customer-7', '{email,address}', 'GDPR request 42'), 2::bigint,
          'redact_events returns the events it changed');
SELECT results_eq($$SELECT data FROM eventstore.events WHERE stream_id = 'customer-7' ORDER BY revision$$,
                  $$VALUES ('{"name": "Ada", "email": {"$redacted": true}, "plan": "pro"}'::jsonb),
                           ('{"address": {"$redacted": true}, "email": {"$redacted": true}}'),
                           ('{"plan": "max"}'), ('"a string"'), ('[1, 2]')$$,
                  'each given top-level key present is replaced by the marker; others, absent keys and non-objects stay');
SELECT bag_eq($$SELECT global_position, transaction_id, stream_id, revision, event_id, event_type,
                       metadata, created_at, schema_version
                FROM eventstore.events WHERE stream_id = 'customer-7'$$,
              $$SELECT global_position, transaction_id, stream_id, revision, event_id, event_type,
                       metadata, created_at, schema_version
                FROM before_redaction$$,
              'the envelope stays: positions, keys, revisions, ids, types, metadata, times, schema versions');
SELECT results_eq($$SELECT action, target, events, reason, performed_by, details FROM pg_temp.last_log_entry()$$,
                  $$VALUES ('redact_events', 'customer-7', 2::bigint, 'GDPR request 42', current_user::text COLLATE "default",
                            '{"keys": ["email", "address"]}'::jsonb)$$,
                  'maintenance_log records who, why and which keys');
SELECT is(eventstore.redact_events('customer-7', '{email,address}'), 0::bigint,
          'redacting again changes nothing');
SELECT is(eventstore.redact_events('customer-7'), 5::bigint, 'keys NULL redacts the whole data of every event');
SELECT is((SELECT array_agg(DISTINCT data::text) FROM eventstore.events WHERE stream_id = 'customer-7'),
          ARRAY['{"$redacted": true}'], '... to the marker');
SELECT is((SELECT array_agg(DISTINCT data::text) FROM eventstore.read_stream('customer-7')),
          ARRAY['{"$redacted": true}'], 'read_stream returns the redacted data');
SELECT is((SELECT metadata FROM eventstore.events WHERE stream_id = 'customer-7' AND revision = 0),
          '{"correlation_id": "r-1"}'::jsonb, 'metadata is kept');
SELECT is(eventstore.redact_events('customer-7'), 0::bigint, '... and again changes nothing');
SELECT is((SELECT events FROM pg_temp.last_log_entry()), 0::bigint, '... which is recorded too');
SELECT pg_temp.append('soft-2', 2);
SELECT eventstore.delete_stream('soft-2');
SELECT is(eventstore.redact_events('soft-2', '{i}'), 2::bigint,
          'a soft-deleted stream''s events are redacted too: they are still in the log');
SELECT is(pg_temp.error_of($$SELECT eventstore.redact_events('no-such-stream')$$),
          ARRAY['SE015', 'stream "no-such-stream" does not exist', 'No event was ever appended to it.',
                'Check the stream id (eventstore.streams has a row for every stream appended to).'],
          'redacting an unknown stream is SE015');
SELECT is(pg_temp.error_of($$SELECT eventstore.redact_events('customer-7', '{}')$$),
          ARRAY['22023', 'keys must be NULL or a non-empty array of top-level keys without NULLs', NULL,
                'Pass NULL to redact the whole data of each event, or the keys to redact, for example ''{email,address}''.'],
          'an empty keys array is 22023');
SELECT throws_ok($$SELECT eventstore.redact_events('customer-7', ARRAY['a', NULL])$$, '22023', NULL,
                 'a NULL key is 22023');
SELECT throws_ok($$SELECT eventstore.redact_events(NULL)$$, '22004', NULL, 'a NULL stream id is 22004');

-- a rebuild after redaction no longer has the data
SELECT eventstore.append_to_stream('customer-8', '[{"type": "Registered", "data": {"email": "bob@example.com"}}]');
SELECT eventstore.run_projection('er-async');
SELECT is((SELECT data->>'email' FROM es_tap_er.seen WHERE tag = 'async' AND stream_id = 'customer-8'),
          'bob@example.com', 'a read model built before the redaction has the data');
SELECT eventstore.redact_events('customer-8', '{email}');
SELECT is((SELECT data->>'email' FROM es_tap_er.seen WHERE tag = 'async' AND stream_id = 'customer-8'),
          'bob@example.com', '... until it is rebuilt (or erases it itself)');
TRUNCATE es_tap_er.seen;
SELECT eventstore.rebuild_projection('er-async');
SELECT eventstore.run_projection('er-async');
SELECT is((SELECT data FROM es_tap_er.seen WHERE tag = 'async' AND stream_id = 'customer-8'),
          '{"email": {"$redacted": true}}'::jsonb, 'a rebuild after the redaction no longer has it');
SELECT is((SELECT count(*) FROM es_tap_er.seen WHERE data::text LIKE '%@example.com%'), 0::bigint,
          '... nor anything else redacted');

-- a redacted event need not match its type's schema
SELECT eventstore.register_event_schema('Signed', 1,
  '{"type": "object", "required": ["email"], "properties": {"email": {"type": "string"}}}');
SELECT eventstore.append_to_stream('signer-1', '[{"type": "Signed", "data": {"email": "eve@example.com"}}]');
SELECT is(eventstore.redact_events('signer-1', '{email}'), 1::bigint,
          'an event validated at its append is redacted without a check');
SELECT is((SELECT schema_version FROM eventstore.events WHERE stream_id = 'signer-1'), 1,
          '... keeping the schema version it was validated against');
SELECT lives_ok($$SELECT eventstore.register_event_schema('Signed', 2,
  '{"type": "object", "required": ["email"], "properties": {"email": {"type": "string"}, "name": {"type": "string"}}}')$$,
                'the check of a new version against stored events leaves redacted events out');
SELECT throws_ok($$SELECT eventstore.append_event('signer-2', 'Signed', '{"email": {"$redacted": true}}')$$,
                 'SE016', NULL, 'an append is still validated: the marker is no way past the schema');
-- data redacted whole passes no upcaster
CREATE FUNCTION es_tap_er.split_email(data jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
	IF NOT data ? 'email' THEN
		RAISE EXCEPTION 'no email in %', data;
	END IF;
	RETURN data || jsonb_build_object('domain', split_part(data->>'email', '@', 2));
END $$;
SELECT eventstore.register_event_schema('Contacted', 1, '{"type": "object", "required": ["email"]}');
SELECT eventstore.append_to_stream('contact-1', '[{"type": "Contacted", "data": {"email": "kim@example.com"}},
                                                 {"type": "Contacted", "data": {"email": "kim@example.org"}}]');
SELECT eventstore.append_to_stream('contact-3', '[{"type": "Contacted", "data": {"email": "lee@example.com"}}]');
SELECT eventstore.redact_events('contact-1');
SELECT lives_ok($$SELECT eventstore.register_event_schema('Contacted', 2, '{"type": "object", "required": ["email", "domain"]}',
                                                          'es_tap_er.split_email(jsonb)')$$,
                'a version with an upcaster is registered over wholly redacted events');
SELECT results_eq($$SELECT (eventstore.upcast(e)).data, (eventstore.upcast(e)).schema_version
                    FROM eventstore.events e WHERE stream_id = 'contact-1' ORDER BY revision$$,
                  $$VALUES ('{"$redacted": true}'::jsonb, 2), ('{"$redacted": true}'::jsonb, 2)$$,
                  'upcast gives data redacted whole as it is, at the latest version: no upcaster sees it');
SELECT is((SELECT (eventstore.upcast(e)).data FROM eventstore.events e WHERE stream_id = 'contact-3'),
          '{"email": "lee@example.com", "domain": "example.com"}'::jsonb,
          'an event of the version before that was not redacted goes through the upcaster');

------------------------------------------------------------------------
-- Who may delete and redact
------------------------------------------------------------------------
CREATE ROLE es_tap_eraser;
CREATE ROLE es_tap_nobody;
SELECT ok(NOT has_function_privilege('public', 'eventstore.delete_stream(text, boolean, bigint)', 'EXECUTE')
          AND NOT has_function_privilege('public', 'eventstore.redact_events(text, text[], text)', 'EXECUTE'),
          'PUBLIC may not call delete_stream or redact_events');
GRANT EXECUTE ON FUNCTION eventstore.delete_stream(text, boolean, bigint),
                          eventstore.redact_events(text, text[], text) TO es_tap_eraser;
SELECT pg_temp.append('owned-1', 2);
SET ROLE es_tap_nobody;
SELECT throws_ok($$SELECT eventstore.delete_stream('owned-1')$$, '42501', NULL,
                 'a role not granted delete_stream may not call it');
SELECT throws_ok($$SELECT eventstore.redact_events('owned-1')$$, '42501', NULL,
                 '... nor redact_events');
RESET ROLE;
SET ROLE es_tap_eraser;
SELECT is(eventstore.redact_events('owned-1', NULL, 'asked'), 2::bigint, 'a role granted redact_events redacts');
SELECT is(eventstore.delete_stream('owned-1', true), 2::bigint, '... and one granted delete_stream deletes');
SELECT throws_ok($$DELETE FROM eventstore.events$$, '42501', NULL,
                 '... but may not delete events itself');
RESET ROLE;
SELECT is((SELECT array_agg(DISTINCT performed_by) FROM eventstore.maintenance_log WHERE target = 'owned-1'),
          ARRAY['es_tap_eraser'], 'maintenance_log names the granted role as who did it');

------------------------------------------------------------------------
-- The log stays append-only for everyone else
------------------------------------------------------------------------
SELECT pg_temp.append('guarded-1', 2);
BEGIN;
SELECT eventstore.delete_stream('exp-1', true);
SELECT eventstore.redact_events('other-1');
SELECT throws_ok($$DELETE FROM eventstore.events WHERE stream_id = 'guarded-1'$$, 'SE004', NULL,
                 'after delete_stream in the same transaction, a superuser''s DELETE is still SE004');
SELECT throws_ok($$UPDATE eventstore.events SET data = '{}' WHERE stream_id = 'guarded-1'$$, 'SE004', NULL,
                 '... and an UPDATE');
SELECT throws_ok($$TRUNCATE eventstore.events$$, 'SE004', NULL, '... and a TRUNCATE');
COMMIT;
-- a maintenance function that failed leaves nothing open either
SELECT throws_ok($$SELECT eventstore.delete_stream('guarded-1', true, 0)$$, 'SE001', NULL,
                 'a refused deletion');
SELECT throws_ok($$DELETE FROM eventstore.events WHERE stream_id = 'guarded-1'$$, 'SE004', NULL,
                 '... leaves DELETE refused');

-- while a hard deletion runs in another session (waiting, inside its
-- DELETE, for rows this session locks), this session's changes are refused
SELECT is(dblink_connect('eraser',
            format('dbname=%L port=%s host=%L', current_database(), current_setting('port'),
                   COALESCE(NULLIF(split_part(current_setting('unix_socket_directories'), ',', 1), ''),
                            'localhost'))),
          'OK', 'a second session connects');
SELECT dblink_exec('eraser', 'SET application_name = ''es_tap_eraser''');
BEGIN;
DO $$ BEGIN PERFORM FROM eventstore.events WHERE stream_id = 'guarded-1' FOR UPDATE; END $$;
SELECT is(dblink_send_query('eraser', $$SELECT eventstore.delete_stream('guarded-1', true)$$), 1,
          'the other session starts a hard deletion');
DO $$
BEGIN
	-- until it waits for our row locks, inside its DELETE
	FOR i IN 1 .. 6000 LOOP
		EXIT WHEN EXISTS (SELECT FROM pg_stat_activity
						  WHERE application_name = 'es_tap_eraser' AND wait_event_type = 'Lock');
		PERFORM pg_sleep(0.01);
	END LOOP;
END $$;
SELECT ok(EXISTS (SELECT FROM pg_stat_activity
                  WHERE application_name = 'es_tap_eraser' AND wait_event_type = 'Lock'),
          '... and waits inside it');
SELECT throws_ok($$DELETE FROM eventstore.events WHERE stream_id = 'after-1'$$, 'SE004', NULL,
                 'meanwhile a superuser''s DELETE in this session is SE004');
SELECT throws_ok($$UPDATE eventstore.events SET data = '{}' WHERE stream_id = 'after-1'$$, 'SE004', NULL,
                 '... and an UPDATE');
ROLLBACK;
SELECT is((SELECT n FROM dblink_get_result('eraser') AS r(n bigint)), 2::bigint,
          'the other session''s deletion completes once the rows are free');
SELECT is(dblink_disconnect('eraser'), 'OK', 'the second session disconnects');
SELECT is((SELECT count(*) FROM eventstore.events WHERE stream_id IN ('after-1', 'guarded-1')),
          2::bigint, 'only the deletion removed anything');

SELECT * FROM finish();

-- Leave the shared database as we found it.
DROP SCHEMA es_tap_er CASCADE;
CALL pg_temp.drop_roles(ARRAY['es_tap_eraser', 'es_tap_nobody']);
DROP EXTENSION dblink CASCADE;
DROP EXTENSION pgtap CASCADE;
DROP EXTENSION pg_eventstore CASCADE;
