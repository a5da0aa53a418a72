-- Pending records keep their details as canonical text too, which the chainer moves into audit_records as it is.
-- Rows pending at the time of this migration keep jsonb's rendering; the chainer canonicalises those.
ALTER TABLE "audit_pending" ALTER COLUMN "details" SET DATA TYPE json USING "details"::text::json;
