-- Which role made a proof, by its oid as well as its name (sql/62_tracking.sql, _check_owner): a
-- name can pass to another role between the proof and its use (the owner renamed, another role
-- renamed or made under its name), so the proof is used only by the role that made it, under the
-- name it had, and while that role still owns the table (tests/test_trust_attacks_103.py, b3 to b5).
-- Proofs live only within the transaction that makes them: none is left to fill.
ALTER TABLE owner_proofs ADD COLUMN role_id oid;
COMMENT ON COLUMN owner_proofs.role_id IS 'The oid of the role that made the proof (role is its name then).';
