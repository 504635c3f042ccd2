DROP TABLE inbox;
DROP TRIGGER outbox_notify ON outbox;
DROP FUNCTION outbox_notify();
DROP TABLE outbox;
DROP TABLE idempotency_keys;
DROP TABLE captures;
DROP TABLE authorizations;
DROP TABLE card_projection;
DROP TABLE account_projection;
