DROP INDEX outbox_subject_idx;
DROP INDEX outbox_published_idx;
ALTER TABLE outbox DROP COLUMN retry_at, DROP COLUMN attempts;
