-- The statement a proof was made in (sql/62_tracking.sql, _check_owner): a proof serves only the
-- statement that made it, and only the role the session acts as, so that one made by hand and left
-- in a transaction is not taken later by another role's code (tests/test_trust_attacks_106.py).
-- Proofs live only within the transaction that makes them: none is left to fill.
ALTER TABLE owner_proofs ADD COLUMN statement_at timestamptz;
COMMENT ON COLUMN owner_proofs.statement_at IS 'statement_timestamp() of the statement that made the proof.';
