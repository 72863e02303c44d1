-- The demo's projections, kept inside PostgreSQL by pg_eventstore.
--
-- cart-summary (inline): each cart's items, value and state, updated in the
--   very transaction that appends the cart's event, so a command handler
--   reads its own writes.
-- sku-sales (async, version 1): units and revenue per SKU, applied by the
--   background worker in batches with a set-based handler.
-- Version 2 of sku-sales, which also counts removals, is created later
-- while the workload runs (see demo.sh): it builds from the start of the
-- log while version 1 keeps serving through the view demo.sales.
-- checkout-mails (inline): queues a mail per checkout, once, however often
-- it is rebuilt.
--
-- Handlers run as the role that created the projection, with the
-- search_path and settings of the session that created it (pg_temp last),
-- whoever appends or drives them.  These name their schema anyway.

CREATE TABLE demo.cart_summary (
	cart		text PRIMARY KEY,
	items		integer NOT NULL DEFAULT 0,
	value_cents	bigint NOT NULL DEFAULT 0,
	state		text NOT NULL DEFAULT 'open'
);

CREATE FUNCTION demo.apply_cart_summary(e eventstore.events)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO demo.cart_summary AS s (cart) VALUES (e.stream_id)
	ON CONFLICT (cart) DO NOTHING;
	UPDATE demo.cart_summary s SET
		items = s.items + CASE e.event_type
			WHEN 'ItemAdded' THEN (e.data->>'qty')::int
			WHEN 'ItemRemoved' THEN -1 ELSE 0 END,
		value_cents = s.value_cents + CASE e.event_type
			WHEN 'ItemAdded' THEN (e.data->>'qty')::int * (e.data->>'price_cents')::bigint
			ELSE 0 END,
		state = CASE WHEN e.event_type = 'CheckedOut' THEN 'checked out' ELSE s.state END
	WHERE s.cart = e.stream_id;
END $$;

SELECT eventstore.create_projection('cart-summary', 'demo.apply_cart_summary',
	mode => 'inline', on_reset => 'TRUNCATE demo.cart_summary') \g /dev/null
CREATE TABLE demo.sku_sales (
	sku				text PRIMARY KEY,
	units			bigint NOT NULL,
	revenue_cents	bigint NOT NULL
);

-- A batch handler: one set-based statement per batch of events.
CREATE FUNCTION demo.apply_sku_sales(events eventstore.events[])
RETURNS void LANGUAGE sql AS $$
	INSERT INTO demo.sku_sales AS s (sku, units, revenue_cents)
	SELECT e.data->>'sku', sum((e.data->>'qty')::int),
		   sum((e.data->>'qty')::int * (e.data->>'price_cents')::bigint)
	FROM pg_catalog.unnest(events) e
	GROUP BY 1
	ON CONFLICT (sku) DO UPDATE SET
		units = s.units + excluded.units,
		revenue_cents = s.revenue_cents + excluded.revenue_cents;
$$;

SELECT eventstore.create_projection('sku-sales', 'demo.apply_sku_sales',
	event_types => ARRAY['ItemAdded'], on_reset => 'TRUNCATE demo.sku_sales') \g /dev/null
-- Consumers never query demo.sku_sales itself: they query the stable view
-- demo.sales, which each promotion re-points at the promoted version's
-- table (checked first: see demo/promotion.sql).
SELECT eventstore.set_read_model('sku-sales', 1, 'demo.sku_sales', 'demo.sales') \g /dev/null
SELECT eventstore.promote_projection('sku-sales', 1) \g /dev/null
-- Version 2's read model: removals counted too, in a column added at the
-- end, so the view can stand on it.  Its first handler has a bug: it takes
-- removals off the units sold.  A check catches it before promotion.
CREATE TABLE demo.sku_sales_v2 (
	sku				text PRIMARY KEY,
	units			bigint NOT NULL,
	revenue_cents	bigint NOT NULL,
	removals		bigint NOT NULL
);

CREATE FUNCTION demo.apply_sku_sales_v2(events eventstore.events[])
RETURNS void LANGUAGE sql AS $$
	INSERT INTO demo.sku_sales_v2 AS s (sku, units, revenue_cents, removals)
	SELECT e.data->>'sku',
		   coalesce(sum((e.data->>'qty')::int) FILTER (WHERE e.event_type = 'ItemAdded'), 0)
			 - count(*) FILTER (WHERE e.event_type = 'ItemRemoved'),	-- the bug
		   coalesce(sum((e.data->>'qty')::int * (e.data->>'price_cents')::bigint)
					FILTER (WHERE e.event_type = 'ItemAdded'), 0),
		   count(*) FILTER (WHERE e.event_type = 'ItemRemoved')
	FROM pg_catalog.unnest(events) e
	GROUP BY 1
	ON CONFLICT (sku) DO UPDATE SET
		units = s.units + excluded.units,
		revenue_cents = s.revenue_cents + excluded.revenue_cents,
		removals = s.removals + excluded.removals;
$$;

-- checkout-mails (inline): a handler with a side effect.  Each checkout
-- queues a mail in demo.outbox, in the appending transaction (a
-- transactional outbox), and counts checkouts per customer.  When the
-- projection is rebuilt, eventstore.replaying() is true for the events it
-- applies again: the counts are rebuilt, no mail is queued twice.
CREATE TABLE demo.checkouts_per_cart (
	cart		text PRIMARY KEY,
	checkouts	integer NOT NULL
);
CREATE TABLE demo.outbox (
	mail_id		bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	event_id	uuid NOT NULL,
	cart		text NOT NULL,
	queued_at	timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE FUNCTION demo.on_checkout(e eventstore.events)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO demo.checkouts_per_cart AS c VALUES (e.stream_id, 1)
	ON CONFLICT (cart) DO UPDATE SET checkouts = c.checkouts + 1;
	IF NOT eventstore.replaying() THEN
		INSERT INTO demo.outbox (event_id, cart) VALUES (e.event_id, e.stream_id);
	END IF;
END $$;

SELECT eventstore.create_projection('checkout-mails', 'demo.on_checkout',
	ARRAY['CheckedOut'], mode => 'inline',
	on_reset => 'TRUNCATE demo.checkouts_per_cart') \g /dev/null