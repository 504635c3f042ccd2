-- payments: authorizations, holds and captures, decided from local projections.

-- Projection of accounts' account events (newest sequence wins).
CREATE TABLE account_projection (
    account_id      uuid PRIMARY KEY,
    currency        text        NOT NULL,
    credit_limit    bigint      NOT NULL,
    posted_balance  bigint      NOT NULL,
    status          text        NOT NULL,
    version         bigint      NOT NULL,
    -- approved, not yet posted: open authorization remainders plus captured-but-unposted amounts
    held            bigint      NOT NULL DEFAULT 0 CHECK (held >= 0)
);

-- Projection of accounts' card events.
CREATE TABLE card_projection (
    card_id     uuid PRIMARY KEY,
    account_id  uuid    NOT NULL,
    status      text    NOT NULL,
    version     bigint  NOT NULL
);

CREATE TABLE authorizations (
    id               uuid PRIMARY KEY,
    card_id          uuid        NOT NULL,
    account_id       uuid        NOT NULL,
    status           text        NOT NULL CHECK (status IN ('approved', 'declined')),
    decline_code     text,
    amount           bigint      NOT NULL CHECK (amount > 0),
    currency         text        NOT NULL,
    captured_amount  bigint      NOT NULL DEFAULT 0 CHECK (captured_amount >= 0 AND captured_amount <= amount),
    merchant         jsonb       NOT NULL,
    version          bigint      NOT NULL DEFAULT 1,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX authorizations_account_idx ON authorizations (account_id);

CREATE TABLE captures (
    id                uuid PRIMARY KEY,
    authorization_id  uuid        NOT NULL REFERENCES authorizations (id),
    amount            bigint      NOT NULL CHECK (amount > 0),
    currency          text        NOT NULL,
    posted            boolean     NOT NULL DEFAULT false,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX captures_authorization_idx ON captures (authorization_id);

-- Idempotency keys: the stored response of every create, replayed for the same request.
CREATE TABLE idempotency_keys (
    subject       text        NOT NULL,
    operation     text        NOT NULL,
    key           text        NOT NULL,
    request_hash  text        NOT NULL,
    status_code   integer     NOT NULL,
    response      jsonb       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subject, operation, key)
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
