/**
 * The status summary's hard bound, as a property: whatever the number of peers (up to 20,000),
 * their states, and hostile reasons and names (multi-byte characters, quotes, control
 * characters, maximal lengths), the encoded summary is at most SUMMARY_MAX_BYTES and decodes to
 * the same counts and digest. A seeded generator (no dependency): failures are reproducible.
 */
import { sodiumReady } from '../../keymgr/keys.js';
import { statusReport } from '../../test/status-fixtures.js';
import { MAX_REASON, PEER_STATES, type NodeStatusReport, type PeerState, type PeerStatus } from './report.js';
import {
  decodeSummary,
  encodeSummary,
  reportDigest,
  summarize,
  summaryChangeKey,
  SUMMARY_MAX_BYTES,
  SUMMARY_WORST,
} from './summary.js';
import { seededRandom as rng } from '../../test/bench/stats.js';

beforeAll(async () => {
  await sodiumReady();
});

const HOSTILE = ['"', '\\', '\u0000', '\n', '\u2028', '😀', 'ü', '\uffff', '</script>', '${x}', '%s'];

function hostileText(r: () => number, max: number): string {
  const n = Math.floor(r() * (max + 1));
  let s = '';
  while (s.length < n)
    s += r() < 0.5 ? HOSTILE[Math.floor(r() * HOSTILE.length)] : String.fromCharCode(32 + Math.floor(r() * 90));
  return s.slice(0, n);
}

/** Reasons drawn from a pool (generating 20,000 fresh ones per round is most of the test's time). */
let pool: string[] = [];
function reasonOf(r: () => number): string {
  if (pool.length === 0)
    pool = Array.from({ length: 256 }, (_, i) =>
      i % 4 === 0 ? 'x'.repeat(MAX_REASON) : i % 4 === 1 ? '😀'.repeat(MAX_REASON / 2) : hostileText(r, MAX_REASON),
    );
  return pool[Math.floor(r() * pool.length)] as string;
}

function randomReport(r: () => number, peers: number): NodeStatusReport {
  const base = statusReport('n1', ['n1']);
  // A maximal node name (253 characters) half of the time.
  const node = r() < 0.5 ? 'n1' : `${'a'.repeat(251)}z1`;
  const list: PeerStatus[] = [];
  for (let i = 0; i < peers; i++) {
    const state = PEER_STATES[Math.floor(r() * 4)] as PeerState;
    const name = r() < 0.1 ? `${'p'.repeat(240)}-${i}` : `p-${i}`;
    list.push({ node: name, state, ...(state === 'encrypted' ? {} : { reason: reasonOf(r) }) });
  }
  return {
    ...base,
    node,
    algorithm: hostileText(r, 64),
    errors: Array.from({ length: Math.floor(r() * 10) }, () => hostileText(r, 64)),
    failOpenPackets: Math.floor(r() * 2 ** 40),
    key: { ...base.key, epoch: Math.floor(r() * 2 ** 31) },
    peers: list,
  };
}

describe('status summary codec', () => {
  it(`never exceeds ${SUMMARY_MAX_BYTES} bytes for up to 20,000 peers with hostile reasons and names, and round-trips counts and digest`, () => {
    const r = rng(0x5ea1);
    const sizes = [0, 1, 2, 3, 4, 17, 100, 1000, 5000, 20_000];
    for (let round = 0; round < 24; round++) {
      const n = round < sizes.length ? (sizes[round] as number) : Math.floor(r() * 20_001);
      const report = randomReport(r, n);
      const s = summarize(report);
      const text = encodeSummary(s);
      expect(Buffer.byteLength(text)).toBeLessThanOrEqual(SUMMARY_MAX_BYTES);
      const d = decodeSummary(text);
      if (!d.ok) throw new Error(`round ${round} (${n} peers): ${d.error}`);
      const counts = Object.fromEntries(PEER_STATES.map((x) => [x, report.peers.filter((p) => p.state === x).length]));
      expect(d.summary.counts).toEqual(counts);
      expect(d.summary.digest).toBe(reportDigest(report));
      expect(d.summary.worst.length).toBeLessThanOrEqual(SUMMARY_WORST);
      // The worst peers are the most severe ones.
      if (counts.misconfigured! > 0 && d.summary.worst.length > 0)
        expect(d.summary.worst[0]!.state).toBe('misconfigured');
    }
  });

  it('is the same summary for the same states: counters and handshake times do not change it, a state does', () => {
    const a = statusReport('n1', ['n1', 'n2', 'n3']);
    const b = {
      ...a,
      at: '2025-06-01T12:05:00.000Z',
      peers: a.peers.map((p) => ({ ...p, rx: (p.rx ?? 0) + 1000, handshake: (p.handshake ?? 0) + 60 })),
    };
    expect(summaryChangeKey(summarize(b))).toBe(summaryChangeKey(summarize(a)));
    const c = {
      ...a,
      peers: a.peers.map((p, i) =>
        i === 0 ? { ...p, state: 'pending' as const, reason: 'no handshake for 213 s' } : p,
      ),
    };
    expect(summaryChangeKey(summarize(c))).not.toBe(summaryChangeKey(summarize(a)));
    // A reason that only counts up does not republish.
    const d = { ...c, peers: c.peers.map((p, i) => (i === 0 ? { ...p, reason: 'no handshake for 243 s' } : p)) };
    expect(summaryChangeKey(summarize(d))).toBe(summaryChangeKey(summarize(c)));
  });

  it('rejects what is not a summary: the old full report, oversized text, unknown fields', () => {
    expect(decodeSummary(JSON.stringify(statusReport('n1', ['n1', 'n2']))).ok).toBe(false);
    expect(decodeSummary(' '.repeat(SUMMARY_MAX_BYTES + 1))).toEqual({
      ok: false,
      error: `sealnet.io/status is larger than ${SUMMARY_MAX_BYTES} bytes`,
    });
    const s = JSON.parse(encodeSummary(summarize(statusReport('n1', ['n1', 'n2'])))) as Record<string, unknown>;
    expect(decodeSummary(JSON.stringify({ ...s, extra: 1 }))).toEqual({
      ok: false,
      error: 'sealnet.io/status status.extra is not a known field',
    });
  });
});
