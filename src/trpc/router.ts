import { auditRouter } from '../domains/audit/router.js';
import { authRouter } from '../domains/auth/router.js';
import { credentialsRouter } from '../domains/credentials/router.js';
import { organizationsRouter } from '../domains/organizations/router.js';
import { projectsRouter } from '../domains/projects/router.js';
import { usersRouter } from '../domains/users/router.js';
import { router } from './init.js';

/**
 * Order matters for REST matching only where a literal segment and a parameter compete; the REST adapter
 * ranks literal segments first, so declaration order here is free.
 */
export const appRouter = router({
  auth: authRouter,
  users: usersRouter,
  organizations: organizationsRouter,
  audit: auditRouter,
  projects: projectsRouter,
  credentials: credentialsRouter,
});

/** The type the dashboard imports for its typed client. */
export type AppRouter = typeof appRouter;
