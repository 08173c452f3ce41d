-- Every event has its id from the moment it is written, captured ones too (they were given one
-- only when sealed, so a pending captured event could not be named). Events captured before this
-- release and still pending get theirs when sealed, as before: the intake is never updated.
ALTER TABLE event_intake ALTER COLUMN id SET DEFAULT gen_random_uuid();
