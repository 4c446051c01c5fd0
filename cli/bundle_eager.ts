/**
 * The rewrite of a start-up bundle (cli/bundle.ts) that makes V8 compile
 * its functions with the module, so that they are kept in Deno's code
 * cache: loaded only when a bundle is built.
 *
 * @module
 */

/** One top-level function declaration of a bundle (line numbers, 0-based). */
interface Declaration {
  /** Its name. */
  name: string;
  /** First and last line. */
  first: number;
  last: number;
}

/** The column-0 function declaration that starts a line of a bundle. */
const DECLARATION = /^(async )?function(\*?) ?([A-Za-z_$][\w$]*)\(/;

/** True when `body` parses as the body of a strict async function (`import.meta` aside). */
function parses(body: string): boolean {
  try {
    const AsyncFunction = (async () => {}).constructor as FunctionConstructor;
    new AsyncFunction(`"use strict";\n${body.replaceAll("import.meta", "_import_meta")}\n`);
    return true;
  } catch {
    return false;
  }
}

/**
 * True when the `}` at line `last` may be the text of a template literal
 * of the declaration at line `first`: one of its lines has a backtick and
 * the text up to it does not parse as the declaration alone.
 */
function mayEndInTemplate(lines: readonly string[], first: number, last: number): boolean {
  const text = lines.slice(first, last + 1);
  return text.some((l) => l.includes("`")) && !parses(`(${text.join("\n")}\n);`);
}

/** How far {@link templateEnd} looks for the end of a declaration (lines). */
const TEMPLATE_SEARCH_LINES = 2000;

/**
 * The last line of the declaration starting at line `first` whose body has
 * a line at column 0 (line `from`: the text of a multi-line template
 * literal, the only code of a bundle that is not indented): the first
 * line `}` after it that ends a text parsing as the declaration alone, or
 * undefined. A `}` inside the template literal leaves it unterminated, so
 * that cut does not parse.
 */
function templateEnd(lines: readonly string[], first: number, from: number): number | undefined {
  const last = Math.min(lines.length, from + TEMPLATE_SEARCH_LINES);
  for (let k = from; k < last; k++) {
    if (lines[k] === "}" && parses(`(${lines.slice(first, k + 1).join("\n")}\n);`)) return k;
  }
  return undefined;
}

/**
 * The bundle `code` with its top-level function declarations made eager:
 * each moves to the top of the module as `var f = (function (...) {...});`.
 * V8 compiles a parenthesised function at once, with the module, and Deno
 * writes a module's code cache right after that compile: a lazily compiled
 * function (every declaration otherwise) is compiled anew by every command
 * that calls it, an eager one comes from the cache (25 to 40 ms less CPU
 * per small dump or restore; docs/PERFORMANCE.md, "issue 10, third pass,
 * branch startup3").
 *
 * Same behaviour: the declarations are hoisted in the source, so the `var`s
 * come first, before any statement can call them; the name (`f.name`),
 * scope and body are unchanged. Only exact cuts are made: the code before,
 * between and after the declarations is parsed on its own (V8's parser), and
 * each declaration alone, so a line that only looks like a declaration
 * (inside a template literal, a comment or a block) is never moved, and a
 * declaration holding a multi-line template literal ends at the first
 * column-0 `}` that makes it parse ({@link templateEnd}): a
 * declaration that does not parse alone, or whose preceding piece does not,
 * stays where it is (hoisted, compiled lazily), and that piece becomes part
 * of the next one's.
 *
 * With `hot`, only the declarations named there move: the functions a
 * typical run of the command calls (cli/bundle_hot.json). The others stay
 * lazy declarations, out of the code cache that every start of the
 * command reads (an eager function nobody calls costs deserialization and
 * saves nothing; docs/PERFORMANCE.md, "issue 10, fifth pass, branch
 * startup5"). A function missing from the list only runs as it did before
 * this rewrite existed (compiled at its first call).
 */
export function eagerFunctions(code: string, hot?: ReadonlySet<string>): string {
  const lines = code.split("\n");
  const found: Declaration[] = [];
  for (let i = 0; i < lines.length; i++) {
    const m = DECLARATION.exec(lines[i]);
    if (!m) continue;
    let j = i;
    if (!lines[i].endsWith("}")) {
      j = i + 1;
      while (j < lines.length && (lines[j] === "" || lines[j][0] === " ")) j++;
      // A line at column 0 that is not the end, or a "}" that might be a template's text.
      if (j < lines.length && (lines[j] !== "}" || mayEndInTemplate(lines, i, j))) {
        j = templateEnd(lines, i, j) ?? j;
      }
    }
    if (j >= lines.length) break;
    found.push({ name: m[3], first: i, last: j });
    i = j;
  }
  const moved: Declaration[] = [];
  let from = 0; // the first line after the last declaration moved
  for (const d of found) {
    if (hot && !hot.has(d.name)) continue;
    const before = lines.slice(from, d.first).join("\n");
    const text = lines.slice(d.first, d.last + 1).join("\n");
    if (!lines[d.last].endsWith("}") || !parses(`(${text}\n);`) || !parses(before)) continue;
    moved.push(d);
    from = d.last + 1;
  }
  if (moved.length === 0) return code;
  const head: string[] = [];
  const rest: string[] = [];
  let at = 0;
  for (const d of moved) {
    rest.push(...lines.slice(at, d.first));
    const body = lines.slice(d.first, d.last + 1);
    const m = DECLARATION.exec(body[0])!;
    body[0] = `var ${m[3]} = (${m[1] ?? ""}function${m[2]} (${body[0].slice(m[0].length)}`;
    body[body.length - 1] += ");";
    head.push(...body);
    at = d.last + 1;
  }
  rest.push(...lines.slice(at));
  return [...head, ...rest].join("\n");
}
