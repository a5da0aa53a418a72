import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * Graceful shutdown of the real process as `npm start` runs it (the dist/ bundle `npm run build` makes, on
 * plain node): on SIGTERM/SIGINT it stops
 * accepting connections, lets in-flight requests finish, closes the database and exits 0.
 * Each test starts its own process on an empty DATA_DIR (embedded PGlite, first start), so allow for
 * initdb and migrations on a small machine.
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const EMAIL = 'shutdown-admin@bud.test';
const PASSWORD = 'correct-horse-battery-staple';
const START_TIMEOUT_MS = 60_000;
const TEST_TIMEOUT_MS = 120_000;

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

interface Service {
  child: ChildProcess;
  port: number;
  stdout(): string;
  stderr(): string;
  /** Resolves with the first log record (parsed JSON line on stdout) matching `predicate`, past or future. */
  waitForLog(predicate: (record: Record<string, unknown>) => boolean, what: string): Promise<Record<string, unknown>>;
  exited: Promise<Exit>;
}

const children = new Set<ChildProcess>();
beforeAll(() => {
  execFileSync('npm', ['run', '--silent', 'build'], { cwd: ROOT, stdio: 'inherit' });
}, 60_000);
const dirs: string[] = [];
afterAll(async () => {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await once(child, 'exit').catch(() => undefined);
    }
  }
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

async function startService(env: Record<string, string> = {}): Promise<Service> {
  const dataDir = mkdtempSync(join(tmpdir(), 'budapp-shutdown-'));
  dirs.push(dataDir);
  const child = spawn(process.execPath, ['--enable-source-maps', 'dist/main.js'], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? tmpdir(),
      NODE_ENV: 'development',
      DATA_DIR: dataDir,
      HOST: '127.0.0.1',
      PORT: '0',
      LOG_LEVEL: 'info',
      SUPER_USER_EMAIL: EMAIL,
      SUPER_USER_PASSWORD: PASSWORD,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);

  let out = '';
  let err = '';
  let pending = '';
  const records: Record<string, unknown>[] = [];
  const waiters: { predicate: (r: Record<string, unknown>) => boolean; resolve: (r: Record<string, unknown>) => void }[] = [];
  child.stderr!.on('data', (chunk) => (err += chunk));
  child.stdout!.on('data', (chunk) => {
    out += chunk;
    pending += chunk;
    const lines = pending.split('\n');
    pending = lines.pop()!;
    for (const line of lines) {
      let record: Record<string, unknown>;
      try {
        record = JSON.parse(line);
      } catch {
        continue; // not a log line
      }
      records.push(record);
      for (const waiter of [...waiters]) {
        if (waiter.predicate(record)) {
          waiters.splice(waiters.indexOf(waiter), 1);
          waiter.resolve(record);
        }
      }
    }
  });
  const exited = new Promise<Exit>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));

  function waitForLog(predicate: (r: Record<string, unknown>) => boolean, what: string): Promise<Record<string, unknown>> {
    const seen = records.find(predicate);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      waiters.push({ predicate, resolve });
      void exited.then((exit) => reject(new Error(`process exited (${JSON.stringify(exit)}) before logging ${what}\nstdout:\n${out}\nstderr:\n${err}`)));
    });
  }

  let timer: NodeJS.Timeout | undefined;
  const listening = await Promise.race([
    waitForLog((r) => typeof r.msg === 'string' && r.msg.includes('budapp listening') && typeof r.port === 'number', '"budapp listening"'),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`not listening after ${START_TIMEOUT_MS} ms\nstdout:\n${out}\nstderr:\n${err}`)), START_TIMEOUT_MS);
    }),
  ]).finally(() => clearTimeout(timer));
  const port = listening.port as number;
  expect(port).toBeGreaterThan(0);
  return { child, port, stdout: () => out, stderr: () => err, waitForLog, exited };
}

const isShuttingDown = (r: Record<string, unknown>) => typeof r.msg === 'string' && r.msg.startsWith('shutting down');

/** A request on a fresh connection; resolves with the outcome instead of throwing. */
function tryRequest(port: number, path = '/health'): Promise<{ ok: true; status: number } | { ok: false; code: string }> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve({ ok: true, status: res.statusCode! }));
    });
    req.on('error', (e: NodeJS.ErrnoException) => resolve({ ok: false, code: e.code ?? e.message }));
  });
}

interface Login {
  req: http.ClientRequest;
  /** Resolves once the server has read the request head (it answered 100 Continue): the request is in flight. */
  headRead: Promise<void>;
  response: Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>;
  first: string;
  rest: string;
}

/**
 * Starts POST /auth/login with a content-length but sends only the head. `Expect: 100-continue` makes the
 * server's reading of the head observable, so the test never races the signal against the request head.
 */
function startLogin(port: number, agent: http.Agent | false): Login {
  const body = JSON.stringify({ email: EMAIL, password: PASSWORD });
  const half = Math.floor(body.length / 2);
  const req = http.request({
    host: '127.0.0.1',
    port,
    method: 'POST',
    path: '/auth/login',
    agent,
    headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), expect: '100-continue' },
  });
  const response = new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>((resolve, reject) => {
    req.on('response', (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: text }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
  const headRead = once(req, 'continue').then(() => undefined);
  req.flushHeaders();
  return { req, headRead, response, first: body.slice(0, half), rest: body.slice(half) };
}

describe('graceful shutdown of the real process', () => {
  it(
    'SIGTERM: the in-flight request completes, new connections are refused, the process exits 0',
    async () => {
      const svc = await startService();
      const login = startLogin(svc.port, false);
      await login.headRead;
      login.req.write(login.first);

      svc.child.kill('SIGTERM');
      await svc.waitForLog(isShuttingDown, '"shutting down"');

      // The listener is closed: a new connection is refused (or at least never served).
      const fresh = await tryRequest(svc.port);
      expect(fresh, 'a new connection after SIGTERM').toEqual({ ok: false, code: expect.stringMatching(/ECONNREFUSED|ECONNRESET|EPIPE/) });

      // The half-sent request holds the process open; stall a little, then finish it.
      await sleep(200);
      expect(svc.child.exitCode, 'exited while a request was in flight').toBeNull();
      login.req.end(login.rest);

      const res = await login.response;
      expect([200, 401]).toContain(res.status);
      expect(res.status).toBe(200);
      expect(JSON.parse(res.body).access_token).toEqual(expect.any(String));

      expect(await svc.exited).toEqual({ code: 0, signal: null });
      expect(svc.stdout()).toContain('shutdown complete');
      const out = svc.stdout();
      expect(out.indexOf('"path":"/auth/login"'), 'the login was logged before shutdown completed').toBeLessThan(out.indexOf('shutdown complete'));
      expect(out).not.toContain('shutdown timeout reached');
      expect(svc.stderr()).toBe('');
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'SIGINT exits 0 after a clean shutdown',
    async () => {
      const svc = await startService();
      expect(await tryRequest(svc.port)).toEqual({ ok: true, status: 200 });
      svc.child.kill('SIGINT');
      expect(await svc.exited).toEqual({ code: 0, signal: null });
      expect(svc.stdout()).toContain('"signal":"SIGINT"');
      expect(svc.stdout()).toContain('shutdown complete');
      expect(svc.stderr()).toBe('');
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'a keep-alive connection busy at SIGTERM is closed after its response, not reused',
    async () => {
      const svc = await startService();
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      try {
        const login = startLogin(svc.port, agent);
        await login.headRead;
        login.req.write(login.first);
        svc.child.kill('SIGTERM');
        await svc.waitForLog(isShuttingDown, '"shutting down"');
        login.req.end(login.rest);
        const res = await login.response;
        expect(res.status).toBe(200);

        // The next request through the same agent would reuse that connection if the server left it open.
        const followUp = await new Promise<{ ok: true; status: number } | { ok: false; code: string }>((resolve) => {
          const req = http.get({ host: '127.0.0.1', port: svc.port, path: '/health', agent }, (r) => {
            r.resume();
            r.on('end', () => resolve({ ok: true, status: r.statusCode! }));
          });
          req.on('error', (e: NodeJS.ErrnoException) => resolve({ ok: false, code: e.code ?? e.message }));
        });
        expect.soft(res.headers.connection, 'response to an in-flight request during shutdown').toBe('close');
        expect.soft(followUp, 'a request after SIGTERM on a kept-alive connection was served').toMatchObject({ ok: false });
        expect(await svc.exited).toEqual({ code: 0, signal: null });
      } finally {
        agent.destroy();
      }
    },
    TEST_TIMEOUT_MS,
  );
});
