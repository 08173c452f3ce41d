-- Server-key mode: the secrets functions (owned by @schema@_owner) read master keys from files
-- on the server. Only a superuser can grant that, and it is granted only when server keys are in
-- use: asked for (pgaudit-install --server-keys), or a key file registered. Never revoked here:
-- roles belong to the cluster, and another database's installation may use a key file (status
-- warns when this one holds it and uses none). The path is only ever one registered by a
-- superuser or a member of pg_read_server_files (add_master_key checks).
DO $$
BEGIN
    IF @server_keys@ OR EXISTS (SELECT 1 FROM @schema@.master_keys m WHERE m.key_file IS NOT NULL AND m.state <> 'retired') THEN
        GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_binary_file(text) TO @schema@_owner;
        IF NOT pg_has_role('@schema@_owner', 'pg_read_server_files', 'MEMBER') THEN
            GRANT pg_read_server_files TO @schema@_owner;
        END IF;
    END IF;
END
$$;
