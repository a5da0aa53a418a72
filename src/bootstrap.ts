import { eq } from 'drizzle-orm';
import { ConfigError, type Config } from './config.js';
import type { Deps } from './deps.js';
import { appendAudit } from './domains/audit/chain.js';
import type { ServiceCtx } from './domains/service-ctx.js';
import { insertUserAudited } from './domains/users/service.js';
import { organizations } from './db/schema/organizations.js';
import { users } from './db/schema/users.js';
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
export async function bootstrap(deps: Deps): Promise<BootstrapResult> {
  const { bootstrap: cfg, isProduction } = deps.config;
  return deps.db.transaction(async (tx) => {
    const system: ServiceCtx = {
      db: tx,
      clock: deps.clock,
      ids: deps.ids,
      log: deps.log,
      deps,
      actor: null,
      requestId: 'bootstrap',
      ip: 'unknown',
      userAgent: '',
    };
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
    const problem = passwordProblem(password, cfg.superUserEmail);
    if (problem) throw new ConfigError(`SUPER_USER_PASSWORD: ${problem}`);

    const now = deps.clock.now();
    let [org] = await tx.select().from(organizations).where(eq(organizations.name, cfg.defaultOrganizationName));
    if (!org) {
      [org] = await tx
        .insert(organizations)
        .values({ id: deps.ids.uuid(), name: cfg.defaultOrganizationName, createdAt: now, updatedAt: now })
        .returning();
      await appendAudit(system, { action: 'create', resourceType: 'organization', resourceId: org!.id, organizationId: null, details: { after: { name: org!.name } } });
    }
    const user = await insertUserAudited(
      system,
      {
        email: cfg.superUserEmail,
        name: 'Super Admin',
        organizationId: org!.id,
        role: 'super_admin',
        status: 'active',
        passwordHash: await hashPassword(password),
      },
      { chainOrganizationId: null },
    );
    deps.log.info({ organization_id: org!.id, user_id: user.id, email: cfg.superUserEmail }, 'created default organisation and super admin');
    return { organizationId: org!.id, superUserId: user.id, generatedPassword };
  });
}
