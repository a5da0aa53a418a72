-- Each project keeps its API representation (ProjectDto, fields in its order) as JSON text, rebuilt by the
-- database on every insert and update, so that GET /projects reads a page without formatting a field:
-- building this text per row cost PostgreSQL about as much as the rest of the page statement.
-- to_json escapes the two free-text fields; no other field can hold a character that needs escaping, none is
-- null, and settings is jsonb. Timestamps are ISO 8601 in UTC with milliseconds, as Date.toISOString() writes.
ALTER TABLE "projects" ADD COLUMN "dto_json" text DEFAULT '' NOT NULL;
--> statement-breakpoint
CREATE OR REPLACE FUNCTION budapp_project_dto_json() RETURNS trigger AS $$
BEGIN
  NEW.dto_json := concat('{"id":"', NEW.id, '","name":', to_json(NEW.name), ',"description":', to_json(NEW.description),
    ',"organization_id":"', NEW.organization_id, '","owner_id":"', NEW.owner_id, '","settings":', NEW.settings,
    ',"status":"', NEW.status, '","version":', NEW.version,
    ',"created_at":"', to_char(NEW.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
    '","updated_at":"', to_char(NEW.updated_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), '"}');
  RETURN NEW;
END;
$$ LANGUAGE plpgsql;
--> statement-breakpoint
CREATE TRIGGER projects_dto_json BEFORE INSERT OR UPDATE ON projects
  FOR EACH ROW EXECUTE FUNCTION budapp_project_dto_json();
--> statement-breakpoint
-- Existing projects: the trigger builds the text.
UPDATE "projects" SET "dto_json" = '';
