import { z } from 'zod';

interface FieldSpec {
  secret: boolean;
  required: boolean;
  schema: z.ZodType;
}

const apiKey = { secret: true, required: true, schema: z.string().min(1).max(4096) } satisfies FieldSpec;
const text = (required: boolean, max = 200): FieldSpec => ({ secret: false, required, schema: z.string().min(1).max(max) });
const url = (required: boolean): FieldSpec => ({ secret: false, required, schema: z.url('must be an http(s) URL').max(2000) });

/** Every credential kind and its fields; `secret` fields are encrypted and only ever shown masked. */
export const CREDENTIAL_KINDS = {
  openai: { api_key: apiKey, organization: text(false), base_url: url(false) },
  azure_openai: { api_key: apiKey, endpoint: url(true), api_version: text(true, 40), deployment: text(false) },
  anthropic: { api_key: apiKey, base_url: url(false) },
  aws_bedrock: {
    access_key_id: text(true, 128),
    secret_access_key: { secret: true, required: true, schema: z.string().min(1).max(1024) },
    session_token: { secret: true, required: false, schema: z.string().min(1).max(4096) },
    region: text(true, 40),
  },
  google_vertex: {
    project_id: text(true),
    location: text(true, 60),
    service_account_json: { secret: true, required: true, schema: z.string().min(2).max(20_000) },
  },
  huggingface: { token: apiKey },
  cohere: { api_key: apiKey },
  mistral: { api_key: apiKey },
  groq: { api_key: apiKey },
  together: { api_key: apiKey },
  deepseek: { api_key: apiKey },
  http: {
    base_url: url(true),
    headers: { secret: true, required: false, schema: z.record(z.string().min(1).max(200), z.string().max(8192)) },
  },
} as const satisfies Record<string, Record<string, FieldSpec>>;

export type CredentialKind = keyof typeof CREDENTIAL_KINDS;
export const CREDENTIAL_KIND_NAMES = Object.keys(CREDENTIAL_KINDS) as [CredentialKind, ...CredentialKind[]];

export const MASK_PREFIX = '••••';

/** At most the last 4 characters of a secret, and only of one long enough that they give nothing away. */
export function maskOf(value: unknown): string {
  if (typeof value === 'string') return value.length >= 12 ? `${MASK_PREFIX}${value.slice(-4)}` : MASK_PREFIX;
  if (value && typeof value === 'object') return `${MASK_PREFIX} (${Object.keys(value).length} values: ${Object.keys(value).join(', ')})`;
  return MASK_PREFIX;
}

export interface SplitValues {
  fields: Record<string, unknown>;
  secrets: Record<string, unknown>;
  masks: Record<string, string>;
}

export type FieldIssue = { field: string; message: string };

/** Validates `values` against the kind's fields and splits them into plain fields and secrets. */
export function splitValues(kind: CredentialKind, values: Record<string, unknown>): SplitValues | FieldIssue[] {
  const spec: Record<string, FieldSpec> = CREDENTIAL_KINDS[kind];
  const issues: FieldIssue[] = [];
  for (const key of Object.keys(values)) if (!(key in spec)) issues.push({ field: `values.${key}`, message: `unknown field for kind ${kind}` });
  const out: SplitValues = { fields: {}, secrets: {}, masks: {} };
  for (const [name, field] of Object.entries(spec)) {
    const value = values[name];
    if (value === undefined) {
      if (field.required) issues.push({ field: `values.${name}`, message: 'is required' });
      continue;
    }
    const parsed = field.schema.safeParse(value);
    if (!parsed.success) {
      issues.push({ field: `values.${name}`, message: parsed.error.issues[0]?.message ?? 'is invalid' });
      continue;
    }
    if (field.secret) {
      out.secrets[name] = parsed.data;
      out.masks[name] = maskOf(parsed.data);
    } else out.fields[name] = parsed.data;
  }
  return issues.length > 0 ? issues : out;
}

export const secretFieldsOf = (kind: CredentialKind) => Object.entries(CREDENTIAL_KINDS[kind] as Record<string, FieldSpec>).filter(([, f]) => f.secret).map(([n]) => n);
