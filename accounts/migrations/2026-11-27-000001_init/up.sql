-- accounts: business accounts, their cards, and the double-entry ledger.
CREATE TABLE accounts (
    id             uuid PRIMARY KEY,
    legal_name     text        NOT NULL,
    currency       text        NOT NULL,
    credit_limit   bigint      NOT NULL CHECK (credit_limit >= 0),
    status         text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'closed')),
    -- sequence of this aggregate's events (account opened = 1, each posting + 1)
    version        bigint      NOT NULL DEFAULT 1,
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE cards (
    id               uuid PRIMARY KEY,
    account_id       uuid        NOT NULL REFERENCES accounts (id),
    cardholder_name  text        NOT NULL,
    -- the PAN, encrypted by the Vault transit engine; never stored in the clear
    pan_ciphertext   text        NOT NULL,
    -- keyed HMAC of the PAN (Vault transit, pinned key version) for duplicate detection
    pan_fingerprint  text        NOT NULL UNIQUE,
    bin              text        NOT NULL,
    last4            text        NOT NULL,
    expiry_month     integer     NOT NULL CHECK (expiry_month BETWEEN 1 AND 12),
    expiry_year      integer     NOT NULL,
    status           text        NOT NULL DEFAULT 'active',
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cards_account_idx ON cards (account_id);

-- Double-entry journal: every posting writes balanced debit and credit lines.
CREATE TABLE ledger_entries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    journal_id      uuid        NOT NULL,
    account_id      uuid        NOT NULL REFERENCES accounts (id),
    ledger_account  text        NOT NULL,
    direction       text        NOT NULL CHECK (direction IN ('debit', 'credit')),
    amount          bigint      NOT NULL CHECK (amount > 0),
    currency        text        NOT NULL,
    payment_id      uuid        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- a payment is posted once: the second attempt fails here even if the inbox were bypassed
    UNIQUE (payment_id, ledger_account, direction)
);
CREATE INDEX ledger_entries_account_idx ON ledger_entries (account_id, id);

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
