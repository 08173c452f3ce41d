-- Tokens of the HTTP API (pgaudit serve): the database keeps each token's SHA-256, never the token,
-- which `pgaudit tokens create` prints once. A token is read-only or may also run the archiver, and
-- may be bound to one tenant. Rows change only through create_api_token and revoke_api_token
-- (sql/58_api_tokens.sql), which record each change as an event.
CREATE TABLE api_tokens (
    token_id text PRIMARY KEY CHECK (token_id ~ '^[0-9a-f]{12}$'),
    name text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$' AND name !~ '^[0-9a-f]{12}$'),
    role text NOT NULL CHECK (role IN ('reader', 'maintainer')),
    tenant_id text CHECK (char_length(tenant_id) BETWEEN 1 AND 256),
    token_sha256 bytea NOT NULL UNIQUE CHECK (octet_length(token_sha256) = 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by text NOT NULL,
    expires_at timestamptz,
    revoked_at timestamptz,
    revoked_by text,
    CHECK (role = 'reader' OR tenant_id IS NULL),
    CHECK ((revoked_at IS NULL) = (revoked_by IS NULL))
);
COMMENT ON TABLE api_tokens IS
    'Bearer tokens of the HTTP API: their SHA-256 only. A maintainer token is never bound to a tenant.';
COMMENT ON COLUMN api_tokens.token_id IS 'Public id, also the token''s second part (pga_<token_id>_<secret>).';
COMMENT ON COLUMN api_tokens.tenant_id IS 'When set, the token reads this tenant''s events only.';

-- A token as its functions show it: everything but the hash.
CREATE TYPE api_token AS (
    token_id text, name text, role text, tenant_id text, created_at timestamptz, created_by text,
    expires_at timestamptz, revoked_at timestamptz, revoked_by text
);
