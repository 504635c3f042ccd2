-- Outbox: retries of rows the broker did not take, pruning, and the compacted history.
-- (Identical in every context's schema.)

-- A row the broker returned (unroutable) or nacked is given back and retried after a
-- delay that grows with its attempts, so it neither spins the relay nor blocks the rows
-- behind it.
ALTER TABLE outbox
    ADD COLUMN attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN retry_at timestamptz;

-- Pruning walks the published rows in (published_at, id) order.
CREATE INDEX outbox_published_idx ON outbox (published_at, id) WHERE published_at IS NOT NULL;

-- The newest snapshot event per subject: kept by pruning, read by history().
CREATE INDEX outbox_subject_idx ON outbox ((payload->>'subject'), id);
