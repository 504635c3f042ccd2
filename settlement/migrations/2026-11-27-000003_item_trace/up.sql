-- The W3C trace context of the capture each item came from, so the settlement run
-- continues each payment's trace when it settles the item.
ALTER TABLE items ADD COLUMN traceparent text;
