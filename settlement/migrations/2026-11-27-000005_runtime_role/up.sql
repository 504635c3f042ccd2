-- The runtime role neither reads nor changes the migration history (ADR 0017). The
-- default privileges gave it DML on that table when the first migration made it.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'settlement_app') THEN
        REVOKE ALL ON __diesel_schema_migrations FROM settlement_app;
    END IF;
END $$;
