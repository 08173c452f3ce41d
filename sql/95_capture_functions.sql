-- Every tracked table is brought up to date on every install, once the grants are in place: its
-- entry (a new release may name its key differently: recorded as audit.tracked_table_altered) and
-- its capture functions, which a new release may change (the event triggers do both on every change
-- of a tracked table meanwhile).
SELECT @schema@._refresh_tracking(t.relid, true) FROM @schema@.tracked_tables t;
-- What their key and tenant columns are made of, for the tables tracked before it was kept (migration
-- 0024); the event triggers keep it from then on (_take_name_types).
UPDATE @schema@.tracked_tables t SET name_types = @schema@._name_types(t.relid, t.tenant_attnum) WHERE t.name_types IS NULL;
