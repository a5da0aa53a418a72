-- Records keep the exact text of their canonical details, so PostgreSQL can recompute their hashes (verify).
-- Records written before this migration keep jsonb's formatting: they verify too, on the service's own path.
ALTER TABLE "audit_records" ALTER COLUMN "details" SET DATA TYPE json USING "details"::text::json;
