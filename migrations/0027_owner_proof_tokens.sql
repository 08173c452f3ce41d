-- The key a proof is taken with (sql/62_tracking.sql, _check_owner): the function that makes a proof
-- passes the helper the random token it made it under, which no other code of the statement can
-- read (owner_proofs is not readable by the maintainer role), so that a proof the owner made by hand
-- is not taken, in the same statement, by another maintainer's SECURITY DEFINER function
-- (tests/test_owner_proofs.py). Proofs live only within the transaction that makes them: none is left to fill.
ALTER TABLE owner_proofs ADD COLUMN token uuid;
COMMENT ON COLUMN owner_proofs.token IS 'The random key the proof is taken with: the helper must be passed it.';
