/**
 * `wg show <if> dump` as the harness reads it. The first line holds the interface's private
 * key and every peer line a preshared key: both are dropped here and never logged.
 */

/** One peer line, secrets withheld. */
export interface WgPeer {
  readonly publicKey: string;
  readonly endpoint: string | undefined;
  readonly allowedIPs: readonly string[];
  /** Unix seconds; 0 = never. */
  readonly latestHandshake: number;
  readonly rxBytes: number;
  readonly txBytes: number;
  /** Seconds; 0 = off. */
  readonly persistentKeepalive: number;
}

/** The dump without its secrets. */
export interface WgDump {
  readonly publicKey: string;
  readonly listenPort: number;
  /** 0 when off. */
  readonly fwmark: number;
  readonly peers: readonly WgPeer[];
}

/** Parses `wg show <if> dump` output. Throws (without quoting the input) when it is malformed. */
export function parseWgDump(text: string): WgDump {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  const iface = lines[0]?.split('\t');
  if (iface === undefined || iface.length !== 4)
    throw new Error(`wg dump: interface line has ${iface?.length ?? 0} fields, want 4`);
  const peers = lines.slice(1).map((line, i) => {
    const f = line.split('\t');
    if (f.length !== 8) throw new Error(`wg dump: peer line ${i + 1} has ${f.length} fields, want 8`);
    return {
      publicKey: f[0] as string,
      endpoint: f[2] === '(none)' ? undefined : f[2],
      allowedIPs: f[3] === '(none)' || f[3] === '' ? [] : (f[3] as string).split(','),
      latestHandshake: Number(f[4]),
      rxBytes: Number(f[5]),
      txBytes: Number(f[6]),
      persistentKeepalive: f[7] === 'off' ? 0 : Number(f[7]),
    };
  });
  return {
    publicKey: iface[1] as string,
    listenPort: Number(iface[2]),
    fwmark: iface[3] === 'off' ? 0 : Number(iface[3]),
    peers,
  };
}
