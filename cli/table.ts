/**
 * Plain-text tables for the commands that print them (`show`, `check`), in
 * a module of their own so that the other commands do not load cli-table3.
 *
 * @module
 */

import Table from "npm:cli-table3@0.6.5";

/** Options of {@link renderTable}. */
export interface TableOptions {
  /** Column widths (characters, padding included, borders not); null columns fit their content. */
  widths?: (number | null)[];
}

/**
 * Renders rows as a boxed text table with a header row, without colours.
 * Long cells wrap (at word boundaries) when a width is given for their column.
 */
export function renderTable(
  head: readonly string[],
  rows: readonly (readonly string[])[],
  opts: TableOptions = {},
): string {
  const table = new Table({
    head: [...head],
    style: { head: [], border: [] },
    // No rule between body rows: one line per row unless a cell wraps.
    chars: { "mid": "", "left-mid": "", "mid-mid": "", "right-mid": "" },
    ...(opts.widths ? { colWidths: opts.widths, wordWrap: true } : {}),
  });
  for (const r of rows) table.push([...r]);
  return table.toString();
}

/** Width of the terminal on stdout, or `undefined` when stdout is not a terminal. */
export function terminalColumns(): number | undefined {
  if (!Deno.stdout.isTerminal()) return undefined;
  try {
    return Deno.consoleSize().columns;
  } catch {
    return undefined;
  }
}
