/**
 * Which preshared key each WireGuard peer holds, as digests only (post-quantum e2e, issue 19).
 * `wg show <if> preshared-keys` prints the keys themselves: it runs in a bash pipeline inside the
 * node's namespace whose output is the peer's public key and SHA-256 of its preshared key (or
 * "none"); the key never enters argv (`printf` is a bash builtin), this process or a log. Two
 * ends hold the same key exactly when their digests are equal.
 */
import type { NsCluster } from './cluster.js';

const SCRIPT = `set -o pipefail
wg show "$1" preshared-keys | while read -r peer psk; do
  if [ "$psk" = "(none)" ]; then printf '%s none\\n' "$peer"
  else printf '%s %s\\n' "$peer" "$(printf '%s' "$psk" | sha256sum | cut -d' ' -f1)"; fi
done`;

/** Peer public key → SHA-256 (hex) of its preshared key, or "none". */
export async function pskDigests(c: NsCluster, node: string, iface = 'sealwg0'): Promise<Map<string, string>> {
  const r = await c.execNode(node, ['bash', '-c', SCRIPT, 'psk-digests', iface]);
  const out = new Map<string, string>();
  for (const line of r.stdout.split('\n')) {
    const m = /^([A-Za-z0-9+/]{43}=) (none|[0-9a-f]{64})$/.exec(line);
    if (m !== null) out.set(m[1]!, m[2]!);
  }
  return out;
}
