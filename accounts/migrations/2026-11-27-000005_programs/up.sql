-- Programs (tenants): every account belongs to one (ADR 0018). Accounts opened before
-- programs existed belong to the default program.
ALTER TABLE accounts ADD COLUMN program_id text NOT NULL DEFAULT 'default';
CREATE INDEX accounts_program_idx ON accounts (program_id);
