/**
 * The BPF steering driver: {@link SteeringPort} over the loader (pins, tc) and the maps (bpf()
 * addon). One instance per agent; it keeps the maps open between calls.
 */
import type {
  SteeringAttachment,
  SteeringCounter,
  SteeringEntry,
  SteeringPort,
  SteeringSettings,
} from '../../tunnels/ports/index.js';
import { BpfLoader, type LoaderOptions } from './loader.js';
import { encodeKey } from './layout.js';
import { SteeringMaps } from './maps.js';

/** Implements {@link SteeringPort} on the kernel. */
export class BpfSteering implements SteeringPort {
  readonly loader: BpfLoader;
  #maps: SteeringMaps | undefined;

  constructor(opts: LoaderOptions = {}) {
    this.loader = new BpfLoader(opts);
  }

  /**
   * Order matters for fail-closed: maps exist and hold the settings, the exempt prefixes and a
   * `no-peer` entry per cluster CIDR before the program is attached anywhere, so the first
   * packet the program sees is already judged with them. Entries other than the cluster
   * CIDRs' are left as they are: a restarted agent keeps the ready tunnels of the one that died.
   */
  async ensure(opts: {
    readonly settings: SteeringSettings;
    readonly exempt: readonly string[];
    readonly clusterCidrs: readonly string[];
    readonly attachments: readonly SteeringAttachment[];
  }): Promise<{
    mapsCreated: boolean;
    programsLoaded: boolean;
    attached: { dev: string; hook: string; change: 'added' | 'replaced' | 'unchanged' }[];
  }> {
    await this.loader.preparePinDir();
    const loaded = await this.loader.ensureLoaded();
    const maps = this.#open(loaded.mapsCreated);
    maps.writeConfig(opts.settings);
    maps.syncExempt(opts.exempt);
    const have = new Set(maps.remoteEntries().map((e) => encodeKey(e.cidr).toString('hex')));
    maps.setRemote(
      opts.clusterCidrs
        .filter((c) => !have.has(encodeKey(c).toString('hex')))
        .map((cidr) => ({ cidr, state: 'no-peer', action: 'redirect', kind: 'pod', ifindex: 0, mark: 0, peerId: 0 })),
    );
    const attached: { dev: string; hook: string; change: 'added' | 'replaced' | 'unchanged' }[] = [];
    for (const a of opts.attachments) attached.push({ ...a, change: await this.loader.attach(a, loaded.programDir) });
    await this.loader.pruneOtherPrograms(loaded.programDir);
    return { mapsCreated: loaded.mapsCreated, programsLoaded: loaded.programsLoaded, attached };
  }

  async listEntries(): Promise<SteeringEntry[]> {
    return this.#open(false).remoteEntries();
  }

  async applyEntries(
    entries: readonly SteeringEntry[],
    opts: { readonly prune: boolean; readonly fromLastWrite?: boolean },
  ): Promise<{ written: number; deleted: number }> {
    return this.#open(false).syncRemote(entries, opts);
  }

  async counters(): Promise<SteeringCounter[]> {
    return this.#open(false).readCounters();
  }

  async detach(attachments: readonly SteeringAttachment[]): Promise<void> {
    for (const a of attachments) await this.loader.detach(a);
  }

  /** Current settings as the kernel holds them (status output). */
  async settings(): Promise<SteeringSettings> {
    return this.#open(false).readConfig();
  }

  /** Closes the map descriptors (pins, programs and attachments stay). */
  close(): void {
    this.#maps?.close();
    this.#maps = undefined;
  }

  /** Opens the maps once; reopens after they were recreated (fresh pins mean new maps). */
  #open(reopen: boolean): SteeringMaps {
    if (reopen) this.close();
    this.#maps ??= SteeringMaps.open(this.loader.mapsDir);
    return this.#maps;
  }
}
