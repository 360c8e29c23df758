/**
 * The exchange state machine driven with the real crypto (ML-KEM-768, the KDF, the confirmation
 * tag), the way the agent will drive it: an honest exchange leaves both nodes with the same PSK
 * installed; a ciphertext tampered in transit leaves the initiator without any new PSK (its
 * `required` pair stays not ready) and the responder with a key nobody else holds.
 */
import { generateKeyPair, sodiumReady, type PublicKey } from '../keys.js';
import {
  INITIAL_PQ_STATE,
  pairBinding,
  pqReadiness,
  pqSettings,
  stepPair,
  type PqPairState,
  type PqPairView,
} from './exchange.js';
import {
  ciphertextHash,
  confirmationTag,
  derivePairSecret,
  pqInitiator,
  verifyConfirmationTag,
  type PairSecret,
  type PqTranscript,
} from './kdf.js';
import {
  decapsulate,
  encapsulate,
  encapsulationKeyHash,
  encapsulationKeyId,
  generateKemKeyPair,
  type KemKeyPair,
} from './mlkem.js';

const T0 = 1_800_000_000_000;
const S = pqSettings('required', 10);

interface Node {
  name: string;
  x25519: PublicKey;
  kem: KemKeyPair;
}

let nodes: [Node, Node];

beforeAll(async () => {
  await sodiumReady();
  const mk = async (name: string): Promise<Node> => ({
    name,
    x25519: (await generateKeyPair()).publicKey,
    kem: generateKemKeyPair(),
  });
  nodes = [await mk('worker-1'), await mk('worker-2')];
});

/** Runs one exchange; `tamper` flips a ciphertext bit in transit. Returns what each side installed. */
function runExchange(tamper: boolean) {
  const iName = pqInitiator(nodes[0].name, nodes[1].name);
  const [ini, res] = iName === nodes[0].name ? nodes : [nodes[1], nodes[0]];
  const side = (n: Node) => ({ name: n.name, x25519: n.x25519, kemKeyId: encapsulationKeyId(n.kem.encapsulationKey) });
  const binding = pairBinding(side(ini), side(res));
  const iView: PqPairView = {
    role: 'initiator',
    selfKemKeyId: side(ini).kemKeyId,
    peerKemKeyId: side(res).kemKeyId,
    binding,
  };
  const rView: PqPairView = {
    role: 'responder',
    selfKemKeyId: side(res).kemKeyId,
    peerKemKeyId: side(ini).kemKeyId,
    binding,
  };
  const transcript = (renewalId: number, c: Uint8Array): PqTranscript => ({
    initiator: { name: ini.name, x25519: ini.x25519, kemKeyHash: encapsulationKeyHash(ini.kem.encapsulationKey) },
    responder: { name: res.name, x25519: res.x25519, kemKeyHash: encapsulationKeyHash(res.kem.encapsulationKey) },
    ciphertextHash: ciphertextHash(c),
    renewalId,
  });

  let iState: PqPairState = INITIAL_PQ_STATE;
  let rState: PqPairState = INITIAL_PQ_STATE;
  const installed: { ini?: PairSecret; res?: PairSecret } = {};
  let pending: PairSecret | undefined;

  const tick = stepPair(iState, { type: 'tick' }, { view: iView, settings: S, now: T0 });
  iState = tick.state;
  const send = tick.effects.find((e) => e.type === 'send-ciphertext')!;
  const { ciphertext, sharedSecret } = encapsulate(res.kem.encapsulationKey);
  pending = derivePairSecret(sharedSecret, transcript(send.renewalId, ciphertext));
  const wire = Uint8Array.from(ciphertext);
  if (tamper) wire[100] = wire[100]! ^ 0x80;

  const got = stepPair(
    rState,
    { type: 'ciphertext', renewalId: send.renewalId, forKemKeyId: rView.selfKemKeyId, binding },
    { view: rView, settings: S, now: T0 },
  );
  rState = got.state;
  let tag: Uint8Array | undefined;
  let rSecret: PairSecret | undefined;
  for (const e of got.effects) {
    if (e.type === 'accept-ciphertext') {
      rSecret = derivePairSecret(decapsulate(wire, res.kem.decapsulationKey), transcript(e.renewalId, wire));
    }
    if (e.type === 'install-psk') installed.res = rSecret;
    if (e.type === 'send-ack') tag = confirmationTag(rSecret!.confirmKey, e.renewalId);
  }

  const tagOk = verifyConfirmationTag(pending.confirmKey, send.renewalId, tag!);
  const acked = stepPair(
    iState,
    { type: 'ack', renewalId: send.renewalId, tagOk },
    { view: iView, settings: S, now: T0 },
  );
  iState = acked.state;
  for (const e of acked.effects) {
    if (e.type === 'install-psk') installed.ini = pending;
    if (e.type === 'drop-pending') pending = undefined;
  }
  return {
    installed,
    pending,
    effects: acked.effects.map((e) => e.type),
    iReady: pqReadiness(iState, iView, S, T0),
    rReady: pqReadiness(rState, rView, S, T0),
  };
}

describe('exchange with real ML-KEM-768', () => {
  it('an honest exchange installs the same PSK on both nodes', () => {
    const r = runExchange(false);
    expect(r.effects).toEqual(['install-psk']);
    expect(r.installed.ini).toBeDefined();
    expect(Buffer.from(r.installed.res!.psk).equals(Buffer.from(r.installed.ini!.psk))).toBe(true);
    expect(r.iReady).toMatchObject({ ready: true, protection: 'hybrid' });
  });

  it('a tampered ciphertext installs nothing on the initiator; the pair never shares a new key', () => {
    const r = runExchange(true);
    expect(r.effects).toEqual(['drop-pending']);
    expect(r.installed.ini).toBeUndefined();
    expect(r.pending).toBeUndefined();
    // The responder holds a key derived from ML-KEM's implicit-rejection secret: nobody else has it,
    // so a WireGuard handshake under it fails (fail closed) until the next honest exchange.
    expect(r.installed.res).toBeDefined();
    expect(r.iReady).toMatchObject({ ready: false, protection: 'none' });
  });
});
