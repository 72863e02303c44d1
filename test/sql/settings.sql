-- The settings: their values as defined, and pg_eventstore.databases refused
-- when it is not a list of names (its check hook runs when it is set, so a
-- bad list never reaches the launcher).
SELECT name, setting, unit, context, min_val, max_val
FROM pg_settings WHERE name LIKE 'pg\_eventstore.%' ORDER BY name;

-- not a list of names: an unterminated quote, an empty name
ALTER SYSTEM SET pg_eventstore.databases = 'app, "reports';
ALTER SYSTEM SET pg_eventstore.databases = 'app,,reports';
-- a list, quoted names and the empty list are fine
ALTER SYSTEM SET pg_eventstore.databases = 'app, "Reports", other';
ALTER SYSTEM SET pg_eventstore.databases = '';
ALTER SYSTEM RESET pg_eventstore.databases;

-- the other settings keep their bounds
ALTER SYSTEM SET pg_eventstore.max_workers = 0;
SET pg_eventstore.batch_size = 0;
SET pg_eventstore.poll_interval = '1s';
-- archival and retention: a batch of at least one event, a pass at most
-- once a second, no negative throttle
SET pg_eventstore.maintenance_batch_size = 0;
ALTER SYSTEM SET pg_eventstore.retention_interval = 0;
ALTER SYSTEM SET pg_eventstore.maintenance_throttle = -1;
