/**
 * The one JSON field reader: every decoder of data from another node, a file or a tool checks
 * objects and fields with these (each failure names the field path and what it must be).
 */

/** A parsed JSON object. */
export type JsonObject = Record<string, unknown>;

/** True for a plain JSON object (not null, not an array). */
export function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Throws unless `o` has every `required` key and no key outside `required` and `optional`. */
export function exactKeys(
  o: JsonObject,
  required: readonly string[],
  optional: readonly string[],
  where: string,
): void {
  for (const k of required) if (!(k in o)) throw new Error(`${where}.${k} is missing`);
  for (const k of Object.keys(o))
    if (!required.includes(k) && !optional.includes(k)) throw new Error(`${where}.${k} is not a known field`);
}

/** A non-negative safe integer. */
export function readCount(v: unknown, where: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)
    throw new Error(`${where} must be a non-negative integer`);
  return v;
}

/** An RFC 3339 UTC time, kept as its text. */
export function readTime(v: unknown, where: string): string {
  if (typeof v !== 'string' || !/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$/.test(v) || Number.isNaN(Date.parse(v)))
    throw new Error(`${where} must be an RFC 3339 UTC time`);
  return v;
}

/** A boolean. */
export function readBool(v: unknown, where: string): boolean {
  if (typeof v !== 'boolean') throw new Error(`${where} must be true or false`);
  return v;
}

/** A string of at most `max` characters. */
export function readText(v: unknown, where: string, max = 256): string {
  if (typeof v !== 'string' || v.length > max)
    throw new Error(`${where} must be a string of at most ${max} characters`);
  return v;
}

/**
 * Parses `text` as one JSON object of at most `maxBytes` bytes whose `v` field is `version`;
 * throws a sentence (to be prefixed with what was read) naming what is wrong.
 */
export function parseVersionedObject(text: string, maxBytes: number, version: number): JsonObject {
  if (Buffer.byteLength(text) > maxBytes) throw new Error(`is larger than ${maxBytes} bytes`);
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new Error(`is not valid JSON (${(err as Error).message})`);
  }
  if (!isObject(v)) throw new Error('must be a JSON object');
  if (v.v !== version) throw new Error(`has version ${JSON.stringify(v.v)}; this build understands only ${version}`);
  return v;
}
