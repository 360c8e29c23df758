/**
 * Issue 9's kernel datapaths, pure: the `kernel-throughput` benchmark's result types (written
 * by the guest script test/vm/throughput-guest.ts, wrapped by kernel-throughput.ts on the host)
 * and the "Kernel datapaths (qemu guest)" summary section. The guest is emulated (qemu TCG), so
 * only ratios of samples taken side by side in the same guest run are reported as findings.
 */
import { cell } from './summary.js';
import { pairedRatios, spread, type Spread } from './stats.js';

/** The variants measured in the guest, side by side (2-node namespace clusters). */
export const KERNEL_VARIANTS = ['plaintext', 'sealnet-ipsec', 'sealnet-wg-kernel', 'hand-wg-kernel'] as const;
/** One of {@link KERNEL_VARIANTS}. */
export type KernelVariant = (typeof KERNEL_VARIANTS)[number];

/** Human labels of the guest variants. */
export const KERNEL_VARIANT_LABELS: Readonly<Record<KernelVariant, string>> = {
  plaintext: 'plaintext (host-gw)',
  'sealnet-ipsec': 'sealnet IPsec (ESP AES-GCM)',
  'sealnet-wg-kernel': 'sealnet WireGuard (kernel)',
  'hand-wg-kernel': 'hand-configured kernel WireGuard',
};

/** iperf3 directions: `fwd` = pod on n1 sends to the pod on n2; `rev` = `-R`. */
export const KERNEL_DIRECTIONS = ['fwd', 'rev'] as const;
/** One of {@link KERNEL_DIRECTIONS}. */
export type KernelDirection = (typeof KERNEL_DIRECTIONS)[number];

const DIRECTION_LABELS: Readonly<Record<KernelDirection, string>> = { fwd: '1 stream n1→n2', rev: '1 stream n2→n1' };

/** The ratios reported, paired per round and direction. */
export const KERNEL_RATIOS = [
  { id: 'ipsec/plaintext', num: 'sealnet-ipsec', den: 'plaintext', label: 'sealnet IPsec ÷ plaintext' },
  { id: 'wg/plaintext', num: 'sealnet-wg-kernel', den: 'plaintext', label: 'sealnet kernel WireGuard ÷ plaintext' },
  {
    id: 'wg/hand',
    num: 'sealnet-wg-kernel',
    den: 'hand-wg-kernel',
    label: 'sealnet kernel WireGuard ÷ hand-configured kernel WireGuard',
  },
  { id: 'ipsec/wg', num: 'sealnet-ipsec', den: 'sealnet-wg-kernel', label: 'sealnet IPsec ÷ sealnet kernel WireGuard' },
] as const satisfies readonly { id: string; num: KernelVariant; den: KernelVariant; label: string }[];
/** One of {@link KERNEL_RATIOS}' ids. */
export type KernelRatioId = (typeof KERNEL_RATIOS)[number]['id'];

/** One iperf3 run in the guest. */
export interface KernelIperfSample {
  readonly round: number;
  readonly variant: KernelVariant;
  readonly direction: KernelDirection;
  /** Guest Unix ms when the client started (the guest clock runs from the host's RTC). */
  readonly at: number;
  /** Receiver's goodput, bit/s; undefined when the run failed. */
  readonly bitsPerSecond: number | undefined;
  readonly retransmits: number | undefined;
  readonly cpuLocal: number | undefined;
  readonly cpuRemote: number | undefined;
  readonly error: string | undefined;
}

/** What carried a variant's traffic, checked in the guest before measuring. */
export interface KernelVariantSetup {
  readonly variant: KernelVariant;
  readonly prefix: string;
  /** n1's route to n2's pod (`ip route get … iif cni0`). */
  readonly routeToPeerPods: string;
  /** `ip -d link show` kind of the tunnel link on n1 (`wireguard` for kernel WireGuard), if any. */
  readonly linkKind: string | undefined;
  /** MTU of that tunnel link (absent in results before it was recorded). */
  readonly linkMtu?: number | undefined;
  /** wireguard-go processes in the variant's node namespaces (expected: none). */
  readonly wireguardGoProcesses: number;
  /** ESP SAs on n1 as `src>dst spi aead-name key-bits` (no key material), IPsec only. */
  readonly xfrmStates: readonly string[];
  readonly setupMs: number;
}

/** The emulated machine the figures come from. */
export interface GuestInfo {
  readonly kernel: string;
  readonly cpus: number;
  readonly memMiB: number;
  readonly cpuModel: string;
  /** CPU flags that decide which crypto code runs (aes, ssse3, avx, avx2, pclmulqdq). */
  readonly cryptoFlags: readonly string[];
  /** Drivers the kernel picked (`/proc/crypto`) for ESP's AEAD and WireGuard's primitives. */
  readonly cryptoDrivers: Readonly<Record<string, string>>;
  /** qemu settings as run.sh used them. */
  readonly accel: string;
  readonly iperf3: string | undefined;
}

/** What the guest script writes (`$SEALNET_VM_OUT/kernel-throughput.json`). */
export interface GuestThroughputOutput {
  readonly rounds: number;
  readonly durationS: number;
  readonly guest: GuestInfo;
  readonly setups: readonly KernelVariantSetup[];
  readonly iperf: readonly KernelIperfSample[];
  /** Variants that could not be built (their samples are missing), with the reason. */
  readonly variantErrors: readonly { variant: KernelVariant; message: string }[];
}

/** Raw data of the `kernel-throughput` benchmark. */
export interface KernelThroughputResult extends GuestThroughputOutput {
  /** Host wall time of the whole guest run (boot to power-off), ms. */
  readonly guestWallMs: number;
  /** The host command that ran the guest. */
  readonly command: readonly string[];
}

/** Reported figures: Mbit/s per direction and variant, and the paired ratios. */
export interface KernelFigures {
  readonly mbps: Readonly<Record<KernelDirection, Readonly<Record<KernelVariant, Spread | undefined>>>>;
  readonly ratios: Readonly<Record<KernelDirection, Readonly<Record<KernelRatioId, Spread | undefined>>>>;
  /** Both directions pooled (every paired sample). */
  readonly pooled: Readonly<Record<KernelRatioId, Spread | undefined>>;
  readonly failures: number;
}

/** Mbit/s of one variant and direction, by round (failed runs left out). */
export function kernelByRound(t: GuestThroughputOutput, v: KernelVariant, d: KernelDirection): Map<number, number> {
  const m = new Map<number, number>();
  for (const s of t.iperf)
    if (s.variant === v && s.direction === d && s.bitsPerSecond !== undefined) m.set(s.round, s.bitsPerSecond / 1e6);
  return m;
}

/** Medians and paired ratios of a guest run. */
export function kernelFigures(t: GuestThroughputOutput): KernelFigures {
  const mbps = {} as Record<KernelDirection, Record<KernelVariant, Spread | undefined>>;
  const ratios = {} as Record<KernelDirection, Record<KernelRatioId, Spread | undefined>>;
  const pooled = Object.fromEntries(KERNEL_RATIOS.map((r) => [r.id, [] as number[]])) as Record<
    KernelRatioId,
    number[]
  >;
  for (const d of KERNEL_DIRECTIONS) {
    mbps[d] = Object.fromEntries(
      KERNEL_VARIANTS.map((v) => [v, spread([...kernelByRound(t, v, d).values()])]),
    ) as Record<KernelVariant, Spread | undefined>;
    ratios[d] = {} as Record<KernelRatioId, Spread | undefined>;
    for (const r of KERNEL_RATIOS) {
      const pr = pairedRatios(kernelByRound(t, r.num, d), kernelByRound(t, r.den, d));
      pooled[r.id].push(...pr);
      ratios[d][r.id] = spread(pr);
    }
  }
  return {
    mbps,
    ratios,
    pooled: Object.fromEntries(KERNEL_RATIOS.map((r) => [r.id, spread(pooled[r.id])])) as Record<
      KernelRatioId,
      Spread | undefined
    >,
    failures: t.iperf.filter((s) => s.error !== undefined).length,
  };
}

/** What went wrong in a run, one line each (variants not built, failed iperf3 runs). */
export function kernelThroughputErrors(t: GuestThroughputOutput): string[] {
  const out = t.variantErrors.map((e) => `${e.variant}: ${e.message}`);
  for (const s of t.iperf)
    if (s.error !== undefined) out.push(`round ${s.round + 1} ${s.variant} ${s.direction}: ${s.error}`);
  return out;
}

/** Mbit/s with one decimal: TCG numbers are small. */
function mbpsCell(s: Spread | undefined): string {
  return cell(s, 1);
}

/** The "Kernel datapaths (qemu guest)" section of SUMMARY.md. */
export function kernelThroughputSection(t: KernelThroughputResult): string[] {
  const f = kernelFigures(t);
  const g = t.guest;
  const drivers = Object.entries(g.cryptoDrivers)
    .map(([alg, drv]) => `\`${alg}\` → \`${drv}\``)
    .join(', ');
  const out = [
    '## Kernel datapaths (qemu guest)',
    '',
    `\`npm run bench -- kernel-throughput\`: this host's kernel has neither ESP nor WireGuard, so the datapaths are measured inside the kernel test tier's qemu guest (kernel ${g.kernel}, ${g.cpus} vCPUs, ${g.memMiB} MiB, ${g.accel}, CPU model \`${g.cpuModel}\`). Four 2-node namespace clusters side by side in one guest run; iperf3 (${g.iperf3 ?? 'iperf3'}), 1 stream, ${t.durationS} s per run, ${t.rounds} rounds, both directions, variant order rotating per round.`,
    '',
    `**The guest is emulated (TCG): every instruction, crypto included, is translated in software, so the absolute Mbit/s say nothing about real hardware, and crypto costs far more relative to everything else than on a real CPU.** The guest CPU has ${g.cryptoFlags.length === 0 ? 'none of aes, ssse3, avx, avx2, pclmulqdq' : `only ${g.cryptoFlags.join(', ')} of aes, ssse3, avx, avx2, pclmulqdq`}, so the kernel cannot use the AES-NI/PCLMULQDQ code a production node runs AES-GCM with, nor the SSSE3/AVX ChaCha20 code; what it picked: ${drivers === '' ? 'not recorded' : drivers}. Only the ratios within this run mean something; they overstate the cost of encryption against plaintext, and IPsec ÷ WireGuard (table-driven C AES and GHASH against ChaCha20-Poly1305) says nothing about hardware with AES-NI, where it may well invert.`,
    '',
    'Mbit/s at the receiver, median [min–max] over rounds:',
    '',
    `| direction | ${KERNEL_VARIANTS.map((v) => KERNEL_VARIANT_LABELS[v]).join(' | ')} |`,
    `| --- | ${KERNEL_VARIANTS.map(() => '---:').join(' | ')} |`,
    ...KERNEL_DIRECTIONS.map(
      (d) => `| ${DIRECTION_LABELS[d]} | ${KERNEL_VARIANTS.map((v) => mbpsCell(f.mbps[d][v])).join(' | ')} |`,
    ),
    '',
    'Ratios of samples from the same round and direction (paired), median [min–max]:',
    '',
    `| direction | ${KERNEL_RATIOS.map((r) => r.label).join(' | ')} |`,
    `| --- | ${KERNEL_RATIOS.map(() => '---:').join(' | ')} |`,
    ...KERNEL_DIRECTIONS.map(
      (d) => `| ${DIRECTION_LABELS[d]} | ${KERNEL_RATIOS.map((r) => cell(f.ratios[d][r.id], 3)).join(' | ')} |`,
    ),
    `| both directions pooled | ${KERNEL_RATIOS.map((r) => cell(f.pooled[r.id], 3)).join(' | ')} |`,
  ];
  if (f.failures > 0) out.push('', `${f.failures} iperf3 run(s) failed and are left out; see the result file.`);
  for (const e of t.variantErrors)
    out.push('', `- ${KERNEL_VARIANT_LABELS[e.variant]} could not be built: ${e.message}`);
  out.push('', 'What carried each variant (checked in the guest before measuring; n1):', '');
  for (const s of t.setups) {
    const link =
      s.linkKind === undefined
        ? 'no tunnel link'
        : `tunnel link kind \`${s.linkKind}\`${s.linkMtu === undefined ? '' : `, MTU ${s.linkMtu}`}`;
    const sas = s.xfrmStates.length === 0 ? '' : `; ESP SAs ${s.xfrmStates.map((x) => `\`${x}\``).join(', ')}`;
    out.push(
      `- ${KERNEL_VARIANT_LABELS[s.variant]}: route \`${s.routeToPeerPods.split('\n')[0]?.trim() ?? ''}\`; ${link}; ${s.wireguardGoProcesses} wireguard-go processes${sas}; ready in ${(s.setupMs / 1000).toFixed(1)} s.`,
    );
  }
  out.push(
    '',
    `Tunnel MTUs differ as in production: plaintext 1500, WireGuard 1440, ESP 1446. The whole guest run took ${(t.guestWallMs / 1000).toFixed(0)} s of host wall time.`,
  );
  return out;
}
