-- A target type or a failure is often rare (the refunds among the orders, the few failed logins),
-- and list_events with either alone read the log newest first until it had a page: 208 ms for a
-- target type on one event in 10,000 at ten million events (bench/scale.py). Their own indexes,
-- newest first: target types are few, so the first grows at a handful of right edges; the second
-- holds failures only, and a success costs it one check.
CREATE INDEX event_log_target_type_seq ON event_log (target_type, seq);
CREATE INDEX event_log_failure_seq ON event_log (seq) WHERE outcome = 'failure';
