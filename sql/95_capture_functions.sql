-- Every capture function is generated again on every install, once the grants are in place: a new
-- release may change what they do (the event triggers regenerate them on every change of a tracked
-- table meanwhile).
SELECT @schema@._generate_capture(c) FROM @schema@.tracked_tables t, @schema@._capture_tables(t.relid) c
 WHERE EXISTS (SELECT 1 FROM pg_class r WHERE r.oid = c);
