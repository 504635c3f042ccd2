ALTER TABLE items DROP COLUMN traceparent;
