-- Per-tenant secrets under envelope encryption (pgcrypto). The format is in docs/secrets.md.
--
-- A master key is 32 random bytes, never stored: either the server reads it from a key file
-- (server-key mode; the key never crosses the connection) or the client holds it for its session
-- with hold_master_key (client-key mode). Each tenant has data keys, stored only wrapped by
-- a master key; values are encrypted under the tenant's data key. Every blob is
-- AES-256-CBC then HMAC-SHA-256 over what it is bound to (tenant, slot, versions), so a changed
-- or moved ciphertext is an error, never garbage.

-- pgcrypto's functions, bound once and for all by oid (SQL-standard bodies are parsed when they are
-- created): a later rename of the schema pgcrypto lives in, and a look-alike put under its old
-- name, changes nothing. Dropping pgcrypto needs CASCADE, which drops these (status says so).
CREATE OR REPLACE FUNCTION @schema@._hmac_sha256(data bytea, key bytea)
RETURNS bytea
LANGUAGE sql
IMMUTABLE STRICT
BEGIN ATOMIC
    SELECT @pgcrypto@.hmac(data, key, 'sha256'::text);
END;
COMMENT ON FUNCTION @schema@._hmac_sha256(bytea, bytea) IS 'HMAC-SHA-256 (pgcrypto, bound by oid).';

CREATE OR REPLACE FUNCTION @schema@._random_bytes(n integer)
RETURNS bytea
LANGUAGE sql
VOLATILE STRICT
BEGIN ATOMIC
    SELECT @pgcrypto@.gen_random_bytes(n);
END;
COMMENT ON FUNCTION @schema@._random_bytes(integer) IS 'Cryptographically random bytes (pgcrypto, bound by oid).';

CREATE OR REPLACE FUNCTION @schema@._aes_cbc(data bytea, key bytea, iv bytea, encrypt boolean)
RETURNS bytea
LANGUAGE sql
IMMUTABLE STRICT
BEGIN ATOMIC
    SELECT CASE WHEN encrypt THEN @pgcrypto@.encrypt_iv(data, key, iv, 'aes-cbc/pad:pkcs'::text)
                ELSE @pgcrypto@.decrypt_iv(data, key, iv, 'aes-cbc/pad:pkcs'::text) END;
END;
COMMENT ON FUNCTION @schema@._aes_cbc(bytea, bytea, bytea, boolean) IS
    'AES-256-CBC with PKCS padding, encrypting or decrypting (pgcrypto, bound by oid).';

-- Encrypt-then-MAC. blob = 0x01 || iv (16) || AES-256-CBC ciphertext || HMAC-SHA-256 (32).
CREATE OR REPLACE FUNCTION @schema@._encrypt(p_key bytea, p_bound bytea, p_plain bytea)
RETURNS bytea
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    iv bytea := @schema@._random_bytes(16);
    body bytea;
BEGIN
    body := decode('01', 'hex') || iv || @schema@._aes_cbc(p_plain, @schema@._hmac_sha256('pgaudit_py enc'::bytea, p_key), iv, true);
    RETURN body || @schema@._hmac_sha256(p_bound || body, @schema@._hmac_sha256('pgaudit_py mac'::bytea, p_key));
END
$$;
COMMENT ON FUNCTION @schema@._encrypt(bytea, bytea, bytea) IS
    'Encrypts and authenticates p_plain under p_key, bound to p_bound (docs/secrets.md).';

CREATE OR REPLACE FUNCTION @schema@._decrypt(p_key bytea, p_bound bytea, p_blob bytea, p_what text)
RETURNS bytea
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer := octet_length(p_blob);
    body bytea;
BEGIN
    IF n < 1 + 16 + 16 + 32 OR get_byte(p_blob, 0) <> 1 THEN
        RAISE EXCEPTION '% is not in a format pgaudit_py wrote', p_what USING ERRCODE = 'PA012';
    END IF;
    body := substring(p_blob FROM 1 FOR n - 32);
    IF @schema@._hmac_sha256(p_bound || body, @schema@._hmac_sha256('pgaudit_py mac'::bytea, p_key))
       <> substring(p_blob FROM n - 31) THEN
        RAISE EXCEPTION '% does not authenticate: it was changed, or moved from another tenant or slot', p_what
            USING ERRCODE = 'PA012';
    END IF;
    RETURN @schema@._aes_cbc(substring(body FROM 18), @schema@._hmac_sha256('pgaudit_py enc'::bytea, p_key),
                             substring(body FROM 2 FOR 16), false);
END
$$;
COMMENT ON FUNCTION @schema@._decrypt(bytea, bytea, bytea, text) IS
    'Checks and decrypts a blob written by _encrypt; raises PA012 if it does not authenticate.';

CREATE OR REPLACE FUNCTION @schema@._key_fingerprint(p_key bytea)
RETURNS bytea
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT @schema@._hmac_sha256('pgaudit_py master key fingerprint v1'::bytea, p_key) $$;
COMMENT ON FUNCTION @schema@._key_fingerprint(bytea) IS 'Identifies a master key without revealing it.';

-- Key text to bytes. Never quotes the text: it may be a key, or the wrong file's content.
CREATE OR REPLACE FUNCTION @schema@._parse_key(p_text text, p_source text)
RETURNS bytea
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t text := btrim(p_text, E' \t\r\n');
BEGIN
    IF t !~ '^[0-9A-Fa-f]{64}$' THEN
        RAISE EXCEPTION '% does not hold a master key (64 hexadecimal digits)', p_source
            USING ERRCODE = 'PA011', HINT = 'pgaudit secrets keygen FILE writes a new key.';
    END IF;
    RETURN decode(t, 'hex');
END
$$;
COMMENT ON FUNCTION @schema@._parse_key(text, text) IS 'Decodes a 64-hex-digit master key.';

CREATE OR REPLACE FUNCTION @schema@._read_key_file(p_path text)
RETURNS bytea
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    content bytea;
BEGIN
    BEGIN
        content := pg_read_binary_file(p_path);
    EXCEPTION WHEN insufficient_privilege THEN
        RAISE EXCEPTION 'the server may not read key files' USING ERRCODE = 'PA011',
            HINT = 'As a superuser: pgaudit-install --server-keys (it lets @schema@_owner read server files).';
    WHEN OTHERS THEN
        RAISE EXCEPTION 'the server cannot read key file %: %', p_path, SQLERRM USING ERRCODE = 'PA011';
    END;
    IF octet_length(content) > 256 THEN
        RAISE EXCEPTION 'key file % does not hold a master key (64 hexadecimal digits)', p_path
            USING ERRCODE = 'PA011';
    END IF;
    RETURN @schema@._parse_key(convert_from(content, 'SQL_ASCII'), format('key file %s', p_path));
END
$$;
COMMENT ON FUNCTION @schema@._read_key_file(text) IS 'Reads a master key from a file on the server.';

-- Client-key mode: the keys a session holds, in a temporary table of the owner role's. Not in a
-- setting, which any code the session runs could read (current_setting in a trigger or a column
-- default of another role's table). NULL when the table is not the owner role's own (the session
-- made one of that name first, to read what would be put in it).
CREATE OR REPLACE FUNCTION @schema@._held_keys_table()
RETURNS regclass
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.oid::regclass FROM pg_class c
     WHERE c.oid = to_regclass('pg_temp.pgaudit_py_master_keys') AND c.relkind = 'r'
       AND c.relowner = '@schema@_owner'::regrole
       AND NOT EXISTS (SELECT 1 FROM pg_trigger g WHERE g.tgrelid = c.oid)
       AND NOT EXISTS (SELECT 1 FROM pg_rewrite w WHERE w.ev_class = c.oid)
$$;
COMMENT ON FUNCTION @schema@._held_keys_table() IS 'The session''s table of held master keys, if it is the owner role''s own.';

-- Holds `key` for this session as its master key (which => 'master_key') or the new one it rotates
-- to (which => 'new_master_key'); '' or NULL forgets it. Transactional: rolled back, nothing held.
CREATE OR REPLACE FUNCTION @schema@.hold_master_key(key text, which text DEFAULT 'master_key')
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k bytea;
    held regclass;
BEGIN
    IF which IS NULL OR which NOT IN ('master_key', 'new_master_key') THEN
        -- Never the value given: a key passed in this argument's place would be in the error and the log.
        RAISE EXCEPTION 'which key: master_key or new_master_key' USING ERRCODE = 'PA005';
    END IF;
    IF coalesce(key, '') <> '' THEN
        k := @schema@._parse_key(key, format('the %s given', which));
    END IF;
    -- The table is the session's and may not be there yet: named in dynamic statements only.
    IF to_regclass('pg_temp.pgaudit_py_master_keys') IS NULL THEN
        EXECUTE 'CREATE TEMPORARY TABLE pgaudit_py_master_keys (which text PRIMARY KEY, key bytea NOT NULL)';
    END IF;
    held := @schema@._held_keys_table();
    IF held IS NULL THEN
        RAISE EXCEPTION 'pg_temp.pgaudit_py_master_keys was made by another role: no key is held in it'
            USING ERRCODE = 'PA011';
    END IF;
    EXECUTE format('DELETE FROM %s h WHERE h.which = $1', held) USING which;
    IF k IS NOT NULL THEN
        EXECUTE format('INSERT INTO %s VALUES ($1, $2)', held) USING which, k;
    END IF;
END
$$;
COMMENT ON FUNCTION @schema@.hold_master_key(text, text) IS
    'Client-key mode: holds a master key (or the new one, to rotate to) for this session, where no other code can read it.';
REVOKE ALL ON FUNCTION @schema@.hold_master_key(text, text) FROM PUBLIC;

-- The keys this session holds (hold_master_key): its master key and, while rotating, the new one.
DROP FUNCTION IF EXISTS @schema@._session_keys();  -- read the settings pgaudit_py.master_key and .new_master_key
CREATE OR REPLACE FUNCTION @schema@._session_keys(which text DEFAULT NULL)
RETURNS bytea[]
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    keys bytea[];
    held regclass := @schema@._held_keys_table();
BEGIN
    IF held IS NULL THEN
        RETURN '{}';
    END IF;
    EXECUTE format('SELECT coalesce(pg_catalog.array_agg(h.key ORDER BY h.which), ''{}'') FROM %s h'
                   ' WHERE $1 IS NULL OR h.which = $1', held)
       INTO keys USING which;
    RETURN keys;
END
$$;
COMMENT ON FUNCTION @schema@._session_keys(text) IS 'Master keys the client holds in this session (hold_master_key).';

CREATE OR REPLACE FUNCTION @schema@._master_key(p_version integer)
RETURNS bytea
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mk @schema@.master_keys;
    k bytea;
    supplied bytea[];
BEGIN
    SELECT * INTO mk FROM @schema@.master_keys WHERE version = p_version;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no master key is set up' USING ERRCODE = 'PA011',
            HINT = 'pgaudit secrets init adds the first master key.';
    ELSIF mk.state = 'retired' THEN
        RAISE EXCEPTION 'master key version % was retired at %', p_version, mk.retired_at USING ERRCODE = 'PA011';
    END IF;
    IF mk.key_file IS NOT NULL THEN
        k := @schema@._read_key_file(mk.key_file);
        IF @schema@._key_fingerprint(k) <> mk.fingerprint THEN
            RAISE EXCEPTION 'key file % no longer holds master key version %', mk.key_file, p_version
                USING ERRCODE = 'PA011';
        END IF;
        RETURN k;
    END IF;
    supplied := @schema@._session_keys();
    FOREACH k IN ARRAY supplied LOOP
        IF @schema@._key_fingerprint(k) = mk.fingerprint THEN
            RETURN k;
        END IF;
    END LOOP;
    IF cardinality(supplied) > 0 THEN
        RAISE EXCEPTION 'the master key supplied is not master key version % (wrong key?)', p_version
            USING ERRCODE = 'PA011';
    END IF;
    RAISE EXCEPTION 'master key version % is not available in this session', p_version USING ERRCODE = 'PA011',
        HINT = 'In client-key mode, hold it with audit.hold_master_key and a bound parameter '
               '(pgaudit_py.secrets.use_master_key in Python; --master-key-file or PGAUDIT_MASTER_KEY for '
               'pgaudit secrets). The setting pgaudit_py.master_key is read no more.';
END
$$;
COMMENT ON FUNCTION @schema@._master_key(integer) IS
    'The master key of a version, from its key file or from the session; PA011 if not available.';

-- The master key of a version if this session can use it, else NULL (one key read, not two).
CREATE OR REPLACE FUNCTION @schema@._try_master_key(p_version integer)
RETURNS bytea
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN @schema@._master_key(p_version);
EXCEPTION WHEN SQLSTATE 'PA011' THEN
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION @schema@._try_master_key(integer) IS 'The master key of a version, or NULL if not available here.';

-- What a blob is bound to: its parts, NUL-separated (text cannot hold NUL). docs/secrets.md.
CREATE OR REPLACE FUNCTION @schema@._bound(VARIADIC p_parts text[])
RETURNS bytea
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT string_agg(convert_to(p, 'UTF8'), decode('00', 'hex') ORDER BY n) FROM unnest(p_parts) WITH ORDINALITY AS u(p, n) $$;

CREATE OR REPLACE FUNCTION @schema@._wrap_bound(p_tenant text, p_version integer, p_master_version integer)
RETURNS bytea
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT @schema@._bound('data-key', p_tenant, p_version::text, p_master_version::text) $$;

CREATE OR REPLACE FUNCTION @schema@._value_bound(p_tenant text, p_slot text, p_version integer)
RETURNS bytea
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT @schema@._bound('value', p_tenant, p_slot, p_version::text) $$;

-- A tenant's data key of a version, unwrapped with whichever master key this session can use.
CREATE OR REPLACE FUNCTION @schema@._data_key(p_tenant text, p_version integer)
RETURNS bytea
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    w @schema@.wrapped_data_keys;
    first_version integer;
    mk bytea;
BEGIN
    FOR w IN SELECT * FROM @schema@.wrapped_data_keys
              WHERE tenant_id = p_tenant AND version = p_version ORDER BY master_version LOOP
        first_version := coalesce(first_version, w.master_version);
        mk := @schema@._try_master_key(w.master_version);
        IF mk IS NOT NULL THEN
            RETURN @schema@._decrypt(mk, @schema@._wrap_bound(p_tenant, p_version, w.master_version),
                                     w.wrapped, format('the data key of tenant %s (version %s)', p_tenant, p_version));
        END IF;
    END LOOP;
    IF first_version IS NULL THEN
        RAISE EXCEPTION 'data key version % of tenant % is gone (rotated away)', p_version, p_tenant
            USING ERRCODE = 'PA012';
    END IF;
    PERFORM @schema@._master_key(first_version);  -- raises the reason
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION @schema@._data_key(text, integer) IS 'Unwraps a tenant''s data key.';

-- Wraps a data key under every master version in use that this session holds (at least one);
-- during a master rotation, rotate_master_key adds the wrappings a writer could not make.
CREATE OR REPLACE FUNCTION @schema@._wrap_data_key(p_tenant text, p_version integer, p_key bytea)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v integer;
    mk bytea;
    wrapped integer := 0;
BEGIN
    -- FOR SHARE: a rotation cannot retire a master version while a wrapping under it is in flight
    -- (a version retired meanwhile no longer matches the WHERE when the lock is granted).
    FOR v IN SELECT m.version FROM @schema@.master_keys m WHERE m.state <> 'retired' ORDER BY m.version FOR SHARE LOOP
        mk := @schema@._try_master_key(v);
        CONTINUE WHEN mk IS NULL;
        INSERT INTO @schema@.wrapped_data_keys (tenant_id, version, master_version, wrapped)
        VALUES (p_tenant, p_version, v, @schema@._encrypt(mk, @schema@._wrap_bound(p_tenant, p_version, v), p_key))
        ON CONFLICT DO NOTHING;
        wrapped := wrapped + 1;
    END LOOP;
    IF wrapped = 0 THEN
        PERFORM @schema@._master_key(coalesce(
            (SELECT version FROM @schema@.master_keys WHERE state = 'active'), 0));  -- raises the reason
    END IF;
END
$$;
COMMENT ON FUNCTION @schema@._wrap_data_key(text, integer, bytea) IS
    'Stores a data key wrapped under the master keys this session holds.';

-- The tenant's newest data key, created (version 1) on the tenant's first secret.
CREATE OR REPLACE FUNCTION @schema@._current_data_key(p_tenant text, OUT version integer, OUT key bytea)
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    LOOP
        -- KEY SHARE: a finishing rotation cannot delete the version this write is about to use.
        SELECT d.version INTO version FROM @schema@.data_keys d
         WHERE d.tenant_id = p_tenant ORDER BY d.version DESC LIMIT 1 FOR KEY SHARE;
        IF FOUND THEN
            key := @schema@._data_key(p_tenant, version);
            RETURN;
        END IF;
        INSERT INTO @schema@.data_keys (tenant_id, version) VALUES (p_tenant, 1) ON CONFLICT DO NOTHING;
        IF FOUND THEN
            version := 1;
            key := @schema@._random_bytes(32);
            PERFORM @schema@._wrap_data_key(p_tenant, 1, key);
            RETURN;
        END IF;
        -- Another writer created it meanwhile: read theirs.
    END LOOP;
END
$$;
COMMENT ON FUNCTION @schema@._current_data_key(text) IS 'The newest data key of a tenant, created if none.';

CREATE OR REPLACE FUNCTION @schema@._check_secret_args(p_tenant text, p_key text)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_tenant IS NULL OR p_tenant = '' OR char_length(p_tenant) > 256 THEN
        RAISE EXCEPTION 'tenant_id must be 1 to 256 characters' USING ERRCODE = 'PA005';
    END IF;
    IF p_key IS NULL OR NOT EXISTS (SELECT 1 FROM @schema@.secret_slots s WHERE s.key = p_key) THEN
        -- Never the slot given: a value passed in its place would be in the error and the log.
        RAISE EXCEPTION 'this secret slot is not declared'
            USING ERRCODE = 'PA013', HINT = 'Declare it first: audit.declare_secret(key, description).';
    END IF;
END
$$;
COMMENT ON FUNCTION @schema@._check_secret_args(text, text) IS 'Refuses an empty tenant or an undeclared slot.';

CREATE OR REPLACE FUNCTION @schema@.declare_secret(key text, description text)
RETURNS @schema@.secret_slots
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    result @schema@.secret_slots;
BEGIN
    IF declare_secret.key IS NULL OR declare_secret.key !~ '^[A-Za-z][A-Za-z0-9_.-]*$'
       OR char_length(declare_secret.key) > 128 THEN
        RAISE EXCEPTION 'invalid secret slot name'
            USING ERRCODE = 'PA005', HINT = 'A letter, then letters, digits, _ . or -; at most 128 characters.';
    END IF;
    IF coalesce(btrim(declare_secret.description), '') = '' THEN
        RAISE EXCEPTION 'a secret slot needs a description' USING ERRCODE = 'PA005';
    END IF;
    INSERT INTO @schema@.secret_slots AS s (key, description, declared_by)
    VALUES (declare_secret.key, declare_secret.description, @schema@._db_role())
    ON CONFLICT (key) DO UPDATE SET description = excluded.description
    RETURNING * INTO result;
    PERFORM @schema@._record('secret.slot_declared', NULL, NULL, NULL, 'secret', result.key,
                             jsonb_build_object('description', result.description), 'success', NULL, NULL);
    RETURN result;
END
$$;
COMMENT ON FUNCTION @schema@.declare_secret(text, text) IS
    'Declares (or re-describes) a secret slot; only declared slots can be written.';

CREATE OR REPLACE FUNCTION @schema@.put_secret(tenant_id text, key text, value text)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    dk record;
    replaced boolean;
BEGIN
    PERFORM @schema@._check_secret_args(put_secret.tenant_id, put_secret.key);
    IF value IS NULL OR octet_length(value) > 65536 THEN
        RAISE EXCEPTION 'a secret value must be given and at most 64 KiB' USING ERRCODE = 'PA005';
    END IF;
    dk := @schema@._current_data_key(put_secret.tenant_id);
    replaced := EXISTS (SELECT 1 FROM @schema@.secret_values v
                         WHERE v.tenant_id = put_secret.tenant_id AND v.key = put_secret.key);
    INSERT INTO @schema@.secret_values AS v (tenant_id, key, key_version, ciphertext, written_by)
    VALUES (put_secret.tenant_id, put_secret.key, dk.version,
            @schema@._encrypt(dk.key, @schema@._value_bound(put_secret.tenant_id, put_secret.key, dk.version),
                              convert_to(value, 'UTF8')),
            @schema@._db_role())
    ON CONFLICT ON CONSTRAINT secret_values_pkey DO UPDATE
        SET key_version = excluded.key_version, ciphertext = excluded.ciphertext,
            written_at = now(), written_by = excluded.written_by;
    PERFORM @schema@._record('tenant.secret.written', put_secret.tenant_id, NULL, NULL, 'secret', put_secret.key,
                             jsonb_build_object('key_version', dk.version, 'replaced', replaced), 'success', NULL, NULL);
    RETURN dk.version;
END
$$;
COMMENT ON FUNCTION @schema@.put_secret(text, text, text) IS
    'Stores a tenant''s secret in a declared slot, encrypted under the tenant''s data key; '
    'records tenant.secret.written. Returns the data-key version used.';

CREATE OR REPLACE FUNCTION @schema@.read_secret(tenant_id text, key text)
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v @schema@.secret_values;
    plain bytea;
BEGIN
    PERFORM @schema@._check_secret_args(read_secret.tenant_id, read_secret.key);
    SELECT * INTO v FROM @schema@.secret_values s WHERE s.tenant_id = read_secret.tenant_id AND s.key = read_secret.key;
    IF FOUND THEN
        plain := @schema@._decrypt(@schema@._data_key(v.tenant_id, v.key_version),
                                   @schema@._value_bound(v.tenant_id, v.key, v.key_version), v.ciphertext,
                                   -- not the slot: it was given (docs/secrets.md), a rotation names it
                                   format('the secret asked of tenant %s', v.tenant_id));
    END IF;
    -- In the reading transaction: no event, no value.
    PERFORM @schema@._record('tenant.secret.read', read_secret.tenant_id, NULL, NULL, 'secret', read_secret.key,
                             jsonb_build_object('found', plain IS NOT NULL, 'key_version', v.key_version),
                             CASE WHEN plain IS NULL THEN 'failure' ELSE 'success' END, NULL, NULL);
    RETURN convert_from(plain, 'UTF8');
END
$$;
COMMENT ON FUNCTION @schema@.read_secret(text, text) IS
    'Decrypts a tenant''s secret (NULL if none is stored) and records tenant.secret.read in the same transaction.';

CREATE OR REPLACE FUNCTION @schema@.delete_secret(tenant_id text, key text)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    deleted boolean;
BEGIN
    PERFORM @schema@._check_secret_args(delete_secret.tenant_id, delete_secret.key);
    DELETE FROM @schema@.secret_values s WHERE s.tenant_id = delete_secret.tenant_id AND s.key = delete_secret.key;
    deleted := FOUND;
    IF deleted THEN
        PERFORM @schema@._record('tenant.secret.deleted', delete_secret.tenant_id, NULL, NULL, 'secret',
                                 delete_secret.key, '{}', 'success', NULL, NULL);
    END IF;
    RETURN deleted;
END
$$;
COMMENT ON FUNCTION @schema@.delete_secret(text, text) IS
    'Deletes a tenant''s secret; records tenant.secret.deleted. False if there was none.';

-- Listing is recorded as reading is (secret.listed, in the listing transaction: no event, no list),
-- with the number of rows returned: one statement, so that the count and the rows are read under
-- one snapshot (a second statement's snapshot could see a secret written meanwhile). The event is a
-- one-time condition of the result, recorded before any row is returned, whether or not there is one.
CREATE OR REPLACE FUNCTION @schema@.list_secrets(tenant_id text DEFAULT NULL)
RETURNS TABLE (tenant_id text, key text, description text, key_version integer, written_at timestamptz,
               written_by text)
LANGUAGE sql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH listed AS MATERIALIZED (
        SELECT v.tenant_id, v.key, s.description, v.key_version, v.written_at, v.written_by
          FROM @schema@.secret_values v JOIN @schema@.secret_slots s USING (key)
         WHERE $1 IS NULL OR v.tenant_id = $1
    ), recorded AS MATERIALIZED (
        SELECT (@schema@._record('secret.listed', $1, NULL, NULL, 'secret', NULL,
                                 jsonb_build_object('tenant_id', $1, 'count', (SELECT count(*) FROM listed)),
                                 'success', NULL, NULL)).kind IS NOT NULL AS done
    )
    SELECT l.* FROM listed l
     WHERE (SELECT r.done FROM recorded r)
     ORDER BY l.tenant_id, l.key
$$;
COMMENT ON FUNCTION @schema@.list_secrets(text) IS
    'Which secrets are stored, by tenant and slot; never values. Recorded as secret.listed.';

CREATE OR REPLACE FUNCTION @schema@.add_master_key(key_file text DEFAULT NULL)
RETURNS @schema@.master_keys
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k bytea;
    fp bytea;
    existing @schema@.master_keys;
    result @schema@.master_keys;
BEGIN
    IF key_file IS NOT NULL THEN
        -- Pointing the server at a file is for those who could read it themselves.
        IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = session_user)
           AND NOT pg_has_role(session_user, 'pg_read_server_files', 'USAGE') THEN
            RAISE EXCEPTION 'only a superuser or a member of pg_read_server_files may register a key file'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF key_file !~ '^/' THEN
            RAISE EXCEPTION 'key file must be an absolute path' USING ERRCODE = 'PA005';
        END IF;
        k := @schema@._read_key_file(key_file);
    ELSE
        k := (@schema@._session_keys('new_master_key'))[1];
        IF k IS NULL THEN
            RAISE EXCEPTION 'no new master key is held in this session' USING ERRCODE = 'PA011',
                HINT = 'hold_master_key(key, ''new_master_key'') first (pgaudit_py.secrets.use_master_key in Python).';
        END IF;
    END IF;
    fp := @schema@._key_fingerprint(k);
    LOCK TABLE @schema@.master_keys IN SHARE ROW EXCLUSIVE MODE;  -- one change of keys at a time
    SELECT * INTO existing FROM @schema@.master_keys m WHERE m.fingerprint = fp;
    IF FOUND AND existing.state = 'retired' THEN
        RAISE EXCEPTION 'this key is master key version %, retired: generate a new one', existing.version
            USING ERRCODE = 'PA005';
    ELSIF FOUND THEN
        RETURN existing;  -- already added (a resumed rotation)
    END IF;
    SELECT * INTO existing FROM @schema@.master_keys m WHERE m.state = 'next';
    IF FOUND THEN
        RAISE EXCEPTION 'a rotation to master key version % is in progress', existing.version USING ERRCODE = 'PA005',
            HINT = 'Finish it first (pgaudit secrets rotate-master, with both keys).';
    END IF;
    INSERT INTO @schema@.master_keys (version, fingerprint, key_file, state, added_by)
    SELECT coalesce(max(m.version), 0) + 1, fp, add_master_key.key_file,
           CASE WHEN bool_or(m.state = 'active') THEN 'next' ELSE 'active' END, @schema@._db_role()
      FROM @schema@.master_keys m
    RETURNING * INTO result;
    PERFORM @schema@._record('secret.master_key_added', NULL, NULL, NULL, 'master_key', result.version::text,
                             jsonb_build_object('state', result.state,
                                                'mode', CASE WHEN result.key_file IS NULL THEN 'client' ELSE 'server' END),
                             'success', NULL, NULL);
    RETURN result;
END
$$;
COMMENT ON FUNCTION @schema@.add_master_key(text) IS
    'Registers a master key: from a server key file (absolute path), or the new key the session holds '
    '(hold_master_key). The first becomes active; a later one starts a rotation (rotate_master_key).';

CREATE OR REPLACE FUNCTION @schema@.rotate_master_key(batch_size integer DEFAULT 100)
RETURNS @schema@.master_rotation
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    old_v integer;
    new_v integer;
    old_k bytea;
    new_k bytea;
    w record;
    dk bytea;
    result @schema@.master_rotation;
BEGIN
    IF batch_size IS NULL OR batch_size NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION 'batch_size must be between 1 and 10000' USING ERRCODE = 'PA005';
    END IF;
    SELECT version INTO old_v FROM @schema@.master_keys WHERE state = 'active';
    SELECT version INTO new_v FROM @schema@.master_keys WHERE state = 'next';
    IF new_v IS NULL THEN
        RETURN (old_v, old_v, 0, 0, true)::@schema@.master_rotation;  -- nothing in progress
    END IF;
    old_k := @schema@._master_key(old_v);
    new_k := @schema@._master_key(new_v);
    result := (old_v, new_v, 0, 0, false);
    FOR w IN SELECT o.* FROM @schema@.wrapped_data_keys o
              WHERE o.master_version = old_v
                AND NOT EXISTS (SELECT 1 FROM @schema@.wrapped_data_keys n
                                 WHERE (n.tenant_id, n.version, n.master_version) = (o.tenant_id, o.version, new_v))
              ORDER BY o.tenant_id, o.version LIMIT batch_size LOOP
        dk := @schema@._decrypt(old_k, @schema@._wrap_bound(w.tenant_id, w.version, old_v), w.wrapped,
                                format('the data key of tenant %s (version %s)', w.tenant_id, w.version));
        INSERT INTO @schema@.wrapped_data_keys (tenant_id, version, master_version, wrapped)
        VALUES (w.tenant_id, w.version, new_v, @schema@._encrypt(new_k, @schema@._wrap_bound(w.tenant_id, w.version, new_v), dk))
        ON CONFLICT DO NOTHING;
        result.rewrapped := result.rewrapped + 1;
    END LOOP;
    result.remaining := (SELECT count(*) FROM @schema@.data_keys k
                          WHERE NOT EXISTS (SELECT 1 FROM @schema@.wrapped_data_keys n
                                             WHERE (n.tenant_id, n.version, n.master_version) = (k.tenant_id, k.version, new_v)));
    IF result.remaining > 0 THEN
        RETURN result;
    END IF;
    -- Done, unless a writer is wrapping a new data key under the old version right now: wait for it.
    -- A rotation that finished meanwhile (this one waited on it) retired the old version: nothing is
    -- left to do, nor to record.
    PERFORM 1 FROM @schema@.master_keys WHERE version = old_v AND state = 'active' FOR UPDATE;
    IF NOT FOUND THEN
        result.done := true;
        RETURN result;
    END IF;
    result.remaining := (SELECT count(*) FROM @schema@.data_keys k
                          WHERE NOT EXISTS (SELECT 1 FROM @schema@.wrapped_data_keys n
                                             WHERE (n.tenant_id, n.version, n.master_version) = (k.tenant_id, k.version, new_v)));
    IF result.remaining > 0 THEN
        RETURN result;
    END IF;
    DELETE FROM @schema@.wrapped_data_keys WHERE master_version = old_v;
    UPDATE @schema@.master_keys SET state = 'retired', retired_at = now() WHERE version = old_v;
    UPDATE @schema@.master_keys SET state = 'active' WHERE version = new_v;
    PERFORM @schema@._record('secret.master_key_rotated', NULL, NULL, NULL, 'master_key', new_v::text,
                             jsonb_build_object('from_version', old_v, 'to_version', new_v), 'success', NULL, NULL);
    result.done := true;
    RETURN result;
END
$$;
COMMENT ON FUNCTION @schema@.rotate_master_key(integer) IS
    'One batch of a master-key rotation: wraps up to batch_size data keys under the new version too. '
    'When none is left, retires the old version. Needs both keys; commit between calls; resumable.';

CREATE OR REPLACE FUNCTION @schema@.rotate_tenant_key(tenant_id text, batch_size integer DEFAULT 100)
RETURNS @schema@.tenant_key_rotation
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t text := rotate_tenant_key.tenant_id;
    versions integer[];
    new_v integer;
    new_k bytea;
    v @schema@.secret_values;
    old_k bytea;
    plain bytea;
    result @schema@.tenant_key_rotation;
BEGIN
    IF batch_size IS NULL OR batch_size NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION 'batch_size must be between 1 and 10000' USING ERRCODE = 'PA005';
    END IF;
    -- One rotation per tenant at a time; NO KEY UPDATE does not block writers' KEY SHARE locks.
    -- A rotation waited on may have added or deleted versions the locking statement's snapshot
    -- missed: lock again until what is locked is what a fresh statement sees, which only READ
    -- COMMITTED gives (a snapshot taken before would never see another rotation's new version).
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'rotate_tenant_key must run at READ COMMITTED' USING ERRCODE = 'PA005';
    END IF;
    LOOP
        SELECT array_agg(d.version ORDER BY d.version) INTO versions
          FROM (SELECT d.version FROM @schema@.data_keys d WHERE d.tenant_id = t FOR NO KEY UPDATE) d;
        EXIT WHEN versions IS NOT DISTINCT FROM
                  (SELECT array_agg(d.version ORDER BY d.version) FROM @schema@.data_keys d WHERE d.tenant_id = t);
    END LOOP;
    IF versions IS NULL THEN
        RAISE EXCEPTION 'this tenant has no data key (no secret was ever stored)' USING ERRCODE = 'PA005';
    END IF;
    new_v := versions[cardinality(versions)];
    IF cardinality(versions) = 1 THEN  -- start a rotation
        new_v := new_v + 1;
        new_k := @schema@._random_bytes(32);
        INSERT INTO @schema@.data_keys (tenant_id, version) VALUES (t, new_v);
        PERFORM @schema@._wrap_data_key(t, new_v, new_k);
    ELSE
        new_k := @schema@._data_key(t, new_v);
    END IF;
    result := (t, versions[1], new_v, 0, 0, false);
    -- A rotation in progress has exactly two versions: every value not at the new one is at the old.
    old_k := @schema@._data_key(t, versions[1]);
    FOR v IN SELECT * FROM @schema@.secret_values s WHERE s.tenant_id = t AND s.key_version < new_v
              ORDER BY s.key LIMIT batch_size FOR UPDATE LOOP
        plain := @schema@._decrypt(old_k, @schema@._value_bound(t, v.key, v.key_version), v.ciphertext,
                                   format('the secret %s of tenant %s', v.key, t));
        UPDATE @schema@.secret_values s
           SET key_version = new_v,
               ciphertext = @schema@._encrypt(new_k, @schema@._value_bound(t, v.key, new_v), plain)
         WHERE s.tenant_id = t AND s.key = v.key;
        result.reencrypted := result.reencrypted + 1;
    END LOOP;
    result.remaining := (SELECT count(*) FROM @schema@.secret_values s WHERE s.tenant_id = t AND s.key_version < new_v);
    IF result.remaining > 0 THEN
        RETURN result;
    END IF;
    BEGIN
        DELETE FROM @schema@.data_keys d WHERE d.tenant_id = t AND d.version < new_v;
    EXCEPTION WHEN foreign_key_violation THEN
        result.remaining := 1;  -- a concurrent write used the old version: the next batch takes it
        RETURN result;
    END;
    PERFORM @schema@._record('tenant.data_key.rotated', t, NULL, NULL, 'data_key', new_v::text,
                             jsonb_build_object('from_version', versions[1], 'to_version', new_v), 'success', NULL, NULL);
    result.done := true;
    RETURN result;
END
$$;
COMMENT ON FUNCTION @schema@.rotate_tenant_key(text, integer) IS
    'One batch of a tenant''s data-key rotation (the first call creates the new key): re-encrypts up to '
    'batch_size values; when none is left, deletes the old key. Commit between calls; resumable.';
