/**
 * The node's IPsec generation, `<stateDir>/ipsec-generation`: a random 32-bit value (not 0)
 * mixed into the SPIs and keys of every SA of a pair whose two nodes publish one (ipsec/kdf.ts).
 *
 * The rule: a generation lives exactly as long as the node's XFRM state. An agent that starts
 * and finds its SAs in the kernel (a restart, an upgrade) keeps the stored generation, so
 * nothing changes in the kernel. An agent that finds none of its SAs (a reboot, a flushed or
 * new network namespace, a first start) draws a new one: its SAs then get new SPIs and keys,
 * never the old key with the sequence number back at 1 (which its peers would drop as replays,
 * and under which a rebooted receiver would accept replays of traffic captured before).
 * Public data: it is published on the Node object.
 */
import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { readBounded, writeAtomic } from './atomicfile.js';

/** Name of the file inside the state directory. */
export const GENERATION_FILE = 'ipsec-generation';

/** What {@link loadGeneration} decided. */
export interface GenerationDecision {
  readonly generation: number;
  /** True when a new one was drawn (and stored). */
  readonly fresh: boolean;
  /** Why, for the start-up log line. */
  readonly reason: string;
  /** A stored file that could not be used (it was replaced). */
  readonly warnings: readonly string[];
}

/** Parses the file's text: 8 lowercase hex digits (a trailing newline allowed), not all zero. */
export function parseGenerationFile(text: string): number | undefined {
  const m = /^([0-9a-f]{8})\n?$/.exec(text);
  if (m === null) return undefined;
  const g = Number.parseInt(m[1]!, 16);
  return g === 0 ? undefined : g;
}

/** A random generation, never 0 (0 means "none"). */
export function randomGeneration(random: (n: number) => Uint8Array = randomBytes): number {
  for (;;) {
    const g = Buffer.from(random(4)).readUInt32BE(0);
    if (g !== 0) return g;
  }
}

/**
 * Keeps the stored generation when the kernel still holds this node's SAs, else draws and
 * stores a new one.
 * @throws SealnetError `KEYSTORE_IO` when the file cannot be read (other than absent) or written.
 */
export async function loadGeneration(o: {
  readonly stateDir: string;
  /** Whether the kernel holds at least one XFRM state sealnet owns. */
  readonly kernelHoldsStates: boolean;
  readonly random?: (n: number) => Uint8Array;
}): Promise<GenerationDecision> {
  const dir = resolve(o.stateDir);
  const path = join(dir, GENERATION_FILE);
  const text = await readBounded(path, 64, 'IPsec generation');
  const stored = text === undefined ? undefined : parseGenerationFile(text);
  const warnings =
    text !== undefined && stored === undefined
      ? [`${path} is malformed (want 8 hex digits, not all zero); replacing it with a new generation`]
      : [];
  if (stored !== undefined && o.kernelHoldsStates)
    return { generation: stored, fresh: false, reason: 'the kernel holds this node’s SAs: kept', warnings };
  const generation = randomGeneration(o.random);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeAtomic(dir, GENERATION_FILE, Buffer.from(`${generation.toString(16).padStart(8, '0')}\n`), {
    how: 'replace',
    secret: false,
  });
  const reason = o.kernelHoldsStates
    ? 'no usable stored generation (the kernel holds SAs of an earlier one: they are replaced)'
    : stored === undefined
      ? 'first start with IPsec generations'
      : 'the kernel holds none of this node’s SAs (a reboot or lost XFRM state): new SPIs and keys';
  return { generation, fresh: true, reason, warnings };
}
