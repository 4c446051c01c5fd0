/**
 * A small shape checker for the JSON an image holds, with the subset of
 * zod's API that engine/image/schema.ts and engine/fds/inet_schema.ts use
 * (`import * as z from "./shape.ts"`): strings, numbers, booleans,
 * literals, enums, arrays, tuples, unions, records and loose objects, with
 * bounds, patterns, refinements, `optional()` and `nullable()`.
 *
 * It exists because every dump and restore reads these schemas: zod costs
 * ~30 ms of CPU to load (tens of modules), a large share of a small
 * restore. The checks are the same (zod 4 semantics for what is used here:
 * integers are safe integers, objects keep unknown keys, a refinement runs
 * only on a value that passed its shape); `safeParse` reports the first
 * problem with its path and a one-line message, and never returns data
 * (callers only ask whether the value fits).
 *
 * @module
 */

/** One element of the path to a problem: an object key or an array index. */
export type PathKey = string | number;

/** A problem found in a value. */
export interface Issue {
  /** Where, from the checked value down. */
  path: PathKey[];
  /** What is wrong, one line. */
  message: string;
}

/** What `safeParse` says. */
export type ParseResult = { success: true } | { success: false; error: { issues: Issue[] } };

/** What a `superRefine` callback may report problems to. */
export interface RefineContext {
  /** Records a problem (`path` relative to the refined value). */
  addIssue(issue: { code?: string; message: string; path?: PathKey[] }): void;
}

/** The type a shape accepts. */
export type Infer<S> = S extends Shape<infer T> ? T : never;

/**
 * Returns the problem of `x` at `path`, or undefined when it fits. `path`
 * is shared while a value is walked (pushed and popped around each
 * element): an issue keeps a copy.
 */
type Check = (x: unknown, path: PathKey[]) => Issue | undefined;

function typeName(x: unknown): string {
  if (x === null) return "null";
  if (Array.isArray(x)) return "array";
  if (typeof x === "number" && Number.isNaN(x)) return "NaN";
  return typeof x;
}

function expected(what: string, x: unknown, path: PathKey[]): Issue {
  return {
    path: path.slice(),
    message: `Invalid input: expected ${what}, received ${typeName(x)}`,
  };
}

/** A shape: a check of an unknown value against the type `T`. */
export class Shape<T> {
  /** Phantom: the accepted type (never set). */
  declare readonly _type: T;
  /** The base check (type and structure), then each added check in order. */
  protected readonly checks: readonly Check[];

  constructor(checks: readonly Check[]) {
    this.checks = checks;
  }

  /** The first problem of `x` at `path`, or undefined. */
  problem(x: unknown, path: PathKey[]): Issue | undefined {
    // Indexed (no iterator): images of 10,000 mappings run this ~10^6 times.
    const checks = this.checks;
    for (let i = 0; i < checks.length; i++) {
      const issue = checks[i](x, path);
      if (issue) return issue;
    }
    return undefined;
  }

  /** Checks `x`: success, or the first problem (zod's `safeParse`, without the data). */
  safeParse(x: unknown): ParseResult {
    const issue = this.problem(x, []);
    return issue ? { success: false, error: { issues: [issue] } } : { success: true };
  }

  /** The same checks plus `check`, as a shape of the same class. */
  protected with(check: Check): this {
    const Ctor = this.constructor as new (checks: readonly Check[]) => this;
    return new Ctor([...this.checks, check]);
  }

  /**
   * The same checks, skipped for a value `accepts` (a fast test that must
   * say true only of values these checks pass; anything it is unsure of is
   * checked as before, so verdicts, paths and messages stay the same).
   */
  fastPath(accepts: (x: unknown) => boolean): Shape<T> {
    return new Shape<T>([(x, p) => accepts(x) ? undefined : this.problem(x, p)]);
  }

  /** Also accepts undefined (and a missing key). */
  optional(): Shape<T | undefined> {
    return new Shape<T | undefined>([(x, p) => x === undefined ? undefined : this.problem(x, p)]);
  }

  /** Also accepts null. */
  nullable(): Shape<T | null> {
    return new Shape<T | null>([(x, p) => x === null ? undefined : this.problem(x, p)]);
  }

  /** Also requires `ok(value)`; else the problem `message` (at `path` below the value). */
  refine(
    ok: (value: T) => boolean,
    message: string | { message: string; path?: PathKey[] },
  ): Shape<T> {
    const m = typeof message === "string" ? { message } : message;
    return new Shape<T>([
      (x, p) =>
        this.problem(x, p) ??
          (ok(x as T) ? undefined : { path: [...p, ...(m.path ?? [])], message: m.message }),
    ]);
  }

  /** Also runs `refine` on a value that fits; the first problem it adds is reported. */
  superRefine(refine: (value: T, ctx: RefineContext) => void): Shape<T> {
    return new Shape<T>([(x, p) => {
      const base = this.problem(x, p);
      if (base) return base;
      let first: Issue | undefined;
      refine(x as T, {
        addIssue(i) {
          first ??= { path: [...p, ...(i.path ?? [])], message: i.message };
        },
      });
      return first;
    }]);
  }
}

/** A string shape, with length bounds and patterns. */
export class StringShape extends Shape<string> {
  /** The string must match `re`. */
  regex(re: RegExp, message?: string): StringShape {
    return this.with((x, path) =>
      re.test(x as string)
        ? undefined
        : { path: path.slice(), message: message ?? `Invalid string: must match pattern ${re}` }
    );
  }

  /** At least `n` characters. */
  min(n: number): StringShape {
    return this.with((x, path) =>
      (x as string).length >= n
        ? undefined
        : { path: path.slice(), message: `Too small: expected string to have >=${n} characters` }
    );
  }

  /** At most `n` characters. */
  max(n: number): StringShape {
    return this.with((x, path) =>
      (x as string).length <= n
        ? undefined
        : { path: path.slice(), message: `Too big: expected string to have <=${n} characters` }
    );
  }
}

/** A number shape (finite), with integer and range checks. */
export class NumberShape extends Shape<number> {
  /** A safe integer. */
  int(): NumberShape {
    return this.with((x, path) => Number.isSafeInteger(x) ? undefined : expected("int", x, path));
  }

  /** At least `n`. */
  min(n: number): NumberShape {
    return this.with((x, path) =>
      (x as number) >= n
        ? undefined
        : { path: path.slice(), message: `Too small: expected number to be >=${n}` }
    );
  }

  /** At most `n`. */
  max(n: number): NumberShape {
    return this.with((x, path) =>
      (x as number) <= n
        ? undefined
        : { path: path.slice(), message: `Too big: expected number to be <=${n}` }
    );
  }

  /** At least 0. */
  nonnegative(): NumberShape {
    return this.min(0);
  }
}

/** An array shape, with length bounds. */
export class ArrayShape<E> extends Shape<E[]> {
  /** At least `n` elements. */
  min(n: number): ArrayShape<E> {
    return this.with((x, path) =>
      (x as unknown[]).length >= n
        ? undefined
        : { path: path.slice(), message: `Too small: expected array to have >=${n} items` }
    );
  }

  /** At most `n` elements. */
  max(n: number): ArrayShape<E> {
    return this.with((x, path) =>
      (x as unknown[]).length <= n
        ? undefined
        : { path: path.slice(), message: `Too big: expected array to have <=${n} items` }
    );
  }

  /** Exactly `n` elements. */
  length(n: number): ArrayShape<E> {
    return this.with((x, path) =>
      (x as unknown[]).length === n
        ? undefined
        : { path: path.slice(), message: `Invalid length: expected array to have ${n} items` }
    );
  }
}

/** Any shape (the type of a schema whose accepted type does not matter). */
export type ZodType = Shape<unknown>;

/**
 * The shape `build` returns, built at its first check (zod's `z.lazy`): a
 * module's large schemas then cost nothing at import for a command that
 * never checks them (a dump reads no image).
 */
export function lazy<T>(build: () => Shape<T>): Shape<T> {
  let built: Shape<T> | undefined;
  return new Shape<T>([(x, p) => (built ??= build()).problem(x, p)]);
}

/** A string. */
export function string(): StringShape {
  return new StringShape([(x, p) => typeof x === "string" ? undefined : expected("string", x, p)]);
}

/** A finite number. */
export function number(): NumberShape {
  return new NumberShape([
    (x, p) => typeof x === "number" && Number.isFinite(x) ? undefined : expected("number", x, p),
  ]);
}

/** A boolean. */
export function boolean(): Shape<boolean> {
  return new Shape<boolean>([
    (x, p) => typeof x === "boolean" ? undefined : expected("boolean", x, p),
  ]);
}

/** Exactly `value`. */
export function literal<const V extends string | number | boolean>(value: V): Shape<V> {
  return new Shape<V>([
    (x, path) =>
      x === value
        ? undefined
        : { path: path.slice(), message: `Invalid input: expected ${JSON.stringify(value)}` },
  ]);
}

function enumOf<const V extends string>(values: readonly V[]): Shape<V> {
  const set = new Set<unknown>(values);
  return new Shape<V>([(x, path) =>
    set.has(x) ? undefined : {
      path: path.slice(),
      message: `Invalid option: expected one of ${values.map((v) => JSON.stringify(v)).join("|")}`,
    }]);
}
export { enumOf as enum };

/** Arrays up to this length are walked by a loop, longer ones by `findIndex` (see `array`). */
const SHORT_ARRAY = 32;

/** An array whose elements all fit `element`. */
export function array<E>(element: Shape<E>): ArrayShape<E> {
  return new ArrayShape<E>([(x, p) => {
    if (!Array.isArray(x)) return expected("array", x, p);
    if (x.length <= SHORT_ARRAY) {
      for (let i = 0; i < x.length; i++) {
        p.push(i);
        const issue = element.problem(x[i], p);
        p.pop();
        if (issue) return issue;
      }
      return undefined;
    }
    // A long one by findIndex, which visits every index (holes too) in order as the loop
    // above does: a loop of 10,000 rounds (an image's mappings) would be compiled for
    // on-stack replacement on V8's worker threads, for a loop that runs once.
    let issue: Issue | undefined;
    x.findIndex((e, i) => {
      p.push(i);
      issue = element.problem(e, p);
      p.pop();
      return issue !== undefined;
    });
    return issue;
  }]);
}

/** An array of exactly the given elements' shapes. */
export function tuple<const S extends readonly Shape<unknown>[]>(
  elements: S,
): Shape<{ [K in keyof S]: Infer<S[K]> }> {
  return new Shape([(x, p) => {
    if (!Array.isArray(x)) return expected("tuple", x, p);
    if (x.length !== elements.length) {
      return { path: p.slice(), message: `Invalid length: expected ${elements.length} items` };
    }
    for (let i = 0; i < elements.length; i++) {
      p.push(i);
      const issue = elements[i].problem(x[i], p);
      p.pop();
      if (issue) return issue;
    }
    return undefined;
  }]);
}

/** One of `options` (the first that fits). */
export function union<const S extends readonly Shape<unknown>[]>(
  options: S,
): Shape<Infer<S[number]>> {
  return new Shape([
    (x, path) =>
      options.some((o) => o.problem(x, path) === undefined)
        ? undefined
        : { path: path.slice(), message: "Invalid input" },
  ]);
}

function isPlainObject(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

/** An object whose own keys fit `key` and whose values fit `value`. */
export function record<V>(key: Shape<string>, value: Shape<V>): Shape<Record<string, V>> {
  return new Shape([(x, p) => {
    if (!isPlainObject(x)) return expected("record", x, p);
    for (const k of Object.keys(x)) {
      p.push(k);
      const issue = key.problem(k, p) ?? value.problem(x[k], p);
      p.pop();
      if (issue) return issue;
    }
    return undefined;
  }]);
}

/** An object with (at least) the given properties; other keys are allowed. */
export function looseObject<P extends Record<string, Shape<unknown>>>(
  props: P,
): Shape<{ [K in keyof P]: Infer<P[K]> } & Record<string, unknown>> {
  const keys = Object.keys(props);
  const shapes = keys.map((k) => props[k]);
  return new Shape([(x, p) => {
    if (!isPlainObject(x)) return expected("object", x, p);
    for (let i = 0; i < keys.length; i++) {
      p.push(keys[i]);
      const issue = shapes[i].problem(x[keys[i]], p);
      p.pop();
      if (issue) return issue;
    }
    return undefined;
  }]);
}
