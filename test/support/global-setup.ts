import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { openDatabase } from '../../src/db/client.js';
import { generateKek } from '../../src/platform/crypto/keyring.js';

declare module 'vitest' {
  export interface ProvidedContext {
    credentialKeysDir: string;
    pgliteTemplate: string;
    postgresTemplate: { url: string; database: string } | null;
  }
}

/**
 * Migrates one template database per run. On PGlite (default) the template is a data-dir dump each test
 * file loads; with TEST_DATABASE_URL each file gets CREATE DATABASE … TEMPLATE of a migrated template.
 * An unreachable TEST_DATABASE_URL fails the run: it never silently falls back to PGlite.
 */
export default async function setup(project: TestProject) {
  const dir = await mkdtemp(join(tmpdir(), 'budapp-test-'));
  // One RSA key-encryption key for the run: generating 3072-bit keys per test file would dominate start-up.
  const keysDir = join(dir, 'credential-kek');
  generateKek(keysDir, true);
  project.provide('credentialKeysDir', keysDir);
  const url = process.env.TEST_DATABASE_URL;
  if (url) {
    const { default: postgres } = await import('postgres');
    const admin = postgres(url, { max: 1, onnotice: () => {}, connect_timeout: 5 });
    try {
      await admin`select 1`;
    } catch (err) {
      await admin.end({ timeout: 1 });
      throw new Error(`TEST_DATABASE_URL is set but PostgreSQL is not reachable: ${(err as Error).message}`);
    }
    const database = `budapp_tpl_${randomBytes(4).toString('hex')}`;
    await admin.unsafe(`create database ${database}`);
    const templateUrl = new URL(url);
    templateUrl.pathname = `/${database}`;
    const tpl = await openDatabase({ kind: 'postgres', url: templateUrl.toString(), poolSize: 1 });
    await tpl.migrate();
    await tpl.close();
    project.provide('postgresTemplate', { url, database });
    project.provide('pgliteTemplate', '');
    return async () => {
      const leftovers = await admin<{ datname: string }[]>`select datname from pg_database where datname like ${`budapp_t_%`} or datname = ${database}`;
      for (const { datname } of leftovers) if (datname.startsWith('budapp_t_' + database.slice(11)) || datname === database) await admin.unsafe(`drop database if exists ${datname} with (force)`);
      await admin.end();
      await rm(dir, { recursive: true, force: true });
    };
  }
  const db = await openDatabase({ kind: 'pglite' });
  await db.migrate();
  const client = (db.db as unknown as { $client: { dumpDataDir(c: 'none'): Promise<Blob> } }).$client;
  const dump = await client.dumpDataDir('none');
  const file = join(dir, 'template.tar');
  await writeFile(file, Buffer.from(await dump.arrayBuffer()));
  await db.close();
  project.provide('pgliteTemplate', file);
  project.provide('postgresTemplate', null);
  return async () => rm(dir, { recursive: true, force: true });
}
