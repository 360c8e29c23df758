/**
 * The pure per-pair exchange: one table of single steps (each role, each message, each timer),
 * a table of readiness per mode, and two simulated nodes exchanging messages over simulated
 * hours (renewal schedule, key rotation, a peer that stops answering).
 */
import {
  INITIAL_PQ_STATE,
  pairBinding,
  pqPhase,
  pqReadiness,
  pqSettings,
  stepPair,
  type PqEffect,
  type PqEvent,
  type PqMode,
  type PqPairState,
  type PqPairView,
  type PqReadiness,
  type PqSettings,
} from './exchange.js';

const T0 = 1_800_000_000_000;
const MIN = 60_000;
const S = pqSettings('required', 10); // renew 10 min, retry 30 s, max age 20 min
const X_A = 'A'.repeat(43) + '=';
const X_B = 'B'.repeat(43) + '=';
const B1 = pairBinding({ name: 'a', x25519: X_A, kemKeyId: 'ka1' }, { name: 'b', x25519: X_B, kemKeyId: 'kb1' });
const B2 = pairBinding({ name: 'a', x25519: X_A, kemKeyId: 'ka1' }, { name: 'b', x25519: X_B, kemKeyId: 'kb2' });
const INI: PqPairView = { role: 'initiator', selfKemKeyId: 'ka1', peerKemKeyId: 'kb1', binding: B1 };
const RES: PqPairView = { role: 'responder', selfKemKeyId: 'kb1', peerKemKeyId: 'ka1', binding: B1 };
const NO_PEER_KEY: PqPairView = { ...INI, peerKemKeyId: undefined, binding: undefined, peerKemProblem: 'bad base64' };

const SENT: PqPairState = {
  ...INITIAL_PQ_STATE,
  pending: { renewalId: T0, sentAt: T0, binding: B1 },
  lastRenewalId: T0,
  lastSentAt: T0,
};
const CONFIRMED_I: PqPairState = {
  ...INITIAL_PQ_STATE,
  current: { renewalId: T0, establishedAt: T0, binding: B1 },
  lastRenewalId: T0,
  lastSentAt: T0,
};
const CONFIRMED_R: PqPairState = {
  ...INITIAL_PQ_STATE,
  current: { renewalId: T0, establishedAt: T0, binding: B1 },
  lastRenewalId: T0,
  lastForKemKeyId: 'kb1',
};
const tick: PqEvent = { type: 'tick' };
const ct = (renewalId: number, over: Partial<{ forKemKeyId: string; binding: string }> = {}): PqEvent => ({
  type: 'ciphertext',
  renewalId,
  forKemKeyId: 'kb1',
  binding: B1,
  ...over,
});
const ack = (renewalId: number, tagOk = true): PqEvent => ({ type: 'ack', renewalId, tagOk });

/** Effects as short strings, e.g. `send-ciphertext@T0+30000`. */
function show(effects: readonly PqEffect[]): string[] {
  return effects.map((e) => {
    const id = e.renewalId >= T0 ? `T0+${e.renewalId - T0}` : String(e.renewalId);
    return 'reason' in e ? `${e.type}@${id}: ${e.reason}` : `${e.type}@${id}`;
  });
}

interface Row {
  name: string;
  view: PqPairView;
  state: PqPairState;
  event: PqEvent;
  now: number;
  effects: (string | RegExp)[];
  phase: string;
  settings?: PqSettings;
}

const rows: Row[] = [
  // initiator timers
  {
    name: 'initiator idle, peer key usable: sends',
    view: INI,
    state: INITIAL_PQ_STATE,
    event: tick,
    now: T0,
    effects: ['send-ciphertext@T0+0'],
    phase: 'sent',
  },
  {
    name: 'initiator idle, peer key unusable: waits',
    view: NO_PEER_KEY,
    state: INITIAL_PQ_STATE,
    event: tick,
    now: T0,
    effects: [],
    phase: 'idle',
  },
  {
    name: 'initiator sent, within retry: waits',
    view: INI,
    state: SENT,
    event: tick,
    now: T0 + 29_999,
    effects: [],
    phase: 'sent',
  },
  {
    name: 'initiator sent, retry passed: drops and resends a higher id',
    view: INI,
    state: SENT,
    event: tick,
    now: T0 + 30_000,
    effects: [/^drop-pending@T0\+0: no acknowledgement within 30 s$/, 'send-ciphertext@T0+30000'],
    phase: 'sent',
  },
  {
    name: 'initiator sent, peer key withdrawn: drops',
    view: NO_PEER_KEY,
    state: SENT,
    event: tick,
    now: T0 + 1,
    effects: [/^drop-pending@T0\+0: the peer publishes no usable/],
    phase: 'idle',
  },
  {
    name: 'initiator sent, peer key rotated: drops, resend rate-limited',
    view: { ...INI, peerKemKeyId: 'kb2', binding: B2 },
    state: SENT,
    event: tick,
    now: T0 + 1,
    effects: [/^drop-pending@T0\+0: a key of the pair changed/],
    phase: 'idle',
  },
  {
    name: 'initiator confirmed, before renewal: waits',
    view: INI,
    state: CONFIRMED_I,
    event: tick,
    now: T0 + 10 * MIN - 1,
    effects: [],
    phase: 'confirmed',
  },
  {
    name: 'initiator confirmed, renewal due: sends, keeps the current secret',
    view: INI,
    state: CONFIRMED_I,
    event: tick,
    now: T0 + 10 * MIN,
    effects: [`send-ciphertext@T0+${10 * MIN}`],
    phase: 'sent',
  },
  {
    name: 'initiator confirmed, peer key rotated: renews at once',
    view: { ...INI, peerKemKeyId: 'kb2', binding: B2 },
    state: CONFIRMED_I,
    event: tick,
    now: T0 + MIN,
    effects: [`send-ciphertext@T0+${MIN}`],
    phase: 'sent',
  },
  {
    name: 'initiator: a clock behind the last id still gives a higher id',
    view: INI,
    state: { ...CONFIRMED_I, lastRenewalId: T0 + 99 * MIN },
    event: tick,
    now: T0 + 10 * MIN,
    effects: [`send-ciphertext@T0+${99 * MIN + 1}`],
    phase: 'sent',
  },
  // initiator messages
  {
    name: 'initiator sent, good ack: installs',
    view: INI,
    state: SENT,
    event: ack(T0),
    now: T0 + 5,
    effects: ['install-psk@T0+0'],
    phase: 'confirmed',
  },
  {
    name: 'initiator sent, ack with a bad tag: drops, installs nothing',
    view: INI,
    state: SENT,
    event: ack(T0, false),
    now: T0 + 5,
    effects: [/^drop-pending@T0\+0: the confirmation tag did not verify/],
    phase: 'idle',
  },
  {
    name: 'initiator sent, ack for another id: refused',
    view: INI,
    state: SENT,
    event: ack(T0 - 1),
    now: T0 + 5,
    effects: [/^refuse@.*not in flight$/],
    phase: 'sent',
  },
  {
    name: 'initiator confirmed, duplicate ack: refused',
    view: INI,
    state: CONFIRMED_I,
    event: ack(T0),
    now: T0 + 5,
    effects: [/^refuse@T0\+0: .*not in flight$/],
    phase: 'confirmed',
  },
  {
    name: 'initiator receives a ciphertext: refused',
    view: INI,
    state: INITIAL_PQ_STATE,
    event: ct(T0),
    now: T0,
    effects: [/^refuse@T0\+0: ciphertext received by the initiator$/],
    phase: 'idle',
  },
  // responder
  {
    name: 'responder tick: nothing (the initiator drives)',
    view: RES,
    state: INITIAL_PQ_STATE,
    event: tick,
    now: T0,
    effects: [],
    phase: 'idle',
  },
  {
    name: 'responder, ciphertext for the current key: accept, install, then ack',
    view: RES,
    state: INITIAL_PQ_STATE,
    event: ct(T0),
    now: T0,
    effects: ['accept-ciphertext@T0+0', 'install-psk@T0+0', 'send-ack@T0+0'],
    phase: 'confirmed',
  },
  {
    name: 'responder, ciphertext for a previous key: refused',
    view: RES,
    state: INITIAL_PQ_STATE,
    event: ct(T0, { forKemKeyId: 'kb0' }),
    now: T0,
    effects: [/^refuse@T0\+0: ciphertext for an encapsulation key that is not our current one$/],
    phase: 'idle',
  },
  {
    name: 'responder, different view of the keys: refused',
    view: RES,
    state: INITIAL_PQ_STATE,
    event: ct(T0, { binding: B2 }),
    now: T0,
    effects: [/^refuse@T0\+0: the peer's view of the pair's keys differs/],
    phase: 'idle',
  },
  {
    name: 'responder, replayed renewal id: refused',
    view: RES,
    state: CONFIRMED_R,
    event: ct(T0),
    now: T0 + 1,
    effects: [/^refuse@T0\+0: renewal .* is not above the last accepted/],
    phase: 'confirmed',
  },
  {
    name: 'responder, older renewal id: refused',
    view: RES,
    state: CONFIRMED_R,
    event: ct(T0 - 5),
    now: T0 + 1,
    effects: [/^refuse@.*not above the last accepted/],
    phase: 'confirmed',
  },
  {
    name: 'responder, newer renewal id: accepted',
    view: RES,
    state: CONFIRMED_R,
    event: ct(T0 + 10 * MIN),
    now: T0 + 10 * MIN,
    effects: [`accept-ciphertext@T0+${10 * MIN}`, `install-psk@T0+${10 * MIN}`, `send-ack@T0+${10 * MIN}`],
    phase: 'confirmed',
  },
  {
    name: 'responder after its own key rotated: ids start over for the new key',
    view: { ...RES, selfKemKeyId: 'kb2', binding: B2 },
    state: CONFIRMED_R,
    event: ct(T0 - 5, { forKemKeyId: 'kb2', binding: B2 }),
    now: T0 + 1,
    effects: ['accept-ciphertext@1799999999995', 'install-psk@1799999999995', 'send-ack@1799999999995'],
    phase: 'confirmed',
  },
  {
    name: 'responder, negative renewal id: refused',
    view: RES,
    state: INITIAL_PQ_STATE,
    event: ct(-1),
    now: T0,
    effects: [/^refuse@0: renewal id is not a non-negative integer$/],
    phase: 'idle',
  },
  {
    name: 'responder receives an ack: refused',
    view: RES,
    state: CONFIRMED_R,
    event: ack(T0),
    now: T0,
    effects: [/^refuse@T0\+0: acknowledgement received by the responder$/],
    phase: 'confirmed',
  },
  // off
  {
    name: 'off: initiator tick does nothing',
    view: INI,
    state: INITIAL_PQ_STATE,
    event: tick,
    now: T0,
    effects: [],
    phase: 'idle',
    settings: pqSettings('off', 10),
  },
  {
    name: 'off: ciphertext refused',
    view: RES,
    state: INITIAL_PQ_STATE,
    event: ct(T0),
    now: T0,
    effects: [/^refuse@T0\+0: post-quantum is off$/],
    phase: 'idle',
    settings: pqSettings('off', 10),
  },
];

describe('stepPair', () => {
  it.each(rows.map((r) => [r.name, r] as const))('%s', (_name, r) => {
    const out = stepPair(r.state, r.event, { view: r.view, settings: r.settings ?? S, now: r.now });
    const got = show(out.effects);
    expect(got).toHaveLength(r.effects.length);
    r.effects.forEach((want, i) =>
      typeof want === 'string' ? expect(got[i]).toBe(want) : expect(got[i]).toMatch(want),
    );
    expect(pqPhase(out.state)).toBe(r.phase);
  });

  it('a dropped exchange is not resent before the retry interval, then is', () => {
    const dropped = stepPair(SENT, ack(T0, false), { view: INI, settings: S, now: T0 + 5 }).state;
    expect(stepPair(dropped, tick, { view: INI, settings: S, now: T0 + 29_999 }).effects).toEqual([]);
    expect(show(stepPair(dropped, tick, { view: INI, settings: S, now: T0 + 30_000 }).effects)).toEqual([
      'send-ciphertext@T0+30000',
    ]);
  });

  it('a renewal in flight keeps the confirmed secret in use (make-before-break)', () => {
    const renewing = stepPair(CONFIRMED_I, tick, { view: INI, settings: S, now: T0 + 10 * MIN }).state;
    expect(renewing.current).toEqual(CONFIRMED_I.current);
    expect(pqReadiness(renewing, INI, S, T0 + 10 * MIN)).toMatchObject({ ready: true, protection: 'hybrid' });
  });
});

describe('pqReadiness per mode', () => {
  const fresh = CONFIRMED_I; // established at T0
  type R = [string, PqMode, PqPairState, PqPairView, number, Partial<PqReadiness> & { reason?: unknown }];
  const table: R[] = [
    [
      'off, nothing exchanged',
      'off',
      INITIAL_PQ_STATE,
      INI,
      T0,
      { ready: true, protection: 'classical', reason: undefined },
    ],
    [
      'preferred, nothing exchanged',
      'preferred',
      INITIAL_PQ_STATE,
      INI,
      T0,
      { ready: true, protection: 'classical', reason: 'no post-quantum secret confirmed yet' },
    ],
    [
      'preferred, peer key malformed',
      'preferred',
      INITIAL_PQ_STATE,
      NO_PEER_KEY,
      T0,
      {
        ready: true,
        protection: 'classical',
        reason: 'the peer publishes no usable ML-KEM encapsulation key: bad base64',
      },
    ],
    [
      'preferred, fresh secret',
      'preferred',
      fresh,
      INI,
      T0 + MIN,
      { ready: true, protection: 'hybrid', secretAgeMs: MIN, reason: undefined },
    ],
    [
      'preferred, expired secret (still shared, kept)',
      'preferred',
      fresh,
      INI,
      T0 + 20 * MIN,
      { ready: true, protection: 'hybrid', reason: expect.stringMatching(/past its 1200 s limit/) },
    ],
    [
      'required, nothing exchanged',
      'required',
      INITIAL_PQ_STATE,
      INI,
      T0,
      { ready: false, protection: 'none', reason: 'no post-quantum secret confirmed yet' },
    ],
    [
      'required, peer key malformed',
      'required',
      INITIAL_PQ_STATE,
      NO_PEER_KEY,
      T0,
      {
        ready: false,
        protection: 'none',
        reason: expect.stringMatching(/no usable ML-KEM encapsulation key: bad base64/),
      },
    ],
    [
      'required, only a sent exchange',
      'required',
      SENT,
      INI,
      T0 + 1,
      { ready: false, protection: 'none', reason: 'no post-quantum secret confirmed yet' },
    ],
    [
      'required, fresh secret',
      'required',
      fresh,
      INI,
      T0 + 20 * MIN - 1,
      { ready: true, protection: 'hybrid', secretAgeMs: 20 * MIN - 1 },
    ],
    [
      'required, secret at its age limit',
      'required',
      fresh,
      INI,
      T0 + 20 * MIN,
      { ready: false, protection: 'none', reason: expect.stringMatching(/1200 s old, past its 1200 s limit/) },
    ],
    [
      'required, secret for rotated keys, not expired',
      'required',
      fresh,
      { ...INI, peerKemKeyId: 'kb2', binding: B2 },
      T0 + MIN,
      { ready: true, protection: 'hybrid' },
    ],
    [
      'required, responder with an accepted secret',
      'required',
      CONFIRMED_R,
      RES,
      T0 + MIN,
      { ready: true, protection: 'hybrid' },
    ],
  ];
  it.each(table)('%s', (_name, mode, state, view, now, want) => {
    const got = pqReadiness(state, view, pqSettings(mode, 10), now);
    const { reason, ...rest } = want;
    expect(got).toMatchObject(rest);
    // `reason: undefined` in a row means the readiness must carry no reason at all.
    if (reason === undefined) expect(got.reason).toBeUndefined();
    else expect(got.reason).toEqual(reason);
  });
});

describe('pqSettings', () => {
  it.each([
    [1, { renewMs: 60_000, retryMs: 15_000, maxAgeMs: 120_000 }],
    [10, { renewMs: 600_000, retryMs: 30_000, maxAgeMs: 1_200_000 }],
    [1440, { renewMs: 86_400_000, retryMs: 30_000, maxAgeMs: 172_800_000 }],
  ])('renewMinutes %i', (m, want) => {
    expect(pqSettings('preferred', m)).toEqual({ mode: 'preferred', ...want });
  });
  it.each([0, 1441, 1.5, Number.NaN])('refuses renewMinutes %p', (m) => {
    expect(() => pqSettings('required', m)).toThrow(/renewMinutes must be an integer from 1 to 1440/);
  });
});

/** Two nodes stepping the machine and passing messages; `deliver` false models a silent peer. */
function simulate(opts: { minutes: number; responderAnswersUntil: number; rotateResponderKeyAt?: number }) {
  let ini: PqPairState = INITIAL_PQ_STATE;
  let res: PqPairState = INITIAL_PQ_STATE;
  const installs: { side: 'ini' | 'res'; id: number; at: number }[] = [];
  const readyLog: { at: number; ini: PqReadiness; res: PqReadiness }[] = [];
  for (let now = T0; now <= T0 + opts.minutes * MIN; now += 10_000) {
    const rotated = opts.rotateResponderKeyAt !== undefined && now >= T0 + opts.rotateResponderKeyAt * MIN;
    const iniView = rotated ? { ...INI, peerKemKeyId: 'kb2', binding: B2 } : INI;
    const resView = rotated ? { ...RES, selfKemKeyId: 'kb2', binding: B2 } : RES;
    const a = stepPair(ini, tick, { view: iniView, settings: S, now });
    ini = a.state;
    for (const e of a.effects) {
      if (e.type !== 'send-ciphertext' || now >= T0 + opts.responderAnswersUntil * MIN) continue;
      const b = stepPair(res, ct(e.renewalId, { forKemKeyId: iniView.peerKemKeyId!, binding: iniView.binding! }), {
        view: resView,
        settings: S,
        now,
      });
      res = b.state;
      for (const f of b.effects) {
        if (f.type === 'install-psk') installs.push({ side: 'res', id: f.renewalId, at: now });
        if (f.type !== 'send-ack') continue;
        const c = stepPair(ini, ack(f.renewalId), { view: iniView, settings: S, now });
        ini = c.state;
        for (const g of c.effects)
          if (g.type === 'install-psk') installs.push({ side: 'ini', id: g.renewalId, at: now });
      }
    }
    readyLog.push({ at: now, ini: pqReadiness(ini, iniView, S, now), res: pqReadiness(res, resView, S, now) });
  }
  return { installs, readyLog, ini, res };
}

describe('two nodes over time', () => {
  it('renew every 10 minutes, both sides install the same renewal, ready throughout', () => {
    const { installs, readyLog } = simulate({ minutes: 60, responderAnswersUntil: Infinity });
    const ini = installs.filter((i) => i.side === 'ini').map((i) => (i.at - T0) / MIN);
    const res = installs.filter((i) => i.side === 'res').map((i) => i.id);
    expect(ini).toEqual([0, 10, 20, 30, 40, 50, 60]);
    expect(res).toEqual(installs.filter((i) => i.side === 'ini').map((i) => i.id));
    expect(readyLog.every((r) => r.ini.ready && r.res.ready && r.ini.protection === 'hybrid')).toBe(true);
  });

  it('a responder key rotation at minute 3 renews at once, not at minute 10', () => {
    const { installs } = simulate({ minutes: 12, responderAnswersUntil: Infinity, rotateResponderKeyAt: 3 });
    expect(installs.filter((i) => i.side === 'ini').map((i) => (i.at - T0) / MIN)).toEqual([0, 3]);
  });

  it('required: a peer that stops answering at minute 15 is dropped when the secret expires, not before', () => {
    const { readyLog } = simulate({ minutes: 45, responderAnswersUntil: 15 });
    const firstNotReady = readyLog.find((r) => !r.ini.ready);
    // Last confirmed renewal at minute 10, max age 20 minutes: dropped at minute 30 exactly.
    expect((firstNotReady!.at - T0) / MIN).toBe(30);
    expect(firstNotReady!.ini.reason).toMatch(/renewals unanswered/);
    expect(readyLog.filter((r) => r.at < T0 + 30 * MIN).every((r) => r.ini.ready)).toBe(true);
    // The responder's own view expires on the same schedule.
    expect(readyLog.find((r) => !r.res.ready)!.at).toBe(firstNotReady!.at);
  });
});
