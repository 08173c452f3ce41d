-- Privileges, applied last on every install, so that they cover every function defined before.
-- (Functions of the capture, sealer, pruner and sandbox roles are granted where they are defined:
-- only their owner may.)

REVOKE ALL ON SCHEMA @schema@ FROM PUBLIC;
GRANT USAGE ON SCHEMA @schema@ TO @schema@_writer, @schema@_reader, @schema@_maintainer, @schema@_secrets,
    @schema@_capture, @schema@_sealer, @schema@_pruner;
-- The installer let the function roles create their functions; that is done now. The capture role
-- generates capture functions in its own schema, and creates nothing here.
REVOKE CREATE ON SCHEMA @schema@ FROM @schema@_capture, @schema@_sealer, @schema@_pruner, @schema@_sandbox;
REVOKE USAGE ON SCHEMA @schema@ FROM @schema@_sandbox;
REVOKE ALL ON ALL TABLES IN SCHEMA @schema@ FROM PUBLIC, @schema@_writer, @schema@_reader, @schema@_maintainer,
    @schema@_secrets, @schema@_capture, @schema@_sealer, @schema@_pruner, @schema@_sandbox;
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid FROM pg_proc p
              WHERE p.pronamespace = '@schema@'::regnamespace AND p.proowner = '@schema@_owner'::regrole LOOP
        EXECUTE format('REVOKE ALL ON ROUTINE %s FROM PUBLIC, @schema@_writer, @schema@_reader, @schema@_maintainer,'
                       ' @schema@_secrets, @schema@_capture, @schema@_sealer, @schema@_pruner, @schema@_sandbox', f);
    END LOOP;
END
$$;

-- Not even the owner may rewrite events or the chain: only the roles of the privileged functions
-- write them (the guards check the same).
REVOKE UPDATE, DELETE, TRUNCATE ON @schema@.event_intake FROM @schema@_owner;
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON @schema@.event_log, @schema@.blocks, @schema@.prune_points,
    @schema@.quarantine FROM @schema@_owner;
-- Archive records change only through the archive functions' own updates.
REVOKE TRUNCATE ON @schema@.archive_batches, @schema@.restored_events FROM @schema@_owner;

-- The roles of the privileged functions: exactly what those functions do.
GRANT SELECT ON @schema@.tracked_tables TO @schema@_capture;
GRANT INSERT ON @schema@.event_intake TO @schema@_capture;
GRANT SELECT, INSERT, DELETE ON @schema@.event_intake TO @schema@_sealer;  -- INSERT: audit.event_quarantined
GRANT SELECT, INSERT ON @schema@.event_log TO @schema@_sealer;  -- SELECT: its RETURNING hashes the rows
GRANT INSERT ON @schema@.quarantine TO @schema@_sealer;
GRANT SELECT, INSERT ON @schema@.blocks TO @schema@_sealer;
GRANT SELECT, UPDATE ON @schema@.seal_state TO @schema@_sealer;
GRANT SELECT ON @schema@.event_types TO @schema@_sealer, @schema@_pruner;
GRANT SELECT, DELETE ON @schema@.event_log, @schema@.idempotency_keys TO @schema@_pruner;
GRANT SELECT ON @schema@.events, @schema@.event_intake, @schema@.blocks TO @schema@_pruner;
GRANT SELECT, INSERT ON @schema@.prune_points TO @schema@_pruner;
GRANT INSERT ON @schema@.event_intake TO @schema@_pruner;  -- audit.pruned, audit.archive_deleted
GRANT SELECT, UPDATE ON @schema@.archive_batches TO @schema@_pruner;
-- Helpers that run with their caller's rights add no right to it; the roles of the privileged
-- functions may call them all. The SECURITY DEFINER helpers stay the owner's.
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid FROM pg_proc p
              WHERE p.pronamespace = '@schema@'::regnamespace AND p.proowner = '@schema@_owner'::regrole
                AND p.proname LIKE '\_%' AND NOT p.prosecdef AND p.prokind = 'f' LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO @schema@_capture, @schema@_sealer, @schema@_pruner', f);
    END LOOP;
END
$$;

GRANT EXECUTE ON FUNCTION @schema@.record(text, text, text, text, text, text, jsonb, text, text, text),
    @schema@.rate_limit(text, text, integer, integer)
    TO @schema@_writer;

GRANT SELECT ON @schema@.events, @schema@.event_types, @schema@.event_type_drift, @schema@.tracked_tables,
    @schema@.blocks, @schema@.prune_points, @schema@.rate_limits, @schema@.archive_batches, @schema@.archive_settings,
    @schema@.restored_events, @schema@.quarantine
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
    @schema@._tracking_of(oid),
    @schema@.archive_lines(bigint, bigint)
    TO @schema@_reader;

GRANT EXECUTE ON FUNCTION
    @schema@.register_event_type(text, jsonb, boolean)
    TO @schema@_maintainer;
GRANT EXECUTE ON PROCEDURE @schema@.seal_backlog(integer) TO @schema@_maintainer;
GRANT EXECUTE ON FUNCTION
    @schema@.set_archive_settings(interval, integer, integer),
    @schema@.next_archive_batch(interval),
    @schema@.record_archive_batch(text, text, bigint, bigint, bytea, bytea, bytea, bytea),
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
    @schema@._cover_partition(oid),
    @schema@._attach_capture(oid),
    @schema@._capture_tables(oid),
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
