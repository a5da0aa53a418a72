import SwaggerParser from '@apidevtools/swagger-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PERMISSIONS } from '../src/lib/permissions.js';
import { collectRestRoutes } from '../src/trpc/rest.js';
import { appRouter } from '../src/trpc/router.js';
import { createTestApp, type TestApp } from './support/app.js';

let t: TestApp;
let doc: any;
beforeAll(async () => {
  t = await createTestApp();
  doc = (await t.request('GET', '/openapi.json')).body;
});
afterAll(async () => t?.close());

const operations = () =>
  Object.entries(doc.paths).flatMap(([path, item]: [string, any]) => Object.entries(item).map(([method, op]: [string, any]) => ({ path, method, op })));

describe('/openapi.json', () => {
  it('is a valid OpenAPI 3.1 document', async () => {
    expect(doc.openapi).toMatch(/^3\.1\./);
    await expect(SwaggerParser.validate(structuredClone(doc))).resolves.toBeDefined();
  });

  it('gives every operation a summary, tags, security and problem+json error responses', () => {
    for (const { path, method, op } of operations()) {
      const where = `${method.toUpperCase()} ${path}`;
      expect(op.summary, where).toBeTruthy();
      expect(op.tags?.length, where).toBeGreaterThan(0);
      expect(Array.isArray(op.security), where).toBe(true);
      const errors = Object.keys(op.responses).filter((s) => Number(s) >= 400);
      if (!['/health', '/.well-known/jwks.json'].includes(path)) expect(errors.length, where).toBeGreaterThan(0);
      for (const s of errors) {
        const ref = op.responses[s].$ref as string;
        expect(doc.components.responses[ref.split('/').pop()!].content['application/problem+json'], where).toBeDefined();
      }
    }
  });

  it('documents the required permission of every operation, from the permission matrix', () => {
    for (const route of collectRestRoutes(appRouter)) {
      const op = doc.paths[route.path][route.method.toLowerCase()];
      const p = op['x-permission'];
      expect(['public', 'authenticated', ...PERMISSIONS], `${route.method} ${route.path}`).toContain(p);
      if (p === 'public') expect(op.security).toEqual([]);
      else {
        expect(op.security).toEqual([{ bearerAuth: [] }]);
        expect(op.responses['401']).toBeDefined();
      }
    }
  });

  it('lists exactly the routes the server answers (no shadow routes)', async () => {
    const documented = new Set(operations().map(({ path, method }) => `${method.toUpperCase()} ${path}`));
    for (const route of collectRestRoutes(appRouter)) expect(documented).toContain(`${route.method} ${route.path}`);
    for (const key of documented) {
      const [method, path] = key.split(' ') as [string, string];
      const concrete = path.replace(/\{[^}]+\}/g, '01a2198b-0000-7000-8000-000000000000');
      const res = await t.request(method, concrete, { token: t.superAdmin.token, ...(method === 'GET' || method === 'DELETE' ? {} : { body: {} }) });
      expect(res.status === 404 && /No route/.test(res.body?.detail ?? ''), key).toBe(false);
      expect(res.status, key).not.toBe(405);
    }
  });

  it('documents create operations with 201', () => {
    expect(doc.paths['/users'].post.responses['201']).toBeDefined();
    expect(doc.paths['/users'].post.responses['200']).toBeUndefined();
  });

  it('covers the seed’s and API.md’s paths for this capability', () => {
    for (const path of ['/auth/login', '/auth/logout', '/auth/me', '/auth/refresh', '/users', '/users/{id}', '/users/{id}/roles', '/organizations', '/health', '/ready', '/.well-known/jwks.json']) {
      expect(doc.paths, path).toHaveProperty([path]);
    }
  });
});

describe('/docs', () => {
  it('serves Swagger UI from local assets only', async () => {
    const page = await t.request('GET', '/docs');
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/text\/html/);
    const urls = [...page.text.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
    expect(urls.length).toBeGreaterThan(3);
    for (const url of urls) {
      expect(url.startsWith('/'), url).toBe(true);
      const asset = await t.app.request(url);
      expect(asset.status, url).toBe(200);
    }
    const init = await t.request('GET', '/docs/init.js');
    expect(init.text).toContain("url: '/openapi.json'");
  });

  it('serves only whitelisted asset files', async () => {
    expect((await t.request('GET', '/docs/assets/package.json')).status).toBe(404);
    expect((await t.request('GET', '/docs/assets/..%2F..%2Fpackage.json')).status).toBe(404);
  });
});
