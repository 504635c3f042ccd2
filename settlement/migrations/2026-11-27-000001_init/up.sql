-- settlement: merchant batches of captured payments, fees and net amounts.

CREATE TABLE batches (
    id           uuid PRIMARY KEY,
    merchant_id  text        NOT NULL,
    currency     text        NOT NULL,
    status       text        NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    gross        bigint      NOT NULL DEFAULT 0,
    fees         bigint      NOT NULL DEFAULT 0,
    net          bigint      NOT NULL DEFAULT 0,
    item_count   integer     NOT NULL DEFAULT 0,
    run_id       uuid,
    created_at   timestamptz NOT NULL DEFAULT now(),
    closed_at    timestamptz
);
-- at most one open batch per merchant and currency
CREATE UNIQUE INDEX batches_one_open_idx ON batches (merchant_id, currency) WHERE status = 'open';
CREATE INDEX batches_merchant_idx ON batches (merchant_id, id);

-- Every capture appears in exactly one batch (the primary key is the capture id).
CREATE TABLE items (
    capture_id        uuid PRIMARY KEY,
    authorization_id  uuid        NOT NULL,
    account_id        uuid        NOT NULL,
    merchant_id       text        NOT NULL,
    mcc               text        NOT NULL,
    batch_id          uuid        NOT NULL REFERENCES batches (id),
    amount            bigint      NOT NULL CHECK (amount > 0),
    fee               bigint      NOT NULL CHECK (fee >= 0),
    currency          text        NOT NULL,
    captured_at       timestamptz NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX items_batch_idx ON items (batch_id);

CREATE TABLE runs (
    id          uuid PRIMARY KEY,
    cutoff      timestamptz NOT NULL,
    batch_ids   uuid[]      NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Transactional outbox, relayed to RabbitMQ.
CREATE TABLE outbox (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id      uuid        NOT NULL UNIQUE,
    event_type    text        NOT NULL,
    payload       jsonb       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    leased_until  timestamptz,
    published_at  timestamptz
);
CREATE INDEX outbox_unpublished_idx ON outbox (id) WHERE published_at IS NULL;
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_notify('outbox_' || TG_TABLE_SCHEMA, ''); RETURN NULL; END $$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

-- Inbox: ids of the events already applied (idempotent consumers).
CREATE TABLE inbox (
    event_id     uuid PRIMARY KEY,
    event_type   text        NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);
