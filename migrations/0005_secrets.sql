-- Per-tenant secrets under envelope encryption. The master keys themselves are never stored:
-- only their versions and fingerprints. Data keys are stored only wrapped by a master key.

CREATE TABLE master_keys (
    version integer PRIMARY KEY,
    -- HMAC-SHA-256 of a fixed label under the key: tells keys apart, reveals nothing about them.
    fingerprint bytea NOT NULL UNIQUE,
    key_file text,  -- server-key mode: an absolute path the server reads; NULL: the client supplies the key
    state text NOT NULL CHECK (state IN ('active', 'next', 'retired')),
    added_at timestamptz NOT NULL DEFAULT now(),
    added_by text NOT NULL,
    retired_at timestamptz
);
-- One key in use; at most one being rotated to.
CREATE UNIQUE INDEX master_keys_one_active ON master_keys ((true)) WHERE state = 'active';
CREATE UNIQUE INDEX master_keys_one_next ON master_keys ((true)) WHERE state = 'next';
COMMENT ON TABLE master_keys IS 'Master-key versions: fingerprints and, in server-key mode, key file paths; never keys.';

CREATE TABLE secret_slots (
    key text PRIMARY KEY,
    description text NOT NULL,
    declared_at timestamptz NOT NULL DEFAULT now(),
    declared_by text NOT NULL
);
COMMENT ON TABLE secret_slots IS 'Declared secret slots; writing any other slot is refused.';

CREATE TABLE data_keys (
    tenant_id text NOT NULL,
    version integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, version)
);
COMMENT ON TABLE data_keys IS 'Per-tenant data-key versions; the keys live only in wrapped_data_keys, wrapped.';

-- During a master-key rotation a data key is wrapped under both master versions.
CREATE TABLE wrapped_data_keys (
    tenant_id text NOT NULL,
    version integer NOT NULL,
    master_version integer NOT NULL REFERENCES master_keys,
    wrapped bytea NOT NULL,
    PRIMARY KEY (tenant_id, version, master_version),
    FOREIGN KEY (tenant_id, version) REFERENCES data_keys ON DELETE CASCADE
);
CREATE INDEX wrapped_data_keys_master ON wrapped_data_keys (master_version);
COMMENT ON TABLE wrapped_data_keys IS 'Data keys encrypted under a master-key version.';

CREATE TABLE secret_values (
    tenant_id text NOT NULL,
    key text NOT NULL REFERENCES secret_slots,
    key_version integer NOT NULL,
    ciphertext bytea NOT NULL,
    written_at timestamptz NOT NULL DEFAULT now(),
    written_by text NOT NULL,
    PRIMARY KEY (tenant_id, key),
    -- Also what keeps a rotation from deleting a data key that a concurrent write still uses.
    FOREIGN KEY (tenant_id, key_version) REFERENCES data_keys (tenant_id, version)
);
CREATE INDEX secret_values_key_version ON secret_values (tenant_id, key_version);
COMMENT ON TABLE secret_values IS 'Secret values, encrypted under their tenant''s data key and bound to tenant and slot.';

CREATE TYPE master_rotation AS (
    from_version integer,
    to_version integer,
    rewrapped integer,
    remaining bigint,
    done boolean
);

CREATE TYPE tenant_key_rotation AS (
    tenant_id text,
    from_version integer,
    to_version integer,
    reencrypted integer,
    remaining bigint,
    done boolean
);
