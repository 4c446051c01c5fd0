/**
 * `deno run -A scripts/fold_code.ts > ffi/crc32_fold_code.ts`: writes the
 * module of the CRC fold's x86-64 code as literals, from ffi/crc32_fold.ts
 * `foldCode` (tests/crc32_test.ts checks that the literals are its bytes).
 *
 * @module
 */

import { foldCode } from "../ffi/crc32_fold.ts";

const variants: [string, boolean, boolean][] = [
  ["NARROW", false, false],
  ["WIDE", false, true],
  ["NARROW_FLAGGED", true, false],
  ["WIDE_FLAGGED", true, true],
];

const out: string[] = [
  `/**
 * The CRC fold's x86-64 code (ffi/crc32_fold.ts \`foldCode\`) as literals:
 * generating it ran ~1 ms of cold code on cryo's main thread at the start
 * of every restore (docs/PERFORMANCE.md, "Small restores, eleventh pass").
 * Written by scripts/fold_code.ts; tests/crc32_test.ts checks that each is
 * the generator's bytes.
 *
 * @module
 */
`,
];
for (const [name, flag, wide] of variants) {
  const hex = Array.from(foldCode(flag, wide), (b) => b.toString(16).padStart(2, "0")).join("");
  const lines: string[] = [];
  for (let i = 0; i < hex.length; i += 92) lines.push(`  "${hex.slice(i, i + 92)}",`);
  out.push(
    `/** \`foldCode(${flag}, ${wide})\`, hex. */\n// deno-fmt-ignore\nconst ${name} = [\n${
      lines.join("\n")
    }\n].join("");\n`,
  );
}
out.push(`/** The bytes of \`foldCode(doneFlag, wide)\`, from the literals. */
export function foldCodeLiteral(doneFlag: boolean, wide: boolean): Uint8Array {
  const hex = doneFlag ? (wide ? WIDE_FLAGGED : NARROW_FLAGGED) : (wide ? WIDE : NARROW);
  return Uint8Array.fromHex(hex); // native: a loop over the pairs is ~0.6 ms of cold code
}
`);
console.log(out.join("\n").trimEnd());
