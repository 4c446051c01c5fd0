/**
 * cryo's version (also recorded in every manifest).
 *
 * @module
 */

/** The tool version. */
export const TOOL_VERSION = "0.1.0";
