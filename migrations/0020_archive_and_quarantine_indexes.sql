-- Two lookups read a table that only grows. Batches an archive run has deleted stay in
-- archive_batches, and next_archive_batch and _prunable_blocks (per block, at every prune) looked
-- for a batch not deleted through every deleted one: 7 ms each at 50,000 batches. The batches not
-- deleted, the few, get their own index. The quarantine keeps every event it took, and row_history
-- and row_as_of asked it for their target type with no index: 19 ms at 100,000.
CREATE INDEX archive_batches_open ON archive_batches (first_block) WHERE state <> 'deleted';
CREATE INDEX quarantine_target_type ON quarantine (target_type);
