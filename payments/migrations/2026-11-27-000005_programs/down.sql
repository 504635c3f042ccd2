ALTER TABLE authorizations DROP COLUMN program_id;
ALTER TABLE card_projection DROP COLUMN program_id;
