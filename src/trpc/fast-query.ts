import { getErrorShape, getTRPCErrorFromUnknown } from '@trpc/server/unstable-core-do-not-import';
import type { AnyProcedure, AnyRouter } from '@trpc/server';
import type { RequestContext } from './context.js';
import { invokeProcedure } from './invoke.js';
import { JsonText } from '../lib/json-text.js';

/**
 * The dashboard's most common call is a single (unbatched) GET query. tRPC's fetch adapter spends more per
 * request than the query itself on such a small read, so this answers exactly that case directly, with the
 * same wire format (`{"result":{"data":…}}`, or `{"error":<shape from our errorFormatter>}` with its status).
 * Everything else — batches, mutations, subscriptions, unknown paths — returns undefined and goes to the
 * standard adapter.
 */
export function createFastQueryHandler(appRouter: AnyRouter, endpoint = '/trpc') {
  const procedures = appRouter._def.procedures as Record<string, AnyProcedure>;
  const config = appRouter._def._config;
  const prefix = `${endpoint}/`;

  return async function handleFastQuery(req: Request, url: URL, ctx: RequestContext): Promise<Response | undefined> {
    if (req.method !== 'GET' || url.searchParams.has('batch') || !url.pathname.startsWith(prefix)) return undefined;
    const path = url.pathname.slice(prefix.length);
    const procedure = procedures[path];
    if (!procedure || procedure._def.type !== 'query') return undefined;
    let input: unknown;
    const rawInput = url.searchParams.get('input');
    if (rawInput !== null) {
      try {
        input = JSON.parse(rawInput);
      } catch {
        return undefined; // the standard adapter answers malformed input in its own words
      }
    }
    const headers = { 'content-type': 'application/json' };
    try {
      const data = await invokeProcedure(procedure, { ctx, type: 'query', path, input });
      const body = data instanceof JsonText ? `{"result":{"data":${data.text}}}` : JSON.stringify({ result: { data } });
      return new Response(body, { status: 200, headers });
    } catch (cause) {
      const error = getTRPCErrorFromUnknown(cause);
      const shape = getErrorShape({ config, error, type: 'query', path, input, ctx });
      const status = (shape as { data?: { httpStatus?: number } }).data?.httpStatus ?? 500;
      return new Response(JSON.stringify({ error: shape }), { status, headers });
    }
  };
}
