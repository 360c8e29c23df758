/**
 * IPv4 reverse-path filtering on sealnet's tunnel links (node-to-node encryption).
 *
 * A decrypted packet from a remote node arrives on the tunnel link with the node's address as
 * its source, but the route back to that address uses the underlay (sealnet routes only pod
 * CIDRs through the tunnel). Strict mode (1) drops it; loose mode (2) accepts it only if the
 * link has an IPv4 address (tunnels/reconcile/nodetonode.ts puts one there). The kernel applies the
 * larger of `conf.all.rp_filter` and `conf.<link>.rp_filter`, so raising the link's value to 2
 * turns a strict host loose on this link only, and leaves 0 or 2 as they are.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SealnetError } from '../common/errors.js';

const LINK = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/;

/** Where the IPv4 per-interface settings live (the network namespace of the process). */
export const IPV4_CONF_DIR = '/proc/sys/net/ipv4/conf';

/** The value the kernel applies on `link`: max(all, link). Pure. */
export function effectiveRpFilter(all: number, link: number): number {
  return Math.max(all, link);
}

/**
 * Makes reverse-path filtering on `link` loose if it is strict; returns true when it wrote.
 * Throws a SealnetError naming the sysctl when it cannot read or write it (a container with a
 * read-only /proc/sys: set `net.ipv4.conf.<link>.rp_filter=2` on the host instead).
 */
export async function ensureLooseRpFilter(link: string, confDir: string = IPV4_CONF_DIR): Promise<boolean> {
  if (!LINK.test(link))
    throw new SealnetError('CONFIG_INVALID', `link name ${JSON.stringify(link)} is not 1-15 of [A-Za-z0-9_.-]`);
  const read = async (dev: string): Promise<number> => {
    const file = join(confDir, dev, 'rp_filter');
    try {
      const v = Number((await readFile(file, 'utf8')).trim());
      if (!Number.isInteger(v)) throw new Error(`unexpected content`);
      return v;
    } catch (err) {
      throw new SealnetError('NETLINK_FAILED', `cannot read ${file}`, { cause: err });
    }
  };
  if (effectiveRpFilter(await read('all'), await read(link)) !== 1) return false;
  const file = join(confDir, link, 'rp_filter');
  try {
    await writeFile(file, '2\n');
  } catch (err) {
    throw new SealnetError(
      'NETLINK_FAILED',
      `cannot set ${file} to 2 (loose): strict reverse-path filtering drops node-to-node traffic arriving through the tunnel; set net.ipv4.conf.${link}.rp_filter=2 on the host`,
      { cause: err },
    );
  }
  return true;
}
