/**
 * POSIX path helpers with node:path's results (`resolve`, `dirname`,
 * `basename`), for the modules that every dump and restore loads: the
 * first `node:` module a program imports starts Deno's Node compatibility
 * layer, which costs more than these few lines (tests/path_test.ts compares
 * them with node:path).
 *
 * @module
 */

/** `path` with `.`, `..` and repeated slashes removed (no trailing slash; "" for nothing). */
function normalizeParts(path: string): string[] {
  const out: string[] = [];
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (out.length && out[out.length - 1] !== "..") out.pop();
      else if (!path.startsWith("/")) out.push("..");
    } else out.push(part);
  }
  return out;
}

/** The absolute, normalized path of `paths` joined right to left from the working directory. */
export function resolve(...paths: string[]): string {
  let joined = "";
  for (let i = paths.length - 1; i >= 0 && !joined.startsWith("/"); i--) {
    if (paths[i] === "") continue;
    joined = joined ? `${paths[i]}/${joined}` : paths[i];
  }
  if (!joined.startsWith("/")) joined = joined ? `${Deno.cwd()}/${joined}` : Deno.cwd();
  return `/${normalizeParts(joined).join("/")}`;
}

/** `path` without its trailing slashes (a path of only slashes stays "/"). */
function trimTrailing(path: string): string {
  let end = path.length;
  while (end > 1 && path[end - 1] === "/") end--;
  return path.slice(0, end);
}

/** The directory part of `path`, as node:path's `dirname`. */
export function dirname(path: string): string {
  if (path === "") return ".";
  const p = trimTrailing(path);
  const slash = p.lastIndexOf("/");
  if (slash < 0) return ".";
  if (slash === 0) return "/";
  return p.slice(0, slash);
}

/** The last part of `path`, as node:path's `basename` (without a suffix argument). */
export function basename(path: string): string {
  const p = trimTrailing(path);
  if (p === "/") return "";
  return p.slice(p.lastIndexOf("/") + 1);
}
