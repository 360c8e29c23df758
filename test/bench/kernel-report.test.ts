/** `kernel-throughput`: pairing, the summary section, and the guest script's pure parsers. */
import { parseBenchArgs } from './args.js';
import {
  kernelFigures,
  kernelThroughputErrors,
  kernelThroughputSection,
  type KernelIperfSample,
  type KernelThroughputResult,
  type KernelVariant,
} from './kernel-report.js';
import { checkSetup, cryptoDrivers, describeSas } from '../vm/throughput-guest.js';

function sample(
  round: number,
  variant: KernelVariant,
  direction: 'fwd' | 'rev',
  mbps: number | undefined,
): KernelIperfSample {
  return {
    round,
    variant,
    direction,
    at: 0,
    bitsPerSecond: mbps === undefined ? undefined : mbps * 1e6,
    retransmits: 0,
    cpuLocal: undefined,
    cpuRemote: undefined,
    error: mbps === undefined ? 'iperf3: timeout' : undefined,
  };
}

function result(iperf: KernelIperfSample[]): KernelThroughputResult {
  return {
    rounds: 2,
    durationS: 3,
    guest: {
      kernel: '6.1.0-test',
      cpus: 2,
      memMiB: 3000,
      cpuModel: 'QEMU Virtual CPU version 2.5+',
      cryptoFlags: [],
      cryptoDrivers: { 'rfc4106(gcm(aes))': 'rfc4106(gcm_base(ctr(aes-generic),ghash-generic))' },
      accel: 'qemu TCG',
      iperf3: 'iperf 3.12',
    },
    setups: [
      {
        variant: 'sealnet-ipsec',
        prefix: 'kabcdsi',
        routeToPeerPods: '100.64.2.2 from 100.64.1.2 dev eth0 table 5188',
        linkKind: undefined,
        wireguardGoProcesses: 0,
        xfrmStates: ['198.18.0.1>198.18.0.2 0x51 rfc4106(gcm(aes)) 256-bit icv 128'],
        setupMs: 12_000,
      },
    ],
    iperf,
    variantErrors: [],
    guestWallMs: 300_000,
    command: [],
  };
}

describe('kernelFigures', () => {
  it('pairs ratios by round and direction and skips a round with a failed side', () => {
    const r = result([
      sample(0, 'plaintext', 'fwd', 100),
      sample(0, 'sealnet-ipsec', 'fwd', 20),
      sample(0, 'sealnet-wg-kernel', 'fwd', 30),
      sample(0, 'hand-wg-kernel', 'fwd', 30),
      sample(1, 'plaintext', 'fwd', 50),
      sample(1, 'sealnet-ipsec', 'fwd', 20),
      sample(1, 'sealnet-wg-kernel', 'fwd', 25),
      sample(1, 'hand-wg-kernel', 'fwd', undefined),
      sample(0, 'plaintext', 'rev', 80),
      sample(0, 'sealnet-ipsec', 'rev', 8),
    ]);
    const f = kernelFigures(r);
    expect(f.ratios.fwd['ipsec/plaintext']).toMatchObject({ n: 2, min: 0.2, max: 0.4 });
    expect(f.ratios.fwd['wg/hand']).toMatchObject({ n: 1, median: 1 });
    expect(f.ratios.rev['ipsec/plaintext']).toMatchObject({ n: 1, median: 0.1 });
    expect(f.pooled['ipsec/plaintext']?.n).toBe(3);
    expect(f.mbps.fwd.plaintext).toMatchObject({ n: 2, median: 75 });
    expect(f.failures).toBe(1);
    expect(kernelThroughputErrors(r)).toEqual(['round 2 hand-wg-kernel fwd: iperf3: timeout']);
    const text = kernelThroughputSection(r).join('\n');
    expect(text).toContain('## Kernel datapaths (qemu guest)');
    expect(text).toContain('absolute Mbit/s say nothing about real hardware');
    expect(text).toContain('| 1 stream n1→n2 | 75.0 [50.0–100.0] | 20.0 [20.0–20.0] |');
  });
});

describe('guest script parsers', () => {
  const KEY = '0x0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef01234567';
  const xfrm = `src 198.18.0.1 dst 198.18.0.2
\tproto esp spi 0x51618e5b reqid 1 mode tunnel
\treplay-window 0 flag af-unspec
\taead rfc4106(gcm(aes)) ${KEY} 128
\tanti-replay context: seq 0x0, oseq 0x2a, bitmap 0x00000000
src 198.18.0.2 dst 198.18.0.1
\tproto esp spi 0x5168392a reqid 1 mode tunnel
\taead rfc4106(gcm(aes)) ${KEY} 128
`;

  it('describes SAs by algorithm and key size without the key', () => {
    const d = describeSas(xfrm);
    expect(d).toEqual([
      '198.18.0.1>198.18.0.2 0x51618e5b rfc4106(gcm(aes)) 256-bit icv 128',
      '198.18.0.2>198.18.0.1 0x5168392a rfc4106(gcm(aes)) 256-bit icv 128',
    ]);
    expect(d.join('')).not.toContain('0123456789abcdef');
  });

  it('picks the highest-priority driver per algorithm from /proc/crypto', () => {
    const proc =
      'name         : aes\ndriver       : aes-generic\npriority     : 100\n\nname         : aes\ndriver       : aes-fast\npriority     : 300\n\nname         : gcm(aes)\ndriver       : gcm_base(ctr(aes-generic),ghash-generic)\npriority     : 100\n';
    expect(cryptoDrivers(proc, ['aes', 'gcm(aes)', 'chacha20'])).toEqual({
      aes: 'aes-fast',
      'gcm(aes)': 'gcm_base(ctr(aes-generic),ghash-generic)',
    });
  });

  it('rejects a kernel WireGuard variant that is carried by something else', () => {
    const base = {
      prefix: 'kabcdsw',
      routeToPeerPods: '100.64.2.2 dev sealwg0 src 100.64.1.1',
      xfrmStates: [],
      setupMs: 1,
    } as const;
    expect(() =>
      checkSetup({ ...base, variant: 'sealnet-wg-kernel', linkKind: 'wireguard', wireguardGoProcesses: 0 }),
    ).not.toThrow();
    expect(() =>
      checkSetup({ ...base, variant: 'sealnet-wg-kernel', linkKind: 'tun', wireguardGoProcesses: 1 }),
    ).toThrow('wireguard-go');
    expect(() =>
      checkSetup({ ...base, variant: 'sealnet-ipsec', linkKind: undefined, wireguardGoProcesses: 0 }),
    ).toThrow('inbound and an outbound SA');
  });
});

describe('parseBenchArgs kernel-throughput', () => {
  it('defaults to 3 rounds of 3 s, 2 of 2 s with --quick, and takes --rounds', () => {
    expect(parseBenchArgs(['kernel-throughput'])).toMatchObject({
      benchmarks: ['kernel-throughput'],
      kernelRounds: 3,
      durationS: 3,
    });
    expect(parseBenchArgs(['kernel-throughput', '--quick'])).toMatchObject({ kernelRounds: 2, durationS: 2 });
    expect(parseBenchArgs(['kernel-throughput', '--rounds', '4'])).toMatchObject({ kernelRounds: 4 });
  });
});
