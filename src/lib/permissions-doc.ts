import { ROLES } from '../db/schema/users.js';
import { PROJECT_ROLES } from '../db/schema/projects.js';
import { PERMISSIONS, PROJECT_PERMISSIONS, projectRoleHas, roleHas } from './permissions.js';

/** The permission matrix as a Markdown table; docs/permissions.md embeds it and a test keeps them equal. */
export function permissionMatrixMarkdown(): string {
  const header = `| permission | ${ROLES.join(' | ')} |`;
  const rule = `|---|${ROLES.map(() => ':-:').join('|')}|`;
  const rows = PERMISSIONS.map((p) => `| \`${p}\` | ${ROLES.map((r) => (roleHas(r, p) ? '✓' : '')).join(' | ')} |`);
  return [header, rule, ...rows].join('\n');
}

/** The project-role matrix as a Markdown table, embedded in docs/permissions.md the same way. */
export function projectRoleMatrixMarkdown(): string {
  const roles = PROJECT_ROLES;
  const header = `| permission | ${roles.join(' | ')} |`;
  const rule = `|---|${roles.map(() => ':-:').join('|')}|`;
  const rows = PROJECT_PERMISSIONS.map((p) => `| \`${p}\` | ${roles.map((r) => (projectRoleHas(r, p) ? '✓' : '')).join(' | ')} |`);
  return [header, rule, ...rows].join('\n');
}
