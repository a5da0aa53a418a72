import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { inject } from 'vitest';
import { openDatabase, type Database } from '../../src/db/client.js';

/** One isolated, migrated database for a test file: a PGlite restored from the template, or a PostgreSQL clone. */
export async function openTestDatabase(): Promise<Database> {
  const pg = inject('postgresTemplate');
  if (pg) {
    const { default: postgres } = await import('postgres');
    const name = `budapp_t_${pg.database.slice('budapp_tpl_'.length)}_${randomBytes(4).toString('hex')}`;
    const admin = postgres(pg.url, { max: 1, onnotice: () => {} });
    // CREATE DATABASE … TEMPLATE needs the template to have no other sessions; files start in parallel.
    for (let attempt = 0; ; attempt++) {
      try {
        await admin.unsafe(`create database ${name} template ${pg.database}`);
        break;
      } catch (err) {
        if (attempt >= 50 || !/being accessed by other users/.test((err as Error).message)) throw err;
        await new Promise((r) => setTimeout(r, 100 + Math.random() * 200));
      }
    }
    await admin.end();
    const url = new URL(pg.url);
    url.pathname = `/${name}`;
    const db = await openDatabase({ kind: 'postgres', url: url.toString(), poolSize: 10, preparedStatements: true });
    const close = db.close;
    return {
      ...db,
      close: async () => {
        await close();
        const cleanup = postgres(pg.url, { max: 1, onnotice: () => {} });
        await cleanup.unsafe(`drop database if exists ${name} with (force)`);
        await cleanup.end();
      },
    };
  }
  const template = await readFile(inject('pgliteTemplate'));
  return openDatabase({ kind: 'pglite', loadDataDir: new Blob([template]) });
}
