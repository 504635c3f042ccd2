-- The audit log: one record per state-changing request, hash-chained (ADR 0016).
-- (Identical in every context's schema.)
CREATE TABLE audit_events (
    seq        bigint PRIMARY KEY,
    at         timestamptz NOT NULL,
    subject    text NOT NULL,
    program    text,
    action     text NOT NULL,
    resource   text NOT NULL,
    outcome    text NOT NULL CHECK (outcome IN ('succeeded', 'refused', 'failed')),
    status     integer NOT NULL,
    request_id text NOT NULL,
    source     text NOT NULL,
    prev_hash  text NOT NULL,
    hash       text NOT NULL UNIQUE
);

-- Append-only for every role, the owner included: updates, deletes and truncation are
-- refused. (A superuser can still disable triggers; the hash chain shows what it did.)
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();

-- The runtime role may only add and read records.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'accounts_app') THEN
        REVOKE UPDATE, DELETE, TRUNCATE ON audit_events FROM accounts_app;
    END IF;
END $$;
