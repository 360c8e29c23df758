/**
 * ICMP ping with the don't-fragment bit, parsed. A wrong tunnel MTU shows up as a path-MTU
 * error ("Frag needed", "message too long") or as silent loss of large packets, never as a
 * clean failure, so the parser reports each of those separately.
 */

/** Parsed `ping` output. */
export interface PingResult {
  readonly transmitted: number;
  readonly received: number;
  /** Percent, 0–100. */
  readonly lossPercent: number;
  readonly rttAvgMs: number | undefined;
  /** A router answered "Frag needed and DF set" (ICMP type 3 code 4) or, for IPv6, "Packet too big" (ICMPv6 type 2). */
  readonly fragNeeded: boolean;
  /** The local stack refused to send: "message too long" (route / link MTU below the size). */
  readonly messageTooLong: boolean;
  /** The MTU named by either error, if any. */
  readonly reportedMtu: number | undefined;
  /** Errors reported by ping ("+N errors"). */
  readonly errors: number;
}

/** Options for {@link pingArgv}. */
export interface PingOptions {
  /** ICMP payload bytes (`-s`); the IPv4 packet is 28 bytes larger. Default 56. */
  readonly size?: number;
  /** Number of echo requests (default 3). */
  readonly count?: number;
  /** Set DF and never fragment locally (`-M do`, default true). */
  readonly df?: boolean;
  /** Seconds between requests (default 0.2). */
  readonly intervalS?: number;
  /** Per-reply wait, seconds (default 1). */
  readonly waitS?: number;
  /** Up to 16 pattern bytes as hex (`-p`), e.g. a canary. */
  readonly patternHex?: string;
}

/** The `ping` command line for a destination. */
export function pingArgv(dst: string, opts: PingOptions = {}): string[] {
  const argv = [
    'ping',
    '-n',
    '-c',
    String(opts.count ?? 3),
    '-W',
    String(opts.waitS ?? 1),
    '-i',
    String(opts.intervalS ?? 0.2),
    '-s',
    String(opts.size ?? 56),
  ];
  if (opts.df !== false) argv.push('-M', 'do');
  if (opts.patternHex !== undefined) argv.push('-p', opts.patternHex);
  argv.push(dst);
  return argv;
}

/** Parses iputils `ping` stdout+stderr. */
export function parsePing(text: string): PingResult {
  const stats = /(\d+) packets transmitted, (\d+) (?:packets )?received(?:, \+(\d+) errors)?/.exec(text);
  const transmitted = Number(stats?.[1] ?? 0);
  const received = Number(stats?.[2] ?? 0);
  const loss = /([\d.]+)% packet loss/.exec(text);
  const rtt = /= [\d.]+\/([\d.]+)\/[\d.]+\/[\d.]+ ms/.exec(text);
  const frag =
    /Frag(?:mentation)? needed and DF set \(mtu = (\d+)\)/i.exec(text) ?? /Packet too big: mtu=(\d+)/i.exec(text);
  const tooLong = /message too long(?:, mtu(?:[= ]|: )(\d+))?/i.exec(text);
  return {
    transmitted,
    received,
    lossPercent: loss ? Number(loss[1]) : transmitted === 0 ? 100 : 100 * (1 - received / transmitted),
    rttAvgMs: rtt ? Number(rtt[1]) : undefined,
    fragNeeded: frag !== null,
    messageTooLong: tooLong !== null,
    reportedMtu:
      frag?.[1] !== undefined ? Number(frag[1]) : tooLong?.[1] !== undefined ? Number(tooLong[1]) : undefined,
    errors: Number(stats?.[3] ?? 0),
  };
}
