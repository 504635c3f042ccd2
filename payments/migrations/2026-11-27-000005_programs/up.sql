-- Programs (tenants), ADR 0018: a card's program comes with its `card_issued` event
-- (cards projected before programs existed, and events naming none, are the default
-- program's); an authorization keeps its card's program, so reads and captures are
-- checked without the projection.
ALTER TABLE card_projection ADD COLUMN program_id text NOT NULL DEFAULT 'default';
ALTER TABLE authorizations ADD COLUMN program_id text NOT NULL DEFAULT 'default';
