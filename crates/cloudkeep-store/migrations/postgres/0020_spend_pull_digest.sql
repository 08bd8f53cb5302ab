-- A digest of what a subscription's last spend pull wrote: its period,
-- currency, resources, meters, cost rows and day totals (SHA-256, hex).
-- A pull that would write the same again leaves its rows, and the spend
-- revision, as they are: re-syncing unchanged spend invalidates no
-- analysis kept under the revision. Cleared with the rest of the spend.
ALTER TABLE spend_backfill ADD COLUMN pull_digest TEXT;
