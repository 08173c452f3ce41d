-- Privileges, applied last on every install, so that they cover every function defined before.

REVOKE ALL ON SCHEMA @schema@ FROM PUBLIC;
GRANT USAGE ON SCHEMA @schema@ TO @schema@_writer, @schema@_reader, @schema@_maintainer, @schema@_secrets;
REVOKE ALL ON ALL TABLES IN SCHEMA @schema@ FROM PUBLIC, @schema@_writer, @schema@_reader, @schema@_maintainer,
    @schema@_secrets;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA @schema@ FROM PUBLIC, @schema@_writer, @schema@_reader, @schema@_maintainer,
    @schema@_secrets;
REVOKE ALL ON ALL PROCEDURES IN SCHEMA @schema@ FROM PUBLIC, @schema@_writer, @schema@_reader, @schema@_maintainer,
    @schema@_secrets;
-- Not even the owner may rewrite events; DELETE stays for seal and prune, behind the guards.
REVOKE UPDATE, TRUNCATE ON @schema@.event_intake, @schema@.event_log, @schema@.blocks, @schema@.prune_points
    FROM @schema@_owner;
REVOKE DELETE ON @schema@.blocks, @schema@.prune_points FROM @schema@_owner;
-- Archive records change only through the archive functions' own updates.
REVOKE TRUNCATE ON @schema@.archive_batches, @schema@.restored_events FROM @schema@_owner;

GRANT EXECUTE ON FUNCTION @schema@.record(text, text, text, text, text, text, jsonb, text, text, text),
    @schema@.rate_limit(text, text, integer, integer)
    TO @schema@_writer;

GRANT SELECT ON @schema@.events, @schema@.event_types, @schema@.event_type_drift, @schema@.tracked_tables,
    @schema@.blocks, @schema@.prune_points, @schema@.rate_limits, @schema@.archive_batches, @schema@.archive_settings,
    @schema@.restored_events
    TO @schema@_reader;
GRANT EXECUTE ON FUNCTION
    @schema@.list_events(text, text, text, text, text, text, text, text, timestamptz, timestamptz, bigint, bigint, integer),
    @schema@.count_events(text, timestamptz, timestamptz, text[]),
    @schema@.monthly_event_counts(text, integer, text[]),
    @schema@.preview_prune(interval, integer),
    @schema@.seal_status(),
    @schema@.verify(bigint, bigint),
    @schema@._prunable_blocks(timestamptz),
    @schema@._check_prefixes(text[]),
    @schema@._changed(jsonb, jsonb),
    @schema@._check_prune_args(interval, integer),
    @schema@.row_history(regclass, text),
    @schema@.row_as_of(regclass, text, timestamptz),
    @schema@._history_target(regclass, text),
    @schema@._key_columns(regclass),
    @schema@.archive_lines(bigint, bigint)
    TO @schema@_reader;

GRANT EXECUTE ON FUNCTION
    @schema@.seal(integer),
    @schema@.prune_events(interval, integer),
    @schema@.register_event_type(text, jsonb, boolean)
    TO @schema@_maintainer;
GRANT EXECUTE ON PROCEDURE @schema@.seal_backlog(integer) TO @schema@_maintainer;
GRANT EXECUTE ON FUNCTION
    @schema@.set_archive_settings(interval, integer, integer),
    @schema@.next_archive_batch(interval),
    @schema@.record_archive_batch(text, text, bigint, bigint, bytea, bytea, bytea, bytea),
    @schema@.delete_archived(text),
    @schema@.restore_archive_batch(text, jsonb[]),
    @schema@.drop_restored_batch(text),
    @schema@.claim_daily_archive_run()
    TO @schema@_maintainer;
-- enable_tracking runs as its caller (who must own the table to attach triggers to it); the
-- catalogue changes it makes go through the SECURITY DEFINER helpers, which record them.
GRANT EXECUTE ON FUNCTION
    @schema@.enable_tracking(regclass, text[], text[], text, boolean, text),
    @schema@.disable_tracking(regclass),
    @schema@._register_tracking(@schema@.tracked_tables),
    @schema@._unregister_tracking(oid, text),
    @schema@._capture_truncate(),
    @schema@._check_kind(text, text),
    @schema@._capture_function(oid),
    @schema@.enable_rate_limit(regclass, integer, integer, integer),
    @schema@.disable_rate_limit(regclass),
    @schema@.set_operation_limit(text, integer, integer),
    @schema@._put_rate_limit(@schema@.rate_limits),
    @schema@._drop_rate_limit(text, text),
    @schema@._rate_limit_trigger()
    TO @schema@_maintainer;

-- Secrets: only the secrets role, which neither the reader nor the maintainer holds.
GRANT EXECUTE ON FUNCTION
    @schema@.declare_secret(text, text),
    @schema@.put_secret(text, text, text),
    @schema@.read_secret(text, text),
    @schema@.delete_secret(text, text),
    @schema@.list_secrets(text),
    @schema@.add_master_key(text),
    @schema@.rotate_master_key(integer),
    @schema@.rotate_tenant_key(text, integer)
    TO @schema@_secrets;
