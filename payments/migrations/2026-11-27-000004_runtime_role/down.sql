-- Nothing to undo: the runtime role never needs the migration history.
SELECT 1;
