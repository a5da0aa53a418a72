import { z } from 'zod';
import { router } from '../../trpc/init.js';
import { anonymousProcedure, authedProcedure } from '../../trpc/procedures.js';
import { LoginInput, LogoutResult, MeDto, RefreshInput, TokenResponse } from './schemas.js';
import * as auth from './service.js';

const tags = ['auth'];

export const authRouter = router({
  login: anonymousProcedure
    .meta({
      openapi: { method: 'POST', path: '/auth/login', tags, summary: 'Sign in with email and password', protect: false },
      errors: [401, 403, 429],
    })
    .input(LoginInput)
    .output(TokenResponse)
    .mutation(({ ctx, input }) => auth.login(ctx.svc, input)),

  refresh: anonymousProcedure
    .meta({
      openapi: { method: 'POST', path: '/auth/refresh', tags, summary: 'Rotate the refresh token and get a new token pair', protect: false },
      errors: [401],
    })
    .input(RefreshInput)
    .output(TokenResponse)
    .mutation(({ ctx, input }) => auth.refresh(ctx.svc, input)),

  logout: authedProcedure
    .meta({ openapi: { method: 'POST', path: '/auth/logout', tags, summary: 'Revoke the refresh token family and the presented access token' } })
    .input(RefreshInput)
    .output(LogoutResult)
    .mutation(({ ctx, input }) => auth.logout(ctx.svc, input)),

  oauthExchange: anonymousProcedure
    .meta({
      openapi: {
        method: 'POST',
        path: '/auth/oauth/exchange',
        tags,
        summary: 'Trade the one-time code from the OAuth redirect (FRONTEND_URL) for the token pair',
        protect: false,
      },
      errors: [401, 404],
    })
    .input(z.strictObject({ code: z.string().min(1).max(200) }))
    .output(TokenResponse)
    .mutation(({ ctx, input }) => auth.oauthExchange(ctx.svc, input.code)),

  me: authedProcedure
    .meta({ openapi: { method: 'GET', path: '/auth/me', tags, summary: 'The signed-in user, organisation, role and permissions' } })
    .input(z.strictObject({}))
    .output(MeDto)
    .query(({ ctx }) => auth.me(ctx.svc)),
});
