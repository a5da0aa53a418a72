import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { and, eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditRecords } from '../src/db/schema/audit.js';
import { CSV_COLUMNS } from '../src/domains/audit/export.js';
import { verifyExport } from '../src/lib/audit/export-verify.js';
import { createTestApp, uniqueEmail, type TestApp } from './support/app.js';
import { chainRecords, chained, tamper } from './support/audit.js';

const run = promisify(execFile);
let t: TestApp;
let org: Awaited<ReturnType<TestApp['createOrganization']>>;
beforeAll(async () => {
  t = await createTestApp();
  org = await t.createOrganization('Exported');
  // A name that needs every kind of CSV quoting.
  await t.request('POST', '/users', { token: org.admin.token, body: { email: uniqueEmail(), name: 'Smith, "J"\nJr', role: 'tester' } });
  await t.request('POST', '/users', { token: org.admin.token, body: { email: uniqueEmail(), name: 'Zoë', role: 'developer' } });
  // Backslashes, quotes, tabs, a line separator and an astral character in the details and the user agent:
  // on PostgreSQL the NDJSON lines come out of COPY, whose text format escapes backslashes and tabs.
  await t.request('POST', '/users', {
    token: org.admin.token,
    headers: { 'user-agent': 'agent \\ "quoted" \\n' },
    body: { email: uniqueEmail(), name: 'C:\\temp\\new\t"x"\u2028 😀', role: 'tester' },
  });
});
afterAll(async () => t?.close());

const exportText = async (query = 'format=ndjson', token = org.admin.token) => {
  const res = await t.app.request(`/audit/export?${query}`, { headers: { authorization: `Bearer ${token}` } });
  return { res, text: await res.text() };
};
const linesOf = (text: string) => Readable.from(text.split('\n'));

/** Minimal RFC 4180 parser, enough to check our quoting round-trips. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') (field += '"'), i++;
      else if (ch === '"') quoted = false;
      else field += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') row.push(field), (field = '');
    else if (ch === '\r' && text[i + 1] === '\n') row.push(field), rows.push(row), (row = []), (field = ''), i++;
    else field += ch;
  }
  return rows;
}

describe('GET /audit/export', () => {
  it('streams NDJSON with every chain field, ending with a signed manifest that verifies', async () => {
    const { res, text } = await exportText();
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/x-ndjson');
    expect(res.headers.get('content-disposition')).toMatch(/^attachment; filename="audit-org-.*\.ndjson"$/);
    const lines = text.trim().split('\n').map((l) => JSON.parse(l));
    const manifest = lines.at(-1);
    expect(manifest).toMatchObject({ type: 'manifest', chain_id: `org:${org.id}`, count: lines.length - 1, first_seq: 1 });
    expect(lines[0]).toMatchObject({ type: 'record', seq: 1, previous_hash: '0'.repeat(64) });
    expect(Object.keys(lines[0]).sort()).toEqual(['type', ...CSV_COLUMNS].sort());
    // The export recorded itself before streaming, so the file includes its own data_export record.
    expect(lines.at(-2)).toMatchObject({ action: 'data_export', details: { format: 'ndjson' } });
    const result = await verifyExport(linesOf(text), t.deps.auditSigner.verificationKeys);
    expect(result).toMatchObject({ ok: true, records: lines.length - 1, firstFailure: null });
    expect(manifest.checkpoint.seq).toBe(manifest.last_seq);
    const odd = lines.find((l) => l.details?.after?.name?.startsWith('C:'));
    expect(odd).toMatchObject({ details: { after: { name: 'C:\\temp\\new\t"x"\u2028 😀' } }, user_agent: 'agent \\ "quoted" \\n' });
  });

  it('detects an edited record, a removed line, an edited manifest and a truncated file', async () => {
    const { text } = await exportText();
    const lines = text.trim().split('\n');
    const keys = t.deps.auditSigner.verificationKeys;
    const edit = (i: number, f: (o: any) => void) => {
      const copy = [...lines];
      const o = JSON.parse(copy[i]!);
      f(o);
      copy[i] = JSON.stringify(o);
      return copy.join('\n');
    };
    expect((await verifyExport(linesOf(edit(2, (o) => (o.details.after.role = 'admin'))), keys)).firstFailure).toMatchObject({ seq: 3, kind: 'hash_mismatch' });
    const removed = [...lines.slice(0, 2), ...lines.slice(3)].join('\n');
    expect((await verifyExport(linesOf(removed), keys)).firstFailure).toMatchObject({ seq: 3, kind: 'missing_seq' });
    expect((await verifyExport(linesOf(edit(lines.length - 1, (o) => (o.count = 1))), keys)).firstFailure?.kind).toMatch(/signature_invalid|manifest_mismatch/);
    expect((await verifyExport(linesOf(lines.slice(0, -1).join('\n')), keys)).firstFailure).toMatchObject({ kind: 'manifest_mismatch' });
    expect((await verifyExport(linesOf(text), new Map())).firstFailure).toMatchObject({ kind: 'unknown_key' });
  });

  it('writes exactly what is stored, even what no request writes: control characters, a quote in an enum column, a NULL', async () => {
    const other = await t.createOrganization('Tampered export');
    await t.createUser(other.admin.token, { role: 'developer' });
    const chainId = `org:${other.id}`;
    const records = await chainRecords(t, chainId);
    expect(records.length).toBeGreaterThanOrEqual(3);
    const [first, second, third] = records.slice(-3);
    const agent = 'ctl \u0001 tab\t nl\n vt\u000b end';
    const action = 'cre"ate\\';
    await tamper(t, [
      sql`update audit_records set user_agent = ${agent} where chain_id = ${chainId} and seq = ${first!.seq}`,
      sql`update audit_records set action = ${action} where chain_id = ${chainId} and seq = ${second!.seq}`,
      sql`alter table audit_records alter column created_at drop not null`,
      sql`update audit_records set created_at = null where chain_id = ${chainId} and seq = ${third!.seq}`,
    ]);
    try {
      const { text } = await exportText('format=ndjson', other.admin.token);
      const lines = text.trim().split('\n').map((l) => JSON.parse(l));
      expect(lines.find((l) => l.seq === first!.seq)).toMatchObject({ user_agent: agent });
      expect(lines.find((l) => l.seq === second!.seq)).toMatchObject({ action });
      expect(lines.find((l) => l.seq === third!.seq)).toMatchObject({ created_at: null, action: third!.action });
      const result = await verifyExport(linesOf(text), t.deps.auditSigner.verificationKeys);
      expect(result.firstFailure).toMatchObject({ seq: first!.seq, kind: 'hash_mismatch' });
    } finally {
      await tamper(t, [
        sql`update audit_records set created_at = ${third!.createdAt.toISOString()}::timestamptz where chain_id = ${chainId} and seq = ${third!.seq}`,
        sql`alter table audit_records alter column created_at set not null`,
      ]);
    }
  });

  it('CSV quotes per RFC 4180 and writes JSON columns as JSON', async () => {
    const { res, text } = await exportText('format=csv');
    expect(res.headers.get('content-type')).toBe('text/csv; charset=utf-8');
    const rows = parseCsv(text);
    expect(rows[0]).toEqual([...CSV_COLUMNS]);
    const details = rows.slice(1).map((r) => JSON.parse(r[CSV_COLUMNS.indexOf('details')]!));
    expect(details.some((d) => d.after?.name === 'Smith, "J"\nJr')).toBe(true);
    expect(details.some((d) => d.after?.name === 'Zoë')).toBe(true);
    expect(rows.slice(1).every((r) => r.length === CSV_COLUMNS.length)).toBe(true);
  });

  it('applies the list filters, and a filtered export still verifies record by record', async () => {
    const { text } = await exportText('format=ndjson&action=create&resource_type=user');
    const lines = text.trim().split('\n').map((l) => JSON.parse(l));
    const records = lines.slice(0, -1);
    expect(records.length).toBeGreaterThanOrEqual(3);
    expect(records.every((r) => r.action === 'create' && r.resource_type === 'user')).toBe(true);
    expect(lines.at(-1).filters).toEqual({ action: 'create', resource_type: 'user' });
    expect((await verifyExport(linesOf(text), t.deps.auditSigner.verificationKeys)).ok).toBe(true);
  });

  it('needs audit:view (refusal audited), and rejects bad filters with field errors', async () => {
    const dev = await t.createUser(org.admin.token, { role: 'developer' });
    const { res } = await exportText('format=csv', dev.token);
    expect(res.status).toBe(403);
    await chained(t);
    const denied = await t.deps.db.select().from(auditRecords).where(and(eq(auditRecords.userId, dev.id), eq(auditRecords.action, 'access_denied')));
    expect(denied[0]?.details).toEqual({ permission: 'audit:view', operation: 'audit.export' });
    const bad = await exportText('format=xml');
    expect(bad.res.status).toBe(400);
    expect(JSON.parse(bad.text).errors).toContainEqual(expect.objectContaining({ field: 'format' }));
    expect((await t.app.request('/audit/export')).status).toBe(401);
  });

  it('is documented in /openapi.json', async () => {
    const doc = (await t.request('GET', '/openapi.json')).body;
    const op = doc.paths['/audit/export'].get;
    expect(op['x-permission']).toBe('audit:view');
    expect(Object.keys(op.responses['200'].content)).toEqual(['application/x-ndjson', 'text/csv']);
  });
});

describe('npm run audit:verify', () => {
  it('exits 0 for an intact export and 1 with the first failure for an edited one', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'budapp-export-'));
    const { text } = await exportText();
    const good = join(dir, 'good.ndjson');
    writeFileSync(good, text);
    const keyDir = t.config.audit.publicKeysDir;
    const cli = (file: string) => run('npx', ['tsx', 'scripts/audit-verify.ts', file, '--public-key', keyDir], { cwd: process.cwd() }).then(
      (r) => ({ code: 0, out: r.stdout }),
      (e) => ({ code: e.code as number, out: String(e.stdout) + String(e.stderr) }),
    );
    const ok = await cli(good);
    expect(ok.code).toBe(0);
    expect(ok.out).toMatch(/^OK /);
    const bad = join(dir, 'bad.ndjson');
    writeFileSync(bad, text.replace(/"role": ?"tester"/, '"role": "admin"'));
    const failed = await cli(bad);
    expect(failed.code).toBe(1);
    expect(failed.out).toMatch(/hash_mismatch/);
    expect((await cli(join(dir, 'missing.ndjson'))).code).toBe(2);
    // The current key alone, as a single PEM file, is enough too.
    const pem = join(dir, 'key.pem');
    writeFileSync(pem, t.deps.auditSigner.publicKeys()[0]!.public_key_pem);
    expect((await run('npx', ['tsx', 'scripts/audit-verify.ts', good, '--public-key', pem])).stdout).toMatch(/^OK /);
  }, 60_000);
});
