-- The audit key an event's hash is sealed with (HMAC-SHA256); empty for
-- events chained by plain SHA-256 (an installation without audit keys).
ALTER TABLE audit_events ADD COLUMN key_id TEXT NOT NULL DEFAULT '';
