CREATE TABLE "audit_chain_heads" (
	"chain_id" text PRIMARY KEY NOT NULL,
	"seq" bigint NOT NULL,
	"hash" text NOT NULL
);
--> statement-breakpoint
CREATE TABLE "audit_checkpoints" (
	"chain_id" text NOT NULL,
	"seq" bigint NOT NULL,
	"head_hash" text NOT NULL,
	"signed_at" timestamp with time zone NOT NULL,
	"key_id" text NOT NULL,
	"signature" text NOT NULL,
	CONSTRAINT "audit_checkpoints_chain_id_seq_pk" PRIMARY KEY("chain_id","seq")
);
--> statement-breakpoint
CREATE TABLE "audit_records" (
	"id" uuid PRIMARY KEY NOT NULL,
	"chain_id" text NOT NULL,
	"seq" bigint NOT NULL,
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
	"created_at" timestamp with time zone NOT NULL,
	"previous_hash" text NOT NULL,
	"current_hash" text NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX "audit_records_chain_seq_key" ON "audit_records" USING btree ("chain_id","seq");--> statement-breakpoint
CREATE INDEX "audit_records_org_id_idx" ON "audit_records" USING btree ("organization_id","id");--> statement-breakpoint
CREATE INDEX "audit_records_user_id_idx" ON "audit_records" USING btree ("user_id","id");--> statement-breakpoint
CREATE INDEX "audit_records_resource_idx" ON "audit_records" USING btree ("resource_type","resource_id");