-- The demo's shopping-cart domain: a command handler that decides each cart's
-- next event from its stream and appends it with optimistic concurrency.
-- Run by pgbench from several clients at once, so carts see real conflicts.
CREATE SCHEMA IF NOT EXISTS demo;

CREATE TABLE IF NOT EXISTS demo.conflicts (
	at		timestamptz NOT NULL DEFAULT now(),
	cart	text NOT NULL,
	detail	text NOT NULL
);

CREATE OR REPLACE FUNCTION demo.handle_command(cart_no integer)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	cart		text := 'cart-' || cart_no;
	rev			bigint := eventstore.stream_revision(cart);
	last_type	text;
	items		integer;
	sku			text := 'SKU-' || (1 + floor(random() * 40))::int;
BEGIN
	IF rev IS NULL THEN
		PERFORM eventstore.append_event(cart, 'CartOpened',
			jsonb_build_object('customer', 'customer-' || (cart_no % 50)),
			jsonb_build_object('source', 'demo'), -1);
		RETURN;
	END IF;

	SELECT e.event_type INTO last_type
	FROM eventstore.read_stream(cart, NULL, 1, true) e;
	IF last_type = 'CheckedOut' THEN
		RETURN;					-- a closed cart takes no more commands
	END IF;

	SELECT count(*) FILTER (WHERE e.event_type = 'ItemAdded')
		 - count(*) FILTER (WHERE e.event_type = 'ItemRemoved')
	INTO items FROM eventstore.read_stream(cart) e;

	IF items >= 3 AND random() < 0.1 THEN
		PERFORM eventstore.append_event(cart, 'CheckedOut',
			jsonb_build_object('items', items), NULL, rev);
	ELSIF items > 0 AND random() < 0.2 THEN
		PERFORM eventstore.append_event(cart, 'ItemRemoved',
			jsonb_build_object('sku', sku), NULL, rev);
	ELSE
		PERFORM eventstore.append_event(cart, 'ItemAdded',
			jsonb_build_object('sku', sku, 'qty', 1 + floor(random() * 3)::int,
							   'price_cents', 199 + floor(random() * 5000)::int),
			NULL, rev);
	END IF;
EXCEPTION WHEN SQLSTATE 'SE001' THEN
	-- another client changed the cart since we read it: a real conflict,
	-- caught by the expected revision instead of silently interleaving
	GET STACKED DIAGNOSTICS last_type = PG_EXCEPTION_DETAIL;
	INSERT INTO demo.conflicts (cart, detail) VALUES (cart, last_type);
END;
$$;

-- A read model kept by a consumer of the global log, the way any client
-- would: claim the processor, read pages from its checkpoint, apply them,
-- store the checkpoint in the same transaction.
CREATE TABLE IF NOT EXISTS demo.cart_totals (
	cart			text PRIMARY KEY,
	items			integer NOT NULL DEFAULT 0,
	value_cents		bigint NOT NULL DEFAULT 0,
	checked_out		boolean NOT NULL DEFAULT false
);

CREATE OR REPLACE PROCEDURE demo.follow_cart_totals(instance text, page integer DEFAULT 500)
LANGUAGE plpgsql AS $$
DECLARE
	checkpoint	bigint;
	last_seen	bigint;
	e			eventstore.events;
BEGIN
	IF NOT eventstore.claim_processor('cart-totals', instance) THEN
		RAISE NOTICE 'cart-totals is being followed by another instance';
		RETURN;
	END IF;
	LOOP
		checkpoint := eventstore.read_checkpoint('cart-totals');
		last_seen := NULL;
		FOR e IN SELECT * FROM eventstore.read_all(checkpoint, page) LOOP
			INSERT INTO demo.cart_totals AS t (cart) VALUES (e.stream_id)
			ON CONFLICT (cart) DO NOTHING;
			UPDATE demo.cart_totals t SET
				items = items + CASE e.event_type WHEN 'ItemAdded' THEN (e.data->>'qty')::int
												  WHEN 'ItemRemoved' THEN -1 ELSE 0 END,
				value_cents = value_cents + CASE e.event_type
					WHEN 'ItemAdded' THEN (e.data->>'qty')::int * (e.data->>'price_cents')::bigint
					ELSE 0 END,
				checked_out = checked_out OR e.event_type = 'CheckedOut'
			WHERE t.cart = e.stream_id;
			last_seen := e.global_position;
		END LOOP;
		EXIT WHEN last_seen IS NULL;
		IF eventstore.store_checkpoint('cart-totals', last_seen, checkpoint) <> 'stored' THEN
			ROLLBACK;
			EXIT;
		END IF;
		COMMIT;
	END LOOP;
	PERFORM eventstore.release_processor('cart-totals', instance);
	COMMIT;
END $$;
