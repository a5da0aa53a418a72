import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { canonicalJson, hashAuditRecord } from '../src/lib/audit/canonical.js';

describe('docs/audit.md', () => {
  it('its worked example is canonical JSON and hashes to the documented current_hash', () => {
    const doc = readFileSync(new URL('../docs/audit.md', import.meta.url), 'utf8');
    const block = doc.match(/Example for a first record:\n\n```json\n(.*?)\n```/s)![1]!;
    const documented = doc.match(/Its `current_hash` is `([0-9a-f]{64})`/)![1];
    const record = JSON.parse(block);
    expect(canonicalJson(record)).toBe(block);
    expect(Object.keys(record)).toHaveLength(15);
    expect(hashAuditRecord(record)).toBe(documented);
  });
});
