/**
 * The reference the agents are measured against: a WireGuard mesh configured by hand, the way
 * an operator would with `wg` and `ip`, on a plaintext harness cluster (no agents). Same
 * topology, same underlay, same tunnel MTU; the wireguard-go binary is a parameter so the same
 * code builds the "same binary as the agents" and the "Debian binary" variants.
 *
 * Keys: `wg genkey` output goes through a pipe into a 0600 file that `wg set … private-key`
 * reads; a private key never appears in an argument vector, environment or log.
 */
import { readlinkSync, readdirSync, statSync } from 'node:fs';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { NsCluster } from '../harness/cluster.js';
import { run, sleep } from '../harness/exec.js';
import type { NodeInfo } from '../harness/types.js';
import { parseWgDump, type WgDump } from '../harness/wgdump.js';

/** The hand-configured tunnel link (not sealwg0: nothing here is the agent's). */
export const HAND_INTERFACE = 'wgbench0';

/** {@link HandMeshOptions.binary} for a kernel WireGuard link (`ip link add … type wireguard`) instead of wireguard-go. */
export const KERNEL_WIREGUARD = 'kernel';

/** Options of {@link handConfigureMesh}. */
export interface HandMeshOptions {
  /** wireguard-go binary to start on every node, or {@link KERNEL_WIREGUARD} (needs the wireguard module). */
  readonly binary: string;
  readonly listenPort: number;
  /** Tunnel MTU, set on the link and on every route (underlay 1500 − 60 for IPv4 WireGuard). */
  readonly mtu: number;
  readonly persistentKeepalive: number;
}

interface NodeKeys {
  readonly node: NodeInfo;
  readonly privateKeyFile: string;
  readonly publicKey: string;
}

/** Generates a key pair for a node: private key into a 0600 file, public key returned. */
async function generateKeys(c: NsCluster, node: NodeInfo): Promise<NodeKeys> {
  const dir = join(c.runDir, node.name, 'hand');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const privateKeyFile = join(dir, 'private.key');
  const priv = (await run(['wg', 'genkey'])).stdout;
  await writeFile(privateKeyFile, priv, { mode: 0o600 });
  await chmod(privateKeyFile, 0o600);
  const publicKey = (await run(['wg', 'pubkey'], { input: priv })).stdout.trim();
  return { node, privateKeyFile, publicKey };
}

/**
 * Starts wireguard-go as the agent's driver does: daemonized, minimal environment (PATH and
 * LC_ALL only), so both variants run the binary under identical conditions.
 */
async function startWireGuardGo(c: NsCluster, node: string, binary: string): Promise<void> {
  await c.execNode(
    node,
    ['env', '-i', `PATH=${process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin'}`, 'LC_ALL=C', binary, HAND_INTERFACE],
    { timeoutMs: 15_000 },
  );
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const r = await c.execNode(node, ['wg', 'show', HAND_INTERFACE, 'listen-port'], { check: false });
    if (r.code === 0) return;
    await sleep(20);
  }
  throw new Error(`${binary} ${HAND_INTERFACE} on ${node}: UAPI socket did not appear within 10 s`);
}

/**
 * Builds a full WireGuard mesh between every node of a plaintext cluster and replaces the
 * harness's host-gw routes to remote pod CIDRs with routes into the tunnel.
 */
export async function handConfigureMesh(c: NsCluster, o: HandMeshOptions): Promise<void> {
  if (c.encryption) throw new Error('handConfigureMesh needs a cluster created with encryption: false');
  const keys = await Promise.all(c.nodes.map((n) => generateKeys(c, n)));
  await Promise.all(
    keys.map(async (self) => {
      const name = self.node.name;
      if (o.binary === KERNEL_WIREGUARD)
        await c.execNode(name, ['ip', 'link', 'add', 'dev', HAND_INTERFACE, 'type', 'wireguard']);
      else await startWireGuardGo(c, name, o.binary);
      const peers = keys.filter((k) => k !== self);
      const set = [
        'wg',
        'set',
        HAND_INTERFACE,
        'listen-port',
        String(o.listenPort),
        'private-key',
        self.privateKeyFile,
      ];
      for (const p of peers) {
        set.push(
          'peer',
          p.publicKey,
          'endpoint',
          `${p.node.address}:${o.listenPort}`,
          'allowed-ips',
          p.node.podCIDR,
          'persistent-keepalive',
          String(o.persistentKeepalive),
        );
      }
      await c.execNode(name, set);
      await c.execNode(name, ['ip', 'link', 'set', 'dev', HAND_INTERFACE, 'mtu', String(o.mtu), 'up']);
      for (const p of peers) {
        await c.execNode(name, [
          'ip',
          'route',
          'replace',
          p.node.podCIDR,
          'dev',
          HAND_INTERFACE,
          'mtu',
          String(o.mtu),
          'src',
          self.node.podGateway,
        ]);
      }
    }),
  );
}

/** `wg show wgbench0 dump` on a node, secrets dropped. */
export async function handDump(c: NsCluster, node: string): Promise<WgDump | undefined> {
  const r = await c.execNode(node, ['wg', 'show', HAND_INTERFACE, 'dump'], { check: false });
  return r.code === 0 ? parseWgDump(r.stdout) : undefined;
}

/**
 * Executables of the wireguard-go processes living in a node's network namespace (resolved
 * through /proc/<pid>/exe): proof of which binary actually carries a variant's traffic.
 */
export function wireguardGoExes(c: NsCluster, node: string): string[] {
  const ino = statSync(`/run/netns/${c.node(node).netns}`).ino;
  const want = `net:[${ino}]`;
  const found = new Set<string>();
  for (const entry of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(entry)) continue;
    try {
      if (readlinkSync(`/proc/${entry}/ns/net`) !== want) continue;
      const exe = readlinkSync(`/proc/${entry}/exe`);
      if (/wireguard/.test(exe)) found.add(exe);
    } catch {
      // exited meanwhile, or a kernel thread
    }
  }
  return [...found].sort();
}
