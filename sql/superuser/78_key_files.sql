-- Server-key mode: the secrets functions (owned by @schema@_owner) read master keys from files
-- on the server. Only a superuser can grant that; the path is only ever one registered by a
-- superuser or a member of pg_read_server_files (add_master_key checks).
GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_binary_file(text) TO @schema@_owner;
GRANT pg_read_server_files TO @schema@_owner;
