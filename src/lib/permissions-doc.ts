import { ROLES } from '../db/schema/users.js';
import { PERMISSIONS, roleHas } from './permissions.js';

/** The permission matrix as a Markdown table; docs/permissions.md embeds it and a test keeps them equal. */
export function permissionMatrixMarkdown(): string {
  const header = `| permission | ${ROLES.join(' | ')} |`;
  const rule = `|---|${ROLES.map(() => ':-:').join('|')}|`;
  const rows = PERMISSIONS.map((p) => `| \`${p}\` | ${ROLES.map((r) => (roleHas(r, p) ? '✓' : '')).join(' | ')} |`);
  return [header, rule, ...rows].join('\n');
}
