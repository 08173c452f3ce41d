-- Tokens of the HTTP API: created and revoked by a maintainer, each change an event; the server
-- asks authenticate_api_token with the SHA-256 of what a request carried. The token itself is made
-- by the client (pgaudit_py/tokens.py) and never reaches the database, its logs or its events.

CREATE OR REPLACE FUNCTION @schema@._token_shown(t @schema@.api_tokens)
RETURNS @schema@.api_token
LANGUAGE sql
IMMUTABLE
AS $$
    -- An expiry past the year 9999 ('infinity', which earlier releases took) shows as none, which is
    -- what it means: a client's time type stops there (Python's datetime does).
    SELECT ROW(t.token_id, t.name, t.role, t.tenant_id, t.created_at, t.created_by,
               CASE WHEN t.expires_at < '9999-01-01 00:00:00+00' THEN t.expires_at END, t.revoked_at,
               t.revoked_by)::@schema@.api_token
$$;
COMMENT ON FUNCTION @schema@._token_shown(@schema@.api_tokens) IS 'A token row without its hash.';

-- A token's event names the database role that acted, in the token's tenant or none: never what
-- the session's pgaudit_py.* settings claim (a tenant's readers would see another's token). The
-- session's tenant setting is set aside for the call and put back.
CREATE OR REPLACE FUNCTION @schema@._token_event(kind text, t @schema@.api_tokens, payload jsonb)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM @schema@._record(kind, t.tenant_id, 'db_role', @schema@._db_role(), 'api_token', t.token_id, payload,
                             'success', NULL, NULL);
END
$$;
COMMENT ON FUNCTION @schema@._token_event(text, @schema@.api_tokens, jsonb) IS
    'Records a token''s creation or revocation, attributed to the acting database role.';

CREATE OR REPLACE FUNCTION @schema@.create_api_token(token_id text, name text, role text, token_sha256 bytea,
                                                     tenant_id text DEFAULT NULL,
                                                     expires_at timestamptz DEFAULT NULL)
RETURNS @schema@.api_token
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t @schema@.api_tokens;
BEGIN
    IF create_api_token.token_id IS NULL OR create_api_token.token_id !~ '^[0-9a-f]{12}$' THEN
        RAISE EXCEPTION 'a token id is 12 lowercase hexadecimal digits' USING ERRCODE = 'PA005';
    ELSIF strpos(lower(create_api_token.name), 'pga_') > 0
          OR regexp_replace(create_api_token.name, '[-._@]', '', 'g') ~* '[0-9a-f]{32}' THEN
        -- A token pasted where its name goes would be kept, and recorded, for good. Not repeated.
        RAISE EXCEPTION 'a token name may not hold what a token holds' USING ERRCODE = 'PA005';
    ELSIF create_api_token.name IS NULL OR create_api_token.name !~ '^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$' THEN
        RAISE EXCEPTION 'invalid token name' USING ERRCODE = 'PA005', HINT = 'A name is 1 to 128 letters, digits, _ . @ -, starting with a letter or digit.';
    ELSIF create_api_token.name ~* '^[0-9a-f]{12}$' THEN  -- in any case: revoke reads one as an id
        RAISE EXCEPTION 'a token name may not look like a token id (twelve hex digits)' USING ERRCODE = 'PA005';
    ELSIF create_api_token.role IS NULL OR create_api_token.role NOT IN ('reader', 'maintainer') THEN
        RAISE EXCEPTION 'a token''s role is reader or maintainer' USING ERRCODE = 'PA005';
    ELSIF create_api_token.token_sha256 IS NULL OR octet_length(create_api_token.token_sha256) <> 32 THEN
        RAISE EXCEPTION 'token_sha256 is a SHA-256 digest (32 bytes)' USING ERRCODE = 'PA005';
    ELSIF create_api_token.tenant_id IS NOT NULL AND create_api_token.role <> 'reader' THEN
        RAISE EXCEPTION 'only a reader token may be bound to a tenant' USING ERRCODE = 'PA005',
            HINT = 'A maintainer token runs the archiver, which covers every tenant.';
    ELSIF create_api_token.tenant_id IS NOT NULL AND char_length(create_api_token.tenant_id) NOT BETWEEN 1 AND 256 THEN
        RAISE EXCEPTION 'tenant_id is 1 to 256 characters' USING ERRCODE = 'PA005';
    ELSIF create_api_token.expires_at <= now() THEN
        RAISE EXCEPTION 'expires_at is not in the future' USING ERRCODE = 'PA005';
    ELSIF create_api_token.expires_at >= '9999-01-01 00:00:00+00' THEN  -- 'infinity' too
        RAISE EXCEPTION 'expires_at is past the year 9999' USING ERRCODE = 'PA005',
            HINT = 'Give no expiry for a token that never expires.';
    END IF;
    IF EXISTS (SELECT 1 FROM @schema@.api_tokens a WHERE a.name = create_api_token.name) THEN
        RAISE EXCEPTION 'a token named % exists already', pg_catalog.quote_literal(create_api_token.name)
            USING ERRCODE = 'PA005', HINT = 'Names stay taken after a revocation, so that the log names one token.';
    END IF;
    INSERT INTO @schema@.api_tokens (token_id, name, role, tenant_id, token_sha256, created_by, expires_at)
    VALUES (create_api_token.token_id, create_api_token.name, create_api_token.role, create_api_token.tenant_id,
            create_api_token.token_sha256, @schema@._db_role(), create_api_token.expires_at)
    RETURNING * INTO t;
    PERFORM @schema@._token_event('audit.api_token.created', t,
                                  jsonb_build_object('name', t.name, 'role', t.role, 'tenant_id', t.tenant_id,
                                                     'expires_at', t.expires_at));
    RETURN @schema@._token_shown(t);
END
$$;
COMMENT ON FUNCTION @schema@.create_api_token(text, text, text, bytea, text, timestamptz) IS
    'Registers an HTTP API token by its SHA-256 (the token is made and shown by the client); an event '
    'audit.api_token.created records it.';

CREATE OR REPLACE FUNCTION @schema@.revoke_api_token(token text)
RETURNS @schema@.api_token
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t @schema@.api_tokens;
BEGIN
    -- By id or by name: one token at most. Twelve hex digits, in either case, are an id, never a name
    -- (create_api_token refuses such a name in any case; one made before it did is revoked by its id),
    -- and names are unique.
    UPDATE @schema@.api_tokens a SET revoked_at = now(), revoked_by = @schema@._db_role()
     WHERE CASE WHEN revoke_api_token.token ~* '^[0-9a-f]{12}$' THEN a.token_id = lower(revoke_api_token.token)
                ELSE a.name = revoke_api_token.token END
       AND a.revoked_at IS NULL
    RETURNING * INTO t;
    IF NOT FOUND THEN
        -- Never the text given: a whole token passed here would be in the error and the log.
        RAISE EXCEPTION 'no unrevoked token has this id or name'
            USING ERRCODE = 'PA005';
    END IF;
    PERFORM @schema@._token_event('audit.api_token.revoked', t, jsonb_build_object('name', t.name, 'role', t.role));
    RETURN @schema@._token_shown(t);
END
$$;
COMMENT ON FUNCTION @schema@.revoke_api_token(text) IS
    'Revokes a token, named by id or name, at once; an event audit.api_token.revoked records it.';

CREATE OR REPLACE FUNCTION @schema@.list_api_tokens()
RETURNS SETOF @schema@.api_token
LANGUAGE sql
SECURITY DEFINER
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT (@schema@._token_shown(a)).* FROM @schema@.api_tokens a ORDER BY a.created_at, a.token_id
$$;
COMMENT ON FUNCTION @schema@.list_api_tokens() IS 'Every token but its hash: revoked and expired ones too.';

-- What the server calls on each request: a row for a live token, none otherwise (unknown, expired
-- and revoked tokens look alike to the caller).
CREATE OR REPLACE FUNCTION @schema@.authenticate_api_token(token_sha256 bytea)
RETURNS TABLE (token_id text, name text, role text, tenant_id text)
LANGUAGE sql
SECURITY DEFINER
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT a.token_id, a.name, a.role, a.tenant_id FROM @schema@.api_tokens a
     WHERE a.token_sha256 = authenticate_api_token.token_sha256 AND a.revoked_at IS NULL
       AND (a.expires_at IS NULL OR a.expires_at > statement_timestamp())
$$;
COMMENT ON FUNCTION @schema@.authenticate_api_token(bytea) IS
    'The live token with this SHA-256, if any: its id, name, role and tenant.';
