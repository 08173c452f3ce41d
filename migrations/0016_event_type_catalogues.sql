-- Which shipped catalogue (pgaudit_py/catalogues/<name>.json, `pgaudit types load`) registered a
-- kind: registering that kind again is refused unless replacing it is asked for.
ALTER TABLE event_types ADD COLUMN catalogue text;
COMMENT ON COLUMN event_types.catalogue IS
    'The catalogue that registered the kind (pgaudit types load), or NULL for a kind registered by hand.';
