import { getTRPCErrorFromUnknown, type AnyProcedure, type ProcedureType, type TRPCError } from '@trpc/server';

type MiddlewareResult = { ok: true; data: unknown } | { ok: false; error: TRPCError };
interface NextOptions {
  ctx?: object;
  input?: unknown;
  getRawInput?: () => Promise<unknown>;
}
interface MiddlewareOptions {
  ctx: object;
  type: ProcedureType;
  path: string;
  input: unknown;
  getRawInput: () => Promise<unknown>;
  signal: AbortSignal | undefined;
}
type Middleware = (opts: MiddlewareOptions & { meta: unknown; next: (next?: NextOptions) => Promise<MiddlewareResult> }) => Promise<MiddlewareResult>;
interface ProcedureDef {
  middlewares: Middleware[];
  meta: unknown;
}

/**
 * Calls a procedure as tRPC's server-side caller does — the same middlewares, in order, under the same
 * contract — for the REST transport and the tRPC fast path. tRPC's own loop copies its options with a
 * property-by-property spread helper two or three times per middleware, which cost these transports 10-14 %
 * of their CPU on a list read; this loop uses native spread. The transports' tests compare their answers with
 * tRPC's standard adapter, so a change of that contract in a tRPC upgrade fails them.
 */
export async function invokeProcedure(procedure: AnyProcedure, call: { ctx: object; type: ProcedureType; path: string; input: unknown }): Promise<unknown> {
  const def = procedure._def as unknown as ProcedureDef;
  const input = call.input;
  const result = await runMiddleware(def, 0, {
    ctx: call.ctx,
    type: call.type,
    path: call.path,
    input: undefined,
    getRawInput: () => Promise.resolve(input),
    signal: undefined,
  });
  if (!result.ok) throw result.error;
  return result.data;
}

async function runMiddleware(def: ProcedureDef, index: number, opts: MiddlewareOptions): Promise<MiddlewareResult> {
  try {
    // Object literals of one fixed shape, not spreads: each call builds two of these per middleware.
    return await def.middlewares[index]!({
      ctx: opts.ctx,
      type: opts.type,
      path: opts.path,
      input: opts.input,
      getRawInput: opts.getRawInput,
      signal: opts.signal,
      meta: def.meta,
      next: (next) =>
        runMiddleware(def, index + 1, {
          ctx: next?.ctx ? { ...opts.ctx, ...next.ctx } : opts.ctx,
          type: opts.type,
          path: opts.path,
          input: next && 'input' in next ? next.input : opts.input,
          getRawInput: next?.getRawInput ?? opts.getRawInput,
          signal: opts.signal,
        }),
    });
  } catch (cause) {
    return { ok: false, error: getTRPCErrorFromUnknown(cause) };
  }
}
