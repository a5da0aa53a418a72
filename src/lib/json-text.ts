import type { z } from 'zod';

/**
 * A value that PostgreSQL has already serialised as JSON. The REST and tRPC transports put its text into the
 * response as it is, so a list read never becomes JavaScript objects only to be serialised again; anything
 * else that serialises it (tRPC's own adapter, JSON.stringify) gets the parsed value through toJSON.
 */
export class JsonText<T> {
  /** Carries the type of the value for the procedure's output; never set. */
  declare readonly valueType?: T;

  constructor(readonly text: string) {}

  value(): T {
    return JSON.parse(this.text) as T;
  }

  toJSON(): T {
    return this.value();
  }
}

/**
 * The output schema of a procedure that may answer with a JsonText: the document and the client types still
 * come from `schema`, and other answers are still validated by it. It replaces `schema`'s parse method in place,
 * so pass a schema of its own (e.g. fresh from `.meta()`). A JsonText passes as it is — the
 * statement that builds it names the schema's fields, and a test compares the two (test/projects.test.ts,
 * 'a page serialised by PostgreSQL …').
 */
export function acceptsJsonText<S extends z.ZodType>(schema: S): z.ZodType<z.output<S>, z.input<S> | JsonText<z.output<S>>> {
  const parse = schema.parse.bind(schema);
  // tRPC validates outputs with the schema's own parse method, bound when the procedure is built.
  (schema as { parse: (value: unknown, params?: unknown) => unknown }).parse = (value, params) =>
    value instanceof JsonText ? value : parse(value, params as never);
  return schema as unknown as z.ZodType<z.output<S>, z.input<S> | JsonText<z.output<S>>>;
}
