import type { Deps } from '../deps.js';
import type { Logger } from '../lib/logger.js';

/** What every procedure receives. Built once per request from the Fetch Request by both transports. */
export interface RequestContext {
  deps: Deps;
  requestId: string;
  ip: string;
  userAgent: string;
  authorization: string | undefined;
  log: Logger;
}

export interface RequestInfo {
  requestId: string;
  ip: string;
  log: Logger;
}

export function createRequestContext(deps: Deps, req: Request, info: RequestInfo): RequestContext {
  return {
    deps,
    requestId: info.requestId,
    ip: info.ip,
    userAgent: (req.headers.get('user-agent') ?? '').slice(0, 200),
    authorization: req.headers.get('authorization') ?? undefined,
    log: info.log,
  };
}
