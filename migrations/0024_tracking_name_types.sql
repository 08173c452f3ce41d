-- What a tracked table's key and tenant columns are made of (_name_types): a change after which
-- their values read otherwise with no row event (a retype without a rewrite, an enum's value
-- renamed) is refused by comparing with it (tests/test_trust_attacks_86.py, k19; _82.py, n16).
-- Filled for the tables tracked before by the installer's refresh (sql/95_capture_functions.sql).
ALTER TABLE tracked_tables ADD COLUMN name_types jsonb;
COMMENT ON COLUMN tracked_tables.name_types IS
    'What the key and tenant columns are made of, as when tracking last took them: types by column number, '
    'composites'' attributes, enum labels (_name_types).';
