import { eq } from 'drizzle-orm';
import { ConfigError, type Config } from './config.js';
import type { Db } from './db/client.js';
import { organizations } from './db/schema/organizations.js';
import { users } from './db/schema/users.js';
import type { Clock } from './lib/clock.js';
import type { IdGenerator } from './lib/ids.js';
import type { Logger } from './lib/logger.js';
import { generatePassword, hashPassword, passwordProblem } from './lib/passwords.js';

export interface BootstrapResult {
  organizationId: string;
  superUserId: string;
  /** Set only when this start created the super admin with a generated password. */
  generatedPassword?: string;
}

/**
 * First start: creates the default organisation and the super admin. Later starts find both and change
 * nothing (the super admin's password is never reset from the environment).
 */
export async function bootstrap(deps: { db: Db; config: Config; clock: Clock; ids: IdGenerator; log: Logger }): Promise<BootstrapResult> {
  const { bootstrap: cfg, isProduction } = deps.config;
  return deps.db.transaction(async (tx) => {
    const [existingSuper] = await tx.select().from(users).where(eq(users.role, 'super_admin')).limit(1);
    if (existingSuper) return { organizationId: existingSuper.organizationId, superUserId: existingSuper.id };

    let password = cfg.superUserPassword;
    let generatedPassword: string | undefined;
    if (!password) {
      if (isProduction) {
        throw new ConfigError('SUPER_USER_PASSWORD: required in production to create the first super admin (a generated password is refused)');
      }
      password = generatedPassword = generatePassword();
    }
    const problem = passwordProblem(password);
    if (problem) throw new ConfigError(`SUPER_USER_PASSWORD: ${problem}`);

    const now = deps.clock.now();
    let [org] = await tx.select().from(organizations).where(eq(organizations.name, cfg.defaultOrganizationName));
    if (!org) {
      [org] = await tx
        .insert(organizations)
        .values({ id: deps.ids.uuid(), name: cfg.defaultOrganizationName, createdAt: now, updatedAt: now })
        .returning();
    }
    const [user] = await tx
      .insert(users)
      .values({
        id: deps.ids.uuid(),
        email: cfg.superUserEmail,
        name: 'Super Admin',
        organizationId: org!.id,
        role: 'super_admin',
        status: 'active',
        passwordHash: await hashPassword(password),
        createdAt: now,
        updatedAt: now,
      })
      .returning();
    deps.log.info({ organization_id: org!.id, user_id: user!.id, email: cfg.superUserEmail }, 'created default organisation and super admin');
    return { organizationId: org!.id, superUserId: user!.id, generatedPassword };
  });
}
