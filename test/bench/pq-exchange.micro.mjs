// Toy micro-measure (not a test, not part of `npm run bench`): CPU of one post-quantum pair
// exchange with the real code (keymgr/pq/), and what it extrapolates to per node per hour.
// Run after `npm run build`: node test/bench/pq-exchange.micro.mjs [renewMinutes] [nodes]
import {
  decapsulate,
  encapsulate,
  encapsulationKeyHash,
  generateKemKeyPair,
  tryParseEncapsulationKey,
} from '../../dist/keymgr/pq/mlkem.js';
import { ciphertextHash, confirmationTag, derivePairSecret, verifyConfirmationTag } from '../../dist/keymgr/pq/kdf.js';

const renewMinutes = Number(process.argv[2] ?? 10);
const nodes = Number(process.argv[3] ?? 5000);
const ROUNDS = 7;
const OPS = 200;
const x = Buffer.alloc(32, 0x11).toString('base64');
const y = Buffer.alloc(32, 0x22).toString('base64');
const a = generateKemKeyPair();
const b = generateKemKeyPair();

/** Median, min and max microseconds per call of fn over ROUNDS rounds of OPS calls. */
function measure(fn) {
  for (let i = 0; i < 50; i++) fn(); // warm-up (JIT)
  const per = [];
  for (let r = 0; r < ROUNDS; r++) {
    const t = process.cpuUsage();
    for (let i = 0; i < OPS; i++) fn();
    const d = process.cpuUsage(t);
    per.push((d.user + d.system) / OPS);
  }
  per.sort((p, q) => p - q);
  return { median: per[ROUNDS >> 1], min: per[0], max: per[ROUNDS - 1] };
}

const transcript = (c, id) => ({
  initiator: { name: 'node-00001', x25519: x, kemKeyHash: encapsulationKeyHash(a.encapsulationKey) },
  responder: { name: 'node-00002', x25519: y, kemKeyHash: encapsulationKeyHash(b.encapsulationKey) },
  ciphertextHash: ciphertextHash(c),
  renewalId: id,
});
let id = 1;
const initiator = measure(() => {
  const { ciphertext, sharedSecret } = encapsulate(b.encapsulationKey);
  const s = derivePairSecret(sharedSecret, transcript(ciphertext, id));
  verifyConfirmationTag(s.confirmKey, id, new Uint8Array(32));
  id++;
});
const fixed = encapsulate(b.encapsulationKey);
const responder = measure(() => {
  const ss = decapsulate(fixed.ciphertext, b.decapsulationKey);
  const s = derivePairSecret(ss, transcript(fixed.ciphertext, 1));
  confirmationTag(s.confirmKey, 1);
});
const parse = measure(() => tryParseEncapsulationKey(a.encapsulationKey));
const keygen = measure(() => generateKemKeyPair());

const fmt = (m) => `${m.median.toFixed(0)} µs (min ${m.min.toFixed(0)}, max ${m.max.toFixed(0)})`;
console.log(`CPU per call, ${ROUNDS} rounds x ${OPS} calls, median (min, max):`);
console.log(`  initiator side (encapsulate + KDF + tag check): ${fmt(initiator)}`);
console.log(`  responder side (decapsulate + KDF + tag):       ${fmt(responder)}`);
console.log(`  parse + modulus-check a peer's key:              ${fmt(parse)}`);
console.log(`  key generation:                                  ${fmt(keygen)}`);
const exchangesPerNodeHour = (nodes - 1) * (60 / renewMinutes); // it takes part in each of its pairs' renewals
const cpuSeconds = (exchangesPerNodeHour / 2) * ((initiator.median + responder.median) / 1e6);
console.log(
  `${nodes} nodes, renewal every ${renewMinutes} min: ${exchangesPerNodeHour} exchanges per node per hour ` +
    `(half as initiator) = ${cpuSeconds.toFixed(1)} CPU-seconds per node per hour ` +
    `(${((cpuSeconds / 3600) * 100).toFixed(3)} % of one core); parsing all ${nodes - 1} peer keys once: ` +
    `${(((nodes - 1) * parse.median) / 1e3).toFixed(0)} ms`,
);
