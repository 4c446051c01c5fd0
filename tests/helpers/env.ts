/**
 * Environment variables set around one call in a test.
 *
 * @module
 */

/**
 * Runs `fn` with `name` set to `value` in this process's environment, and
 * removes it afterwards (whether `fn` throws or not).
 */
export async function withEnv<T>(name: string, value: string, fn: () => Promise<T>): Promise<T> {
  Deno.env.set(name, value);
  try {
    return await fn();
  } finally {
    Deno.env.delete(name);
  }
}
