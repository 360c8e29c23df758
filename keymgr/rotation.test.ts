import { describe, expect, it } from '@jest/globals';
import {
  autoRotationDueAt,
  decodeRotationState,
  DEFAULT_ROTATION_SETTINGS,
  encodeRotationState,
  INITIAL_ROTATION_STATE,
  rotationIntent,
  stepRotation,
  type ActiveRotation,
  type PeerFollow,
  type RotationEffect,
  type RotationInput,
  type RotationState,
} from './rotation.js';

// The rotation state machine as a table: state × input → state, effects. Then the codec, the
// intent per phase, and a simulated agent that crashes after every single step and resumes.

const T0 = Date.parse('2026-01-01T00:00:00.000Z');
const KEY_A = 'A'.repeat(43) + '=';
const KEY_B = 'B'.repeat(43) + '=';
const KEY_C = 'C'.repeat(43) + '=';
const S = { ...DEFAULT_ROTATION_SETTINGS, graceMs: 30_000, peerTimeoutMs: 15_000, maxKeyAgeMs: 0, pollMs: 100 };

const peer = (name: string, report: PeerFollow['report'], handshake = report !== 'none'): PeerFollow => ({
  name,
  report,
  handshake,
});

function input(over: Partial<RotationInput> = {}): RotationInput {
  return {
    now: T0,
    synced: true,
    self: 'n1',
    settings: S,
    currentKey: { publicKey: KEY_A, epoch: 1, createdAt: T0 - 1000 },
    nextKey: undefined,
    request: undefined,
    peers: [peer('n2', 'none'), peer('n3', 'none')],
    othersRotating: 0,
    activeLinkPresent: true,
    applied: true,
    ...over,
  };
}

function rot(over: Partial<ActiveRotation> = {}): ActiveRotation {
  return {
    id: 'r-1',
    reason: 'request',
    phase: 'staging',
    startedAt: T0,
    phaseSince: T0,
    announcedAt: T0,
    nextEpoch: 2,
    nextPublicKey: KEY_B,
    graceUntil: undefined,
    lagging: [],
    ...over,
  };
}

const state = (r: ActiveRotation | undefined, over: Partial<RotationState> = {}): RotationState => ({
  ...INITIAL_ROTATION_STATE,
  rotation: r,
  ...over,
});
const NEXT = { publicKey: KEY_B, epoch: 2 };

interface Row {
  readonly name: string;
  readonly state: RotationState;
  readonly input: Partial<RotationInput>;
  /** Expected phase after the step (`idle` when no rotation). */
  readonly phase: string;
  readonly effects?: readonly RotationEffect['type'][];
  readonly event?: RegExp;
  readonly check?: (s: RotationState) => void;
}

const TABLE: Row[] = [
  // idle
  {
    name: 'idle, store not synced: nothing, even with a request',
    state: state(undefined),
    input: { synced: false, request: { id: 'r-1' } },
    phase: 'idle',
    effects: [],
  },
  { name: 'idle, nothing asked, auto rotation off', state: state(undefined), input: {}, phase: 'idle', effects: [] },
  {
    name: 'idle, a new request starts a rotation and generates the next key',
    state: state(undefined),
    input: { request: { id: 'r-1' } },
    phase: 'preparing',
    effects: ['generate-next-key'],
    event: /rotation r-1: starting \(requested\)/,
    check: (s) => expect(s.rotation).toMatchObject({ id: 'r-1', reason: 'request', nextEpoch: 2, startedAt: T0 }),
  },
  {
    name: 'idle, the request was already carried out',
    state: state(undefined, { handledRequestId: 'r-1' }),
    input: { request: { id: 'r-1' } },
    phase: 'idle',
    effects: [],
  },
  {
    name: 'idle, the request is the last completed one',
    state: state(undefined, { last: { id: 'r-1', reason: 'request', completedAt: T0, epoch: 2, lagging: [] } }),
    input: { request: { id: 'r-1' } },
    phase: 'idle',
    effects: [],
  },
  {
    name: 'idle, a next key nobody refers to is erased',
    state: state(undefined),
    input: { nextKey: NEXT },
    phase: 'idle',
    effects: ['erase-next-key'],
    event: /erasing a next key/,
  },
  {
    name: 'idle, a request with an orphaned next key just overwrites it',
    state: state(undefined),
    input: { nextKey: NEXT, request: { id: 'r-2' } },
    phase: 'preparing',
    effects: ['generate-next-key'],
  },
  {
    name: 'idle, key older than the maximum: automatic rotation',
    state: state(undefined),
    input: {
      settings: { ...S, maxKeyAgeMs: 86_400_000 },
      currentKey: { publicKey: KEY_A, epoch: 1, createdAt: T0 - 2 * 86_400_000 },
    },
    phase: 'preparing',
    effects: ['generate-next-key'],
    check: (s) => expect(s.rotation).toMatchObject({ id: 'age-n1-e2', reason: 'max-key-age' }),
  },
  {
    name: 'idle, key old but another node rotates: staggered, wait',
    state: state(undefined),
    input: {
      settings: { ...S, maxKeyAgeMs: 86_400_000 },
      currentKey: { publicKey: KEY_A, epoch: 1, createdAt: T0 - 2 * 86_400_000 },
      othersRotating: 1,
    },
    phase: 'idle',
    effects: [],
  },
  {
    name: 'idle, key old but another idle node is due first: wait for it',
    state: state(undefined),
    input: {
      settings: { ...S, maxKeyAgeMs: 86_400_000 },
      currentKey: { publicKey: KEY_A, epoch: 1, createdAt: T0 - 2 * 86_400_000 },
      autoAhead: 1,
    },
    phase: 'idle',
    effects: [],
  },
  {
    name: 'idle, key created in the future (clock went back): not due',
    state: state(undefined),
    input: {
      settings: { ...S, maxKeyAgeMs: 86_400_000 },
      currentKey: { publicKey: KEY_A, epoch: 1, createdAt: T0 + 10 * 86_400_000 },
    },
    phase: 'idle',
    effects: [],
  },
  // preparing
  {
    name: 'preparing without the next key (crash before it was written): generate again',
    state: state(rot({ phase: 'preparing', nextPublicKey: undefined })),
    input: {},
    phase: 'preparing',
    effects: ['generate-next-key'],
  },
  {
    name: 'preparing with a next key of another epoch: generate',
    state: state(rot({ phase: 'preparing', nextPublicKey: undefined })),
    input: { nextKey: { publicKey: KEY_C, epoch: 7 } },
    phase: 'preparing',
    effects: ['generate-next-key'],
  },
  {
    name: 'preparing with the next key: staging it',
    state: state(rot({ phase: 'preparing', nextPublicKey: undefined })),
    input: { nextKey: NEXT },
    phase: 'staging',
    effects: [],
    check: (s) => expect(s.rotation?.nextPublicKey).toBe(KEY_B),
  },
  // staging
  {
    name: 'staging, datapath not in place yet: wait',
    state: state(rot()),
    input: { nextKey: NEXT, applied: false, peers: [peer('n2', 'staged')] },
    phase: 'staging',
    effects: [],
  },
  {
    name: 'staging, every peer staged and shook hands: moving',
    state: state(rot()),
    input: { nextKey: NEXT, peers: [peer('n2', 'staged'), peer('n3', 'moved')] },
    phase: 'moving',
    event: /2 of 2 peers staged/,
  },
  {
    name: 'staging, a peer staged but no handshake yet: wait',
    state: state(rot()),
    input: { nextKey: NEXT, peers: [peer('n2', 'staged'), peer('n3', 'staged', false)] },
    phase: 'staging',
  },
  {
    name: 'staging, a peer silent until the timeout: moving without it',
    state: state(rot()),
    input: { now: T0 + 15_000, nextKey: NEXT, peers: [peer('n2', 'staged'), peer('n3', 'none')] },
    phase: 'moving',
    event: /going on without n3/,
  },
  {
    name: 'staging, no peers at all (one-node cluster): moving',
    state: state(rot()),
    input: { nextKey: NEXT, peers: [] },
    phase: 'moving',
  },
  {
    name: 'staging, the next key vanished from the key store: prepare another',
    state: state(rot()),
    input: { nextKey: undefined, peers: [] },
    phase: 'preparing',
    event: /no longer in the key store/,
  },
  {
    name: 'staging, first pass with its datapath applied, long after it began: announced now, peers get the full timeout',
    state: state(rot({ announcedAt: undefined })),
    input: { now: T0 + 60_000, nextKey: NEXT, peers: [peer('n2', 'none')] },
    phase: 'staging',
    effects: [],
    event: /staging announced 60.0 s after it began/,
    check: (s) => expect(s.rotation?.announcedAt).toBe(T0 + 60_000),
  },
  {
    name: 'staging, datapath not applied for a long time: not announced, no timeout',
    state: state(rot({ announcedAt: undefined })),
    input: { now: T0 + 60_000, nextKey: NEXT, applied: false, peers: [peer('n2', 'none')] },
    phase: 'staging',
    check: (s) => expect(s.rotation?.announcedAt).toBeUndefined(),
  },
  {
    name: 'staging, the timeout counts from the announcement, not from the phase start',
    state: state(rot({ announcedAt: T0 + 60_000 })),
    input: { now: T0 + 74_999, nextKey: NEXT, peers: [peer('n2', 'staged'), peer('n3', 'none')] },
    phase: 'staging',
  },
  {
    name: 'staging, a peer silent for the timeout after the announcement: moving without it',
    state: state(rot({ announcedAt: T0 + 60_000 })),
    input: { now: T0 + 75_000, nextKey: NEXT, peers: [peer('n2', 'staged'), peer('n3', 'none')] },
    phase: 'moving',
    event: /going on without n3/,
    check: (s) => expect(s.rotation).toMatchObject({ phaseSince: T0 + 75_000, announcedAt: undefined }),
  },
  {
    name: 'staging, every peer ready at the first announcement: moving at once (nothing to wait for)',
    state: state(rot({ announcedAt: undefined })),
    input: { nextKey: NEXT, peers: [peer('n2', 'staged')] },
    phase: 'moving',
  },
  // moving
  {
    name: 'moving, a staged peer has not moved: wait',
    state: state(rot({ phase: 'moving' })),
    input: { nextKey: NEXT, peers: [peer('n2', 'moved'), peer('n3', 'staged')] },
    phase: 'moving',
  },
  {
    name: 'moving, every staged peer moved: grace, new key published',
    state: state(rot({ phase: 'moving' })),
    input: { nextKey: NEXT, now: T0 + 500, peers: [peer('n2', 'moved'), peer('n3', 'moved')] },
    phase: 'grace',
    check: (s) => expect(s.rotation?.graceUntil).toBe(T0 + 500 + 30_000),
  },
  {
    name: 'moving, a peer that never staged is not waited for',
    state: state(rot({ phase: 'moving' })),
    input: { nextKey: NEXT, peers: [peer('n2', 'moved'), peer('n3', 'none')] },
    phase: 'grace',
  },
  {
    name: 'moving, a staged peer that never moves is given up at the timeout',
    state: state(rot({ phase: 'moving' })),
    input: { nextKey: NEXT, now: T0 + 15_000, peers: [peer('n2', 'moved'), peer('n3', 'staged')] },
    phase: 'grace',
    event: /n3 staged but did not move/,
  },
  {
    name: 'moving, not applied yet: not announced, a staged peer is waited for however long',
    state: state(rot({ phase: 'moving', announcedAt: undefined })),
    input: { now: T0 + 60_000, nextKey: NEXT, applied: false, peers: [peer('n2', 'staged')] },
    phase: 'moving',
    check: (s) => expect(s.rotation?.announcedAt).toBeUndefined(),
  },
  {
    name: 'moving, first applied pass: announced now, the staged peer gets the full timeout',
    state: state(rot({ phase: 'moving', announcedAt: undefined })),
    input: { now: T0 + 60_000, nextKey: NEXT, peers: [peer('n2', 'staged')] },
    phase: 'moving',
    event: /moving announced 60.0 s after it began/,
    check: (s) => expect(s.rotation?.announcedAt).toBe(T0 + 60_000),
  },
  // grace
  {
    name: 'grace, not over: wait',
    state: state(rot({ phase: 'grace', graceUntil: T0 + 30_000 })),
    input: { nextKey: NEXT, now: T0 + 10_000 },
    phase: 'grace',
    effects: [],
  },
  {
    name: 'grace, the new key not yet published (not applied): the old key stays, even past the end set on entry',
    state: state(rot({ phase: 'grace', announcedAt: undefined, graceUntil: T0 + 30_000 })),
    input: { nextKey: NEXT, now: T0 + 45_000, applied: false },
    phase: 'grace',
    effects: [],
  },
  {
    name: 'grace, first pass that published the new key: the grace period counts from now',
    state: state(rot({ phase: 'grace', announcedAt: undefined, graceUntil: T0 + 30_000 })),
    input: { nextKey: NEXT, now: T0 + 45_000 },
    phase: 'grace',
    event: /grace announced 45.0 s after it began.*old key stays 30 s/,
    check: (s) => expect(s.rotation).toMatchObject({ announcedAt: T0 + 45_000, graceUntil: T0 + 75_000 }),
  },
  {
    name: 'grace, never announced and an unknown end: still counts as now',
    state: state(rot({ phase: 'grace', announcedAt: undefined, graceUntil: undefined })),
    input: { nextKey: NEXT },
    phase: 'finishing',
  },
  {
    name: 'grace, unknown end counts as now',
    state: state(rot({ phase: 'grace', graceUntil: undefined })),
    input: { nextKey: NEXT },
    phase: 'finishing',
  },
  {
    name: 'grace, end further away than the grace period (clock went back): restarted from now',
    state: state(rot({ phase: 'grace', graceUntil: T0 + 3_600_000 })),
    input: { nextKey: NEXT },
    phase: 'grace',
    event: /clock went back/,
    check: (s) => expect(s.rotation?.graceUntil).toBe(T0 + 30_000),
  },
  {
    name: 'grace, over: finishing, peers that never moved are named',
    state: state(rot({ phase: 'grace', graceUntil: T0 })),
    input: { nextKey: NEXT, peers: [peer('n2', 'moved'), peer('n3', 'none')] },
    phase: 'finishing',
    event: /n3 never moved/,
    check: (s) => expect(s.rotation?.lagging).toEqual(['n3']),
  },
  // finishing
  {
    name: 'finishing, old link still there: wait for the reconciler',
    state: state(rot({ phase: 'finishing' })),
    input: { nextKey: NEXT, activeLinkPresent: true },
    phase: 'finishing',
    effects: [],
  },
  {
    name: 'finishing, old link gone: promote (erases the old key)',
    state: state(rot({ phase: 'finishing' })),
    input: { nextKey: NEXT, activeLinkPresent: false },
    phase: 'finishing',
    effects: ['promote-next-key'],
  },
  {
    name: 'finishing, promoted: idle on the other slot, request handled',
    state: state(rot({ phase: 'finishing', lagging: ['n3'] })),
    input: {
      nextKey: undefined,
      currentKey: { publicKey: KEY_B, epoch: 2, createdAt: T0 },
      activeLinkPresent: false,
      now: T0 + 40_000,
    },
    phase: 'idle',
    event: /done in 40.0 s/,
    check: (s) =>
      expect(s).toEqual({
        activeSlot: 1,
        handledRequestId: 'r-1',
        last: { id: 'r-1', reason: 'request', completedAt: T0 + 40_000, epoch: 2, lagging: ['n3'] },
        rotation: undefined,
      }),
  },
  {
    name: 'finishing an automatic rotation leaves the handled request alone',
    state: state(rot({ phase: 'finishing', id: 'age-n1-e2', reason: 'max-key-age' }), {
      handledRequestId: 'r-0',
      activeSlot: 1,
    }),
    input: { nextKey: undefined, currentKey: { publicKey: KEY_B, epoch: 2, createdAt: T0 }, activeLinkPresent: false },
    phase: 'idle',
    check: (s) => expect(s).toMatchObject({ activeSlot: 0, handledRequestId: 'r-0' }),
  },
  {
    name: 'finishing, the new key is in neither slot: stuck, said so',
    state: state(rot({ phase: 'finishing' })),
    input: { nextKey: undefined, activeLinkPresent: false },
    phase: 'finishing',
    effects: [],
    event: /neither key slot/,
  },
  // clock
  {
    name: 'a phase that started in the future (clock went back) restarts its timer now',
    state: state(rot({ phase: 'staging', phaseSince: T0 + 3_600_000 })),
    input: { nextKey: NEXT },
    phase: 'staging',
    event: /clock went back 3600 s/,
    check: (s) => expect(s.rotation?.phaseSince).toBe(T0),
  },
  {
    name: 'an announcement in the future (clock went back) restarts the timer now',
    state: state(rot({ phase: 'staging', announcedAt: T0 + 600_000 })),
    input: { nextKey: NEXT, peers: [peer('n2', 'none')] },
    phase: 'staging',
    event: /clock went back 600 s/,
    check: (s) => expect(s.rotation).toMatchObject({ phaseSince: T0, announcedAt: T0 }),
  },
];

describe('stepRotation: the table', () => {
  it.each(TABLE.map((r) => [r.name, r] as const))('%s', (_name, row) => {
    const step = stepRotation(row.state, input(row.input));
    expect(step.state.rotation?.phase ?? 'idle').toBe(row.phase);
    if (row.effects !== undefined) expect(step.effects.map((e) => e.type)).toEqual(row.effects);
    if (row.event !== undefined) expect(step.events.join('\n')).toMatch(row.event);
    row.check?.(step.state);
  });

  it('is deterministic and settles: the same input twice changes nothing more', () => {
    for (const row of TABLE) {
      const i = input(row.input);
      const a = stepRotation(row.state, i);
      expect(stepRotation(row.state, i)).toEqual(a);
    }
  });

  it('never mutates the state it is given', () => {
    for (const row of TABLE) {
      const frozen = JSON.stringify(row.state);
      stepRotation(row.state, input(row.input));
      expect(JSON.stringify(row.state)).toBe(frozen);
    }
  });

  it('waits with a poll interval while peers are outstanding, and sleeps until the grace ends', () => {
    expect(stepRotation(state(rot()), input({ nextKey: NEXT, peers: [peer('n2', 'none')] })).wakeInMs).toBe(100);
    expect(stepRotation(state(rot({ phase: 'grace', graceUntil: T0 + 5000 })), input({ nextKey: NEXT })).wakeInMs).toBe(
      5000,
    );
  });
});

describe('automatic rotation is staggered', () => {
  const day = 86_400_000;
  it('is due between 90 % and 100 % of the maximum age, at a point fixed per node and epoch', () => {
    const dues = Array.from({ length: 50 }, (_, i) =>
      autoRotationDueAt({ node: `node-${i}`, epoch: 1, createdAt: 0, maxKeyAgeMs: 30 * day })!,
    );
    for (const d of dues) {
      expect(d).toBeGreaterThan(27 * day);
      expect(d).toBeLessThanOrEqual(30 * day);
    }
    expect(new Set(dues).size).toBe(50);
    // Spread: the 50 nodes cover most of the 3-day window, not one instant.
    expect(Math.max(...dues) - Math.min(...dues)).toBeGreaterThan(2 * day);
    expect(autoRotationDueAt({ node: 'node-1', epoch: 1, createdAt: 0, maxKeyAgeMs: 30 * day })).toBe(dues[1]);
    expect(autoRotationDueAt({ node: 'node-1', epoch: 2, createdAt: 0, maxKeyAgeMs: 30 * day })).not.toBe(dues[1]);
  });

  it('is off with a maximum age of 0', () => {
    expect(autoRotationDueAt({ node: 'n', epoch: 1, createdAt: 0, maxKeyAgeMs: 0 })).toBeUndefined();
  });

  it('never postpones past twice the maximum age, whatever others announce', () => {
    const settings = { ...S, maxKeyAgeMs: day, maxConcurrentAuto: 1 };
    const overdue = { publicKey: KEY_A, epoch: 1, createdAt: T0 - 2 * day - 1 };
    expect(
      stepRotation(INITIAL_ROTATION_STATE, input({ self: 'n2', settings, currentKey: overdue, othersRotating: 5 }))
        .state.rotation?.reason,
    ).toBe('max-key-age');
  });

  it('a clock jump (under twice the maximum age) that makes every key due still starts one node at a time', () => {
    const settings = { ...S, maxKeyAgeMs: day, maxConcurrentAuto: 1 };
    const old = { publicKey: KEY_A, epoch: 1, createdAt: T0 - 2 * day };
    const first = stepRotation(INITIAL_ROTATION_STATE, input({ settings, currentKey: old, othersRotating: 0 }));
    const second = stepRotation(
      INITIAL_ROTATION_STATE,
      input({ self: 'n2', settings, currentKey: old, othersRotating: 1 }),
    );
    expect(first.state.rotation?.reason).toBe('max-key-age');
    expect(second.state.rotation).toBeUndefined();
    expect(second.wakeInMs).toBeGreaterThanOrEqual(1000);
  });
});

describe('rotationIntent', () => {
  it.each([
    [
      'idle',
      state(undefined),
      {
        incomingSlot: undefined,
        viaIncoming: [],
        mirror: false,
        retireActive: false,
        published: 'current',
        announceNext: false,
      },
    ],
    [
      'preparing',
      state(rot({ phase: 'preparing', nextPublicKey: undefined })),
      { incomingSlot: undefined, viaIncoming: [], mirror: false, published: 'current', announceNext: false },
    ],
    [
      'staging',
      state(rot()),
      { incomingSlot: 1, incomingKey: KEY_B, viaIncoming: [], mirror: false, published: 'current', announceNext: true },
    ],
    [
      'moving',
      state(rot({ phase: 'moving' })),
      { incomingSlot: 1, viaIncoming: 'all', mirror: true, published: 'current', announceNext: true },
    ],
    [
      'grace',
      state(rot({ phase: 'grace' })),
      { incomingSlot: 1, viaIncoming: 'all', mirror: true, published: 'next', announceNext: false },
    ],
    [
      'finishing',
      state(rot({ phase: 'finishing' })),
      { incomingSlot: 1, viaIncoming: 'all', mirror: false, retireActive: true, published: 'next' },
    ],
    ['staging from slot 1 uses slot 0', state(rot(), { activeSlot: 1 }), { activeSlot: 1, incomingSlot: 0 }],
  ] as [string, RotationState, Record<string, unknown>][])('%s', (_n, s, want) => {
    expect(rotationIntent(s)).toMatchObject(want);
  });
});

describe('state file codec', () => {
  const full: RotationState = {
    activeSlot: 1,
    handledRequestId: 'r-0',
    last: { id: 'r-0', reason: 'request', completedAt: T0 - 5000, epoch: 3, lagging: ['n9'] },
    rotation: rot({ phase: 'grace', graceUntil: T0 + 30_000, lagging: [] }),
  };

  it('round-trips every field', () => {
    const r = decodeRotationState(encodeRotationState(full), T0);
    expect(r).toEqual({ ok: true, state: full, warnings: [] });
    expect(decodeRotationState(encodeRotationState(INITIAL_ROTATION_STATE), T0)).toEqual({
      ok: true,
      state: INITIAL_ROTATION_STATE,
      warnings: [],
    });
  });

  it('an unreadable grace end is kept unknown (counts as now), with a warning', () => {
    const doc = JSON.parse(encodeRotationState(full));
    doc.rotation.graceUntil = 'soon';
    const r = decodeRotationState(JSON.stringify(doc), T0);
    expect(r.ok && r.state.rotation?.graceUntil).toBeUndefined();
    expect(r.ok && r.warnings.join()).toMatch(/counts as over/);
    // …and the machine then finishes the grace period at once.
    if (r.ok) expect(stepRotation(r.state, input({ nextKey: NEXT })).state.rotation?.phase).toBe('finishing');
  });

  it('a phase not announced yet round-trips as such (null); a file without the field times from the phase start', () => {
    const pending: RotationState = { ...full, rotation: rot({ phase: 'moving', announcedAt: undefined }) };
    const text = encodeRotationState(pending);
    expect(JSON.parse(text).rotation.announcedAt).toBeNull();
    expect(decodeRotationState(text, T0)).toEqual({ ok: true, state: pending, warnings: [] });
    const old = JSON.parse(text);
    delete old.rotation.announcedAt;
    old.rotation.phaseSince = new Date(T0 - 5000).toISOString();
    const r = decodeRotationState(JSON.stringify(old), T0);
    expect(r.ok && r.state.rotation).toMatchObject({ phaseSince: T0 - 5000, announcedAt: T0 - 5000 });
    old.rotation.announcedAt = 'later';
    const u = decodeRotationState(JSON.stringify(old), T0);
    expect(u.ok && u.state.rotation?.announcedAt).toBe(T0 - 5000);
    expect(u.ok && u.warnings.join()).toMatch(/announcedAt is unreadable/);
  });

  it('a missing phase start restarts the phase timer now', () => {
    const doc = JSON.parse(encodeRotationState(full));
    delete doc.rotation.phaseSince;
    const r = decodeRotationState(JSON.stringify(doc), T0 + 7);
    expect(r.ok && r.state.rotation?.phaseSince).toBe(T0 + 7);
  });

  it.each([
    ['not JSON', '{', /not JSON/],
    ['another version', JSON.stringify({ version: 2, activeSlot: 0 }), /version 2/],
    ['a bad slot', JSON.stringify({ version: 1, activeSlot: 2 }), /activeSlot/],
    [
      'an unknown phase',
      JSON.stringify({
        version: 1,
        activeSlot: 0,
        rotation: { id: 'r', reason: 'request', phase: 'dancing', nextEpoch: 2, lagging: [] },
      }),
      /not a phase/,
    ],
    [
      'a phase past preparing without the new key',
      JSON.stringify({
        version: 1,
        activeSlot: 0,
        rotation: { id: 'r', reason: 'request', phase: 'moving', nextEpoch: 2, lagging: [] },
      }),
      /nextPublicKey is missing/,
    ],
    ['an id with a slash', JSON.stringify({ version: 1, activeSlot: 0, handledRequestId: '../x' }), /handledRequestId/],
  ])('rejects %s', (_n, text, re) => {
    const r = decodeRotationState(text, T0);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatch(re);
  });
});

describe('a simulated agent killed after every step resumes and finishes', () => {
  /**
   * A toy agent: persisted state + key slots + a link table, run in the order the real agent
   * runs (persist, then effects). `crashAt` kills it after that many persist/effect operations;
   * it restarts from what was persisted and must still finish with exactly one key and link.
   */
  function simulate(crashAt: number | undefined): {
    state: RotationState;
    keys: { current: string; next: string | undefined };
    links: Set<number>;
    ops: number;
  } {
    let persisted: RotationState = INITIAL_ROTATION_STATE;
    const keys = { current: KEY_A, next: undefined as string | undefined };
    const epochs = { current: 1, next: 0 };
    const links = new Set<number>([0]);
    let ops = 0;
    let now = T0;
    let generated = 0;
    const tick = (): void => {
      ops++;
      if (crashAt !== undefined && ops === crashAt) throw new Error('crash');
    };
    for (let pass = 0; pass < 200; pass++) {
      let mem = persisted; // a restart reads the file
      try {
        for (let pass2 = 0; pass2 < 200; pass2++) {
          now += 200;
          // The reconciler: datapath for the current state (links exist per intent).
          const intent = rotationIntent(mem);
          if (intent.incomingSlot !== undefined) links.add(intent.incomingSlot);
          if (intent.retireActive) links.delete(intent.activeSlot);
          const step = stepRotation(
            mem,
            input({
              now,
              settings: { ...S, graceMs: 1000 },
              request: { id: 'r-9' },
              currentKey: { publicKey: keys.current, epoch: epochs.current, createdAt: T0 },
              nextKey: keys.next === undefined ? undefined : { publicKey: keys.next, epoch: epochs.next },
              peers: [peer('n2', intent.viaIncoming === 'all' ? 'moved' : 'staged')],
              activeLinkPresent: links.has(mem.activeSlot),
            }),
          );
          if (step.state !== mem) {
            tick();
            persisted = step.state;
            mem = step.state;
          }
          for (const e of step.effects) {
            tick();
            if (e.type === 'generate-next-key') {
              generated++;
              keys.next = generated === 1 ? KEY_B : KEY_C;
              epochs.next = e.epoch;
            } else if (e.type === 'erase-next-key') {
              keys.next = undefined;
            } else {
              keys.current = keys.next!;
              epochs.current = epochs.next;
              keys.next = undefined;
            }
          }
          if (mem.rotation === undefined && mem.last?.id === 'r-9') return { state: mem, keys, links, ops };
        }
      } catch {
        // killed: the next loop iteration restarts from `persisted`
      }
    }
    throw new Error('did not finish');
  }

  const clean = simulate(undefined);
  it('finishes without a crash: one key, epoch 2, one link on slot 1', () => {
    expect(clean.state).toMatchObject({ activeSlot: 1, handledRequestId: 'r-9', rotation: undefined });
    expect(clean.keys.next).toBeUndefined();
    expect([...clean.links]).toEqual([1]);
  });

  it.each(Array.from({ length: clean.ops }, (_, i) => i + 1))(
    'killed after operation %i: resumes and finishes, nothing left over',
    (n) => {
      const r = simulate(n);
      expect(r.state).toMatchObject({
        activeSlot: 1,
        handledRequestId: 'r-9',
        rotation: undefined,
        last: { id: 'r-9', epoch: 2 },
      });
      expect(r.keys.next).toBeUndefined();
      expect(r.keys.current).not.toBe(KEY_A);
      expect([...r.links]).toEqual([1]);
    },
  );
});
