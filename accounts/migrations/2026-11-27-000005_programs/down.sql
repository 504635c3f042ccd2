DROP INDEX accounts_program_idx;
ALTER TABLE accounts DROP COLUMN program_id;
