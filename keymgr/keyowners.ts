/**
 * First-seen key ownership, `<stateDir>/key-owners.json` (0600, atomic replace): which node a
 * public key was first seen with. An agent without it (a new node, a restarted IPsec agent)
 * could not tell the honest owner of a key from a node that copied it, and skipped both; with
 * it, the older claim wins. Public data only (keys and node names).
 */
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ioError, readBounded, writeAtomic } from './atomicfile.js';

/** Name of the file inside the state directory. */
export const KEY_OWNERS_FILE = 'key-owners.json';
/** At most this many keys are remembered (the most recently seen win); bounds file and memory. */
export const MAX_KEY_OWNERS = 16_384;
const MAX_BYTES = 4 * 1024 * 1024;

/** Key → the node it was first seen with, and when (ms), and when last seen (ms). */
export type KeyOwners = Readonly<
  Record<string, { readonly node: string; readonly firstSeen: number; readonly lastSeen: number }>
>;

/** What {@link recordOwners} found. */
export interface OwnersUpdate {
  readonly owners: KeyOwners;
  /** Keys a node publishes that another node was seen with first (count them, alert on them). */
  readonly conflicts: readonly { readonly key: string; readonly owner: string; readonly claimant: string }[];
}

/**
 * Adds every key of `claims` (node → keys it publishes) not yet known, as owned by that node;
 * a key already owned by another node is a conflict (the older claim stays). Pure.
 */
export function recordOwners(
  prev: KeyOwners,
  claims: Readonly<Record<string, readonly string[]>>,
  now: number,
): OwnersUpdate {
  const next: MutableOwners = { ...prev };
  const { conflicts } = recordOwnersInPlace(next, claims, now);
  return { owners: next, conflicts };
}

type MutableOwners = Record<string, { node: string; firstSeen: number; lastSeen: number }>;

/**
 * {@link recordOwners} into `owners` itself: the work is O(claims), not O(keys known) — an event
 * pass claims the keys of the nodes that changed, and the book holds every node's (5,000 and more).
 * Returns the conflicts and whether a key was added.
 */
function recordOwnersInPlace(
  owners: MutableOwners,
  claims: Readonly<Record<string, readonly string[]>>,
  now: number,
): { conflicts: OwnersUpdate['conflicts']; added: boolean } {
  const conflicts: { key: string; owner: string; claimant: string }[] = [];
  // Two nodes claiming one new key in the same snapshot: neither is older, nobody owns it.
  const fresh = new Map<string, string[]>();
  for (const node of Object.keys(claims).sort()) {
    for (const key of claims[node]!) {
      const o = owners[key];
      if (o === undefined) {
        const list = fresh.get(key);
        if (list === undefined) fresh.set(key, [node]);
        else list.push(node);
      } else if (o.node === node) owners[key] = { ...o, lastSeen: now };
      else conflicts.push({ key, owner: o.node, claimant: node });
    }
  }
  let added = false;
  for (const [key, nodes] of fresh) {
    if (nodes.length === 1) {
      owners[key] = { node: nodes[0]!, firstSeen: now, lastSeen: now };
      added = true;
    } else for (const n of nodes) conflicts.push({ key, owner: '', claimant: n });
  }
  if (added) {
    const keys = Object.keys(owners);
    if (keys.length > MAX_KEY_OWNERS) {
      keys.sort((a, b) => owners[b]!.lastSeen - owners[a]!.lastSeen);
      for (const k of keys.slice(MAX_KEY_OWNERS)) delete owners[k];
    }
  }
  return { conflicts, added };
}

/**
 * The planner's `established` map (node → key) completed from first-seen ownership: a node
 * with no established key gets the key it was first seen with, when it still publishes it.
 */
export function establishedWithOwners(
  established: Readonly<Record<string, string>>,
  owners: KeyOwners,
  published: Readonly<Record<string, string>>,
): Record<string, string> {
  const out: Record<string, string> = { ...established };
  for (const [node, key] of Object.entries(published)) {
    if (out[node] === undefined && owners[key]?.node === node) out[node] = key;
  }
  return out;
}

function decode(text: string): KeyOwners | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined;
  const out: Record<string, { node: string; firstSeen: number; lastSeen: number }> = Object.create(null) as Record<
    string,
    never
  >;
  for (const [k, e] of Object.entries(v as Record<string, unknown>)) {
    if (typeof e !== 'object' || e === null) return undefined;
    const { node, firstSeen, lastSeen } = e as Record<string, unknown>;
    if (typeof node !== 'string' || !Number.isSafeInteger(firstSeen) || !Number.isSafeInteger(lastSeen))
      return undefined;
    out[k] = { node, firstSeen: firstSeen as number, lastSeen: lastSeen as number };
  }
  return out;
}

/** Reads and writes `<stateDir>/key-owners.json`. */
export class KeyOwnersFile {
  readonly dir: string;
  readonly path: string;

  constructor(stateDir: string) {
    this.dir = resolve(stateDir);
    this.path = join(this.dir, KEY_OWNERS_FILE);
  }

  /** The stored owners; empty when there is no file. @throws SealnetError `KEYSTORE_IO` on an unreadable or malformed file. */
  async read(): Promise<KeyOwners> {
    const text = await readBounded(this.path, MAX_BYTES, 'key owners');
    if (text === undefined) return {};
    const owners = decode(text);
    if (owners === undefined)
      throw ioError(
        'key owners file is malformed; fix or remove it (removing it forgets which node had which key first):',
        this.path,
        undefined,
      );
    return owners;
  }

  /** Replaces the file atomically. */
  async write(owners: KeyOwners): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const sorted = Object.fromEntries(
      Object.keys(owners)
        .sort()
        .map((k) => [k, owners[k]]),
    );
    await writeAtomic(this.dir, KEY_OWNERS_FILE, Buffer.from(`${JSON.stringify(sorted)}\n`), {
      how: 'replace',
      secret: false,
    });
  }
}

/**
 * The agent's view of the file: loaded once at start, updated in memory each pass, written
 * behind (a failed write is reported through `onError` and retried on the next change).
 */
export class KeyOwnerBook {
  /** Updated in place (O(claims) per pass); the write behind serializes it when it runs. */
  readonly #owners: MutableOwners;
  #writing: Promise<void> = Promise.resolve();

  private constructor(
    private readonly file: KeyOwnersFile,
    owners: KeyOwners,
    private readonly onError: (err: unknown) => void,
  ) {
    this.#owners = { ...owners };
  }

  /** Opens `<stateDir>/key-owners.json` (empty when absent). */
  static async open(stateDir: string, onError: (err: unknown) => void): Promise<KeyOwnerBook> {
    const file = new KeyOwnersFile(stateDir);
    return new KeyOwnerBook(file, await file.read(), onError);
  }

  get owners(): KeyOwners {
    return this.#owners;
  }

  /** Records a snapshot's claims (node → keys); returns the conflicts. Writes when a key was added. */
  record(claims: Readonly<Record<string, readonly string[]>>, now: number): OwnersUpdate['conflicts'] {
    const r = recordOwnersInPlace(this.#owners, claims, now);
    if (r.added) this.#writing = this.#writing.then(() => this.file.write(this.#owners)).catch(this.onError);
    return r.conflicts;
  }

  /** Waits for pending writes (tests, shutdown). */
  async flush(): Promise<void> {
    await this.#writing;
  }
}
