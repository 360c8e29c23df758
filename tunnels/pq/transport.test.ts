/** The exchange transport on loopback: one line each way, unknown senders, size, rate and time limits. */
import { connect } from 'node:net';
import { PQ_MESSAGE_MAX_BYTES } from '../../keymgr/pq/messages.js';
import { PQ_RATE_BURST, PqListener, pqRequest } from './transport.js';

const HOST = '127.0.0.1';
let port = 0;
let listener: PqListener;
const refused: string[] = [];
let admitted = true;

beforeEach(async () => {
  refused.length = 0;
  admitted = true;
  port = 20000 + Math.floor(Math.random() * 20000);
  listener = new PqListener({
    address: HOST,
    port,
    admit: () => admitted,
    handler: async (m) => (m.text === 'silent' ? undefined : `echo ${m.text.length} ${m.remoteAddress}`),
    onRefused: (r) => refused.push(r),
  });
  await listener.start();
});
afterEach(() => listener.close());

test('one line out, one line back, with the remote address the kernel reports', async () => {
  await expect(pqRequest({ address: HOST, port, localAddress: HOST, text: 'hello' })).resolves.toBe('echo 5 127.0.0.1');
});

test('a sender no peer publishes is closed before anything is read', async () => {
  admitted = false;
  await expect(pqRequest({ address: HOST, port, localAddress: HOST, text: 'x' })).rejects.toThrow();
  expect(refused).toEqual(['unknown-address']);
});

test('a line over the message bound is refused', async () => {
  await expect(
    pqRequest({ address: HOST, port, localAddress: HOST, text: 'x'.repeat(PQ_MESSAGE_MAX_BYTES + 1) }),
  ).rejects.toThrow();
  expect(refused).toEqual(['too-large']);
});

test('a burst above the per-address limit is refused', async () => {
  for (let i = 0; i < PQ_RATE_BURST; i++) await pqRequest({ address: HOST, port, localAddress: HOST, text: 'a' });
  await expect(pqRequest({ address: HOST, port, localAddress: HOST, text: 'a' })).rejects.toThrow();
  expect(refused).toEqual(['rate-limited']);
});

test('a message the handler refuses closes the connection; the client reports it', async () => {
  await expect(
    pqRequest({ address: HOST, port, localAddress: HOST, text: 'silent', timeoutMs: 300 }),
  ).rejects.toThrow();
});

test('a sender that never finishes its line is cut off by the server', async () => {
  const s = connect({ host: HOST, port });
  s.write('no newline');
  const closed = await new Promise<boolean>((resolve) => {
    s.on('close', () => resolve(true));
    s.on('error', () => undefined);
    setTimeout(() => resolve(false), 7_000);
  });
  expect(closed).toBe(true);
  expect(refused).toEqual(['timeout']);
}, 10_000);
