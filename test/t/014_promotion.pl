# Checked promotion across crashes, and automatic promotion by the worker.
#
# Claims proven here:
# - A crash in the middle of a promotion leaves the stable view on the old
#   relation or on the new one, never neither and never half-switched, and
#   the promotion record agrees with it: a promoting backend killed with
#   SIGKILL while it waits for the view's lock (a consumer's transaction
#   holds it), and an immediate shutdown with the promotion done but not
#   committed, both leave v1 (view, current_version, no record); a
#   committed promotion followed by an immediate shutdown leaves v2.
# - A promotion under lock_timeout that cannot get the view in time fails
#   (55P03) and changes nothing.
# - promote => 'auto': once the background worker brings a new version to
#   the head and its check (a compare_read_models parity check) passes,
#   the worker promotes it: current_version returns it and the view shows
#   its relation; a version whose check fails stays unpromoted, with the
#   failing check, count and sample in projection_status and a WARNING in
#   the server log (with the failing rows, which only the log gets), and
#   the worker goes on.
# - promote => 'auto' for versions created at the head (over an empty log),
#   async and inline: the worker promotes them, without waiting for a view
#   that a consumer's open transaction holds: promotion_error says the view
#   is in use, the worker goes on, and promotes them at a turn after the
#   consumer's commit; its idle turns after that run no checks.
# - pg_dump and pg_restore into another database keep the promoted version,
#   the checks, the read models and the view (the tables keep names).
#
# Every wait is bounded by PostgreSQL::Test::Utils's timeout_default.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EventstoreTest;

my $node = start_node('promotion', q(
restart_after_crash = on
pg_eventstore.databases = 'postgres'
pg_eventstore.poll_interval = '200ms'
pg_eventstore.retry_interval = '200ms'
));

# Two versions of 'm' at the head (created over an empty log, their rows
# put in directly), each row saying which version it is; v1 promoted.
sql(q{
	CREATE EXTENSION pg_eventstore;
	CREATE TABLE rm_v1 (version text, k integer);
	CREATE TABLE rm_v2 (version text, k integer);
	INSERT INTO rm_v1 SELECT 'v1', g FROM generate_series(1, 100) g;
	INSERT INTO rm_v2 SELECT 'v2', g FROM generate_series(1, 100) g;
	CREATE FUNCTION noop(e eventstore.events) RETURNS void LANGUAGE sql AS $$ SELECT $$;
	SELECT eventstore.create_projection('m', 'noop', event_types => ARRAY['None']);
	SELECT eventstore.create_projection('m', 'noop', event_types => ARRAY['None'], version => 2);
	SELECT eventstore.set_read_model('m', 1, 'public.rm_v1', 'public.rm');
	SELECT eventstore.set_read_model('m', 2, 'public.rm_v2', 'public.rm');
	SELECT eventstore.promote_projection('m', 1);
});

# What the view shows ("v1:100" or "v2:100"; anything else is a mix or
# worse), the current version and the number of promotions recorded.
sub state_of_m
{
	return sql(q{
		SELECT (SELECT string_agg(version || ':' || n, ',') FROM
				 (SELECT version, count(*) AS n FROM rm GROUP BY version) v)
			   || ' current=' || eventstore.current_version('m')
			   || ' promotions=' || (SELECT count(*) FROM eventstore.projection_promotions
									 WHERE name = 'm')});
}
is(state_of_m(), 'v1:100 current=1 promotions=1', 'v1 is promoted');

# Two names, one async and one inline, each with v1 promoted behind its
# view, which a consumer's open transaction has read.
sql(q{
	CREATE TABLE wa_v1 (k integer);
	CREATE TABLE wa_v2 (k integer);
	CREATE TABLE wi_v1 (k integer);
	CREATE TABLE wi_v2 (k integer);
	INSERT INTO wa_v2 VALUES (2);
	INSERT INTO wi_v2 VALUES (2);
	SELECT eventstore.create_projection('wa', 'noop', ARRAY['None']);
	SELECT eventstore.create_projection('wi', 'noop', ARRAY['None'], mode => 'inline');
	SELECT eventstore.set_read_model('wa', 1, 'public.wa_v1', 'public.wa');
	SELECT eventstore.set_read_model('wi', 1, 'public.wi_v1', 'public.wi');
	SELECT eventstore.promote_projection('wa', 1);
	SELECT eventstore.promote_projection('wi', 1);
});
my $w_consumer = session();
$w_consumer->query_safe('BEGIN');
is($w_consumer->query_safe('SELECT (SELECT count(*) FROM wa) + (SELECT count(*) FROM wi)'), '0',
	'a consumer reads both views');
# v2 of each, created at the head with its read model and check
sql(q{
	BEGIN;
	SELECT eventstore.create_projection('wa', 'noop', ARRAY['None'], version => 2,
										promote => 'auto');
	SELECT eventstore.create_projection('wi', 'noop', ARRAY['None'], mode => 'inline',
										version => 2, promote => 'auto');
	SELECT eventstore.set_read_model('wa', 2, 'public.wa_v2', 'public.wa');
	SELECT eventstore.set_read_model('wi', 2, 'public.wi_v2', 'public.wi');
	SELECT eventstore.add_projection_check('wa', 2, 'one row',
		'SELECT 1 FROM public.wa_v2 HAVING count(*) <> 1');
	SELECT eventstore.add_projection_check('wi', 2, 'one row',
		'SELECT 1 FROM public.wi_v2 HAVING count(*) <> 1');
	COMMIT;
});
is(sql(q{SELECT string_agg(status, ' ' ORDER BY name) FROM eventstore.projection_status
	WHERE version = 2 AND name IN ('wa', 'wi')}), 'active active', 'both start at the head');
ok(poll_sql(q{SELECT count(*) = 2 FROM eventstore.read_models
	WHERE version = 2 AND name IN ('wa', 'wi') AND promotion_pending
	  AND promotion_error = 'the view is in use; will try again'}),
	'the worker tried both, and did not wait for the views in use');
is(sql(q{SELECT eventstore.current_version('wa') || ' ' || eventstore.current_version('wi')}),
	'1 1', 'neither is promoted yet');
is(sql(q{SELECT count(*) FROM eventstore.read_models
	WHERE version = 2 AND name IN ('wa', 'wi') AND checked_at IS NULL}), '2',
	'and their checks do not run again and again while the views are in use');
$w_consumer->query_safe('COMMIT');
$w_consumer->quit;
ok(poll_sql(q{SELECT eventstore.current_version('wa') = 2 AND eventstore.current_version('wi') = 2}),
	'the worker promoted both once the consumer had committed');
is(sql(q{SELECT string_agg(promotion_pending || ' ' || coalesce(promotion_error, '-') || ' ' ||
		checks_passed, ',' ORDER BY name) FROM eventstore.read_models
	WHERE version = 2 AND name IN ('wa', 'wi')}), 'false - true,false - true',
	'nothing pending any more');
is(sql(q{SELECT string_agg(k::text, ',') FROM (SELECT k FROM wa UNION ALL SELECT k FROM wi) v}),
	'2,2', 'the views show v2');
my $checked = sql(q{SELECT string_agg(checked_at::text, ',' ORDER BY name) FROM eventstore.read_models
	WHERE version = 2 AND name IN ('wa', 'wi')});
sleep(1);
is(sql(q{SELECT string_agg(checked_at::text, ',' ORDER BY name) FROM eventstore.read_models
	WHERE version = 2 AND name IN ('wa', 'wi')}), $checked, 'idle turns after that run no checks');

# A consumer's open transaction has read the view: the promotion waits.
my $consumer = session();
$consumer->query_safe('BEGIN');
is($consumer->query_safe('SELECT count(*) FROM rm'), '100', 'a consumer reads the view');
my $err = sql_error(q{SET lock_timeout = '200ms'; SELECT eventstore.promote_projection('m', 2);});
is($err->{sqlstate}, '55P03', 'under lock_timeout the promotion gives up');
is(state_of_m(), 'v1:100 current=1 promotions=1', 'and changes nothing');

# SIGKILL of the promoting backend while it waits for the view.
my $promoter = session();
my $promoter_pid = $promoter->query_safe('SELECT pg_backend_pid()');
$promoter->query_until(qr/promoting/, qq{\\echo promoting\nSELECT eventstore.promote_projection('m', 2);\n});
ok(poll_sql(qq{SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $promoter_pid}),
	'the promotion waits for the consumer');
crash_and_wait($promoter_pid);
eval { $consumer->quit };
eval { $promoter->quit };
is(state_of_m(), 'v1:100 current=1 promotions=1',
	'a promoting backend killed with SIGKILL: v1 throughout');

# An immediate shutdown with the promotion done, not committed.
$promoter = session();
$promoter->query_safe('BEGIN');
$promoter->query_safe(q{SELECT eventstore.promote_projection('m', 2)});
is($promoter->query_safe('SELECT count(*) FROM rm WHERE version = \'v2\''), '100',
	'inside the promotion\'s transaction the view shows v2');
$node->stop('immediate');
eval { $promoter->quit };
$node->start;
is(state_of_m(), 'v1:100 current=1 promotions=1',
	'an immediate shutdown before the commit: v1, no promotion recorded');

# Committed, then an immediate shutdown.
sql(q{SELECT eventstore.promote_projection('m', 2)});
$node->stop('immediate');
$node->start;
is(state_of_m(), 'v2:100 current=2 promotions=2',
	'a committed promotion survives an immediate shutdown: v2 and its record');

# promote => 'auto' with the worker.  v1 counts the events per stream.
sql(q{
	CREATE TABLE counts_v1 (stream_id text PRIMARY KEY, n bigint NOT NULL);
	CREATE TABLE counts_v2 (stream_id text PRIMARY KEY, n bigint NOT NULL);
	CREATE TABLE counts_v3 (stream_id text PRIMARY KEY, n bigint NOT NULL);
	CREATE FUNCTION count_v1(e eventstore.events) RETURNS void LANGUAGE sql AS $$
		INSERT INTO public.counts_v1 VALUES (e.stream_id, 1)
		ON CONFLICT (stream_id) DO UPDATE SET n = counts_v1.n + 1 $$;
	-- v2 does the same set-based
	CREATE FUNCTION count_v2(es eventstore.events[]) RETURNS void LANGUAGE sql AS $$
		INSERT INTO public.counts_v2 SELECT stream_id, count(*) FROM unnest(es) GROUP BY 1
		ON CONFLICT (stream_id) DO UPDATE SET n = counts_v2.n + excluded.n $$;
	-- v3 counts one too many for every stream
	CREATE FUNCTION count_v3(es eventstore.events[]) RETURNS void LANGUAGE sql AS $$
		INSERT INTO public.counts_v3 SELECT stream_id, count(*) + 1 FROM unnest(es) GROUP BY 1
		ON CONFLICT (stream_id) DO UPDATE SET n = counts_v3.n + excluded.n - 1 $$;
	SELECT eventstore.create_projection('counts', 'count_v1', ARRAY['Counted']);
	SELECT eventstore.set_read_model('counts', 1, 'public.counts_v1', 'public.counts');
	SELECT eventstore.promote_projection('counts', 1);
	SELECT count(eventstore.append_event('s-' || (g % 50), 'Counted', '{}'))
	FROM generate_series(1, 2000) g;
});
ok(poll_sql(q{SELECT lag_events = 0 FROM eventstore.projection_status
	WHERE name = 'counts' AND version = 1}), 'the worker keeps v1 up to date');

# v2, its read model and its parity check in one transaction: the worker
# sees them together.
my $offset = -s $node->logfile;
sql(q{
	BEGIN;
	SELECT eventstore.create_projection('counts', 'count_v2', ARRAY['Counted'], version => 2,
										promote => 'auto');
	SELECT eventstore.set_read_model('counts', 2, 'public.counts_v2', 'public.counts');
	SELECT eventstore.add_projection_check('counts', 2, 'parity with v1',
		$$SELECT * FROM eventstore.compare_read_models('public.counts_v1', 'public.counts_v2')
		  WHERE NOT identical$$);
	COMMIT;
});
ok(poll_sql(q{SELECT eventstore.current_version('counts') = 2}),
	'auto: the worker promoted v2 once it reached the head');
is(sql(q{SELECT status || ' ' || promoted || ' ' || checks_passed
	FROM eventstore.projection_status WHERE name = 'counts' AND version = 2}),
	'active true true', 'v2 is active, promoted, its check passed');
like(sql(q{SELECT pg_get_viewdef('public.counts'::regclass)}), qr/counts_v2/,
	'the view shows v2');
is(sql(q{SELECT automatic || ' ' || from_version FROM eventstore.projection_promotions
	WHERE name = 'counts' ORDER BY promotion_id DESC LIMIT 1}), 'true 1',
	'recorded as an automatic promotion from v1');
ok($node->wait_for_log(qr/projection "counts" version 2 reached the head, passed its checks and was promoted/,
	$offset), 'the server log says so');

# v3 fails its check: it stays unpromoted, the worker goes on.
$offset = -s $node->logfile;
sql(q{
	BEGIN;
	SELECT eventstore.create_projection('counts', 'count_v3', ARRAY['Counted'], version => 3,
										promote => 'auto');
	SELECT eventstore.set_read_model('counts', 3, 'public.counts_v3', 'public.counts');
	SELECT eventstore.add_projection_check('counts', 3, 'parity with v1',
		$$SELECT * FROM eventstore.compare_read_models('public.counts_v1', 'public.counts_v3')
		  WHERE NOT identical$$);
	COMMIT;
});
ok(poll_sql(q{SELECT checks_passed IS NOT NULL FROM eventstore.projection_status
	WHERE name = 'counts' AND version = 3}), 'the worker ran v3\'s check at the head');
is(sql(q{SELECT status || ' ' || promoted || ' ' || checks_passed || ' ' ||
		(check_results -> 0 ->> 'check_name') || ' ' || (check_results -> 0 ->> 'failing_rows') || ' ' ||
		(check_results -> 0 -> 'sample' -> 0 ->> 'only_in_a')
	FROM eventstore.projection_status WHERE name = 'counts' AND version = 3}),
	'active false false parity with v1 1 50', 'v3 stays unpromoted, with the failing check, count and sample');
ok($node->wait_for_log(qr/WARNING:  projection "counts" version 3 reached the head but was not promoted: check "parity with v1" failed/,
	$offset), 'a WARNING in the server log');
ok($node->wait_for_log(qr/DETAIL:  It returned 1 failing row: \[\{"rows_a": 50/, $offset),
	'with the failing rows in its detail, in the server log only');
is(sql(q{SELECT eventstore.current_version('counts')}), '2', 'v2 stays current');
sql(q{SELECT eventstore.append_event('s-1', 'Counted', '{}')});
ok(poll_sql(q{SELECT bool_and(lag_events = 0) FROM eventstore.projection_status WHERE name = 'counts'}),
	'the worker goes on applying every version');

# A dump restored into another database keeps the promotions, checks and
# read models (names, not oids) and the view.
my $dump = $node->basedir . '/promotion.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('postgres') ],
	'pg_dump of the database');
sql('CREATE DATABASE restored');
$node->command_ok([ 'pg_restore', '-d', $node->connstr('restored'), $dump ],
	'pg_restore into another database');
is(sql_in('restored', q{
	SELECT eventstore.current_version('counts') || ' ' ||
		   (SELECT count(*) FROM eventstore.projection_checks WHERE name = 'counts') || ' ' ||
		   (SELECT string_agg(read_model, ',' ORDER BY version) FROM eventstore.projection_status
			WHERE name = 'counts') || ' ' ||
		   (SELECT identical FROM eventstore.compare_read_models('public.counts_v2', 'public.counts'))}),
	'2 2 public.counts_v1,public.counts_v2,public.counts_v3 true',
	'restored: v2 promoted, the checks, the read models and the view');
is(sql_in('restored', q{SELECT check_name, passed FROM eventstore.check_projection('counts', 2)}),
	'parity with v1|t', 'restored: the checks run');

$node->stop;
done_testing();
