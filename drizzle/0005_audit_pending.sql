CREATE TABLE "audit_pending" (
	"id" uuid PRIMARY KEY NOT NULL,
	"chain_id" text NOT NULL,
	"organization_id" uuid,
	"action" text NOT NULL,
	"resource_type" text NOT NULL,
	"resource_id" text,
	"user_id" uuid,
	"actor_type" text NOT NULL,
	"details" jsonb NOT NULL,
	"ip_address" text,
	"user_agent" text,
	"request_id" text,
	"created_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
-- Pending records may only be removed (by the chainer, as it chains them), never changed or truncated.
CREATE TRIGGER audit_pending_no_update BEFORE UPDATE ON audit_pending
  FOR EACH ROW EXECUTE FUNCTION budapp_refuse_audit_change();
--> statement-breakpoint
CREATE TRIGGER audit_pending_no_truncate BEFORE TRUNCATE ON audit_pending
  FOR EACH STATEMENT EXECUTE FUNCTION budapp_refuse_audit_change();
