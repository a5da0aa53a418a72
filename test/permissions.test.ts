import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ROLES } from '../src/db/schema/users.js';
import { permissionMatrixMarkdown, projectRoleMatrixMarkdown } from '../src/lib/permissions-doc.js';
import { PERMISSIONS, ROLE_PERMISSIONS, ROLE_RANK, roleHas } from '../src/lib/permissions.js';

describe('permission matrix', () => {
  it('is what docs/permissions.md shows, for organisation and project roles', () => {
    const doc = readFileSync(new URL('../docs/permissions.md', import.meta.url), 'utf8');
    const block = (name: string) => doc.split(`<!-- ${name}:start`)[1]!.split('\n').slice(1).join('\n').split(`<!-- ${name}:end -->`)[0]!.trim();
    expect(block('matrix')).toBe(permissionMatrixMarkdown());
    expect(block('project-matrix')).toBe(projectRoleMatrixMarkdown());
  });

  it('gives super admins and admins every permission of the roles below them', () => {
    const ranked = [...ROLES].sort((a, b) => ROLE_RANK[b] - ROLE_RANK[a]);
    expect(ranked).toEqual(['super_admin', 'admin', 'devops', 'developer', 'tester']);
    // devops and developer are different jobs, so only the chain super_admin ⊇ admin ⊇ each other role holds.
    for (const role of ROLES) {
      for (const p of ROLE_PERMISSIONS[role]) {
        expect(roleHas('super_admin', p)).toBe(true);
        if (role !== 'super_admin') expect(roleHas('admin', p), `${role} ${p}`).toBe(true);
      }
    }
  });

  it('keeps organisation management to super admins and every manage scope with its view scope', () => {
    for (const role of ROLES) {
      expect(roleHas(role, 'organization:manage')).toBe(role === 'super_admin');
      for (const p of ROLE_PERMISSIONS[role]) {
        if (p.endsWith(':manage')) expect(roleHas(role, p.replace(':manage', ':view') as (typeof PERMISSIONS)[number]), `${role} ${p}`).toBe(true);
      }
    }
  });
});
