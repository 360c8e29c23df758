/**
 * How the two post-quantum exchange messages travel between peer agents: one TCP connection
 * per exchange, from the initiator's exchange address to the responder's, both inside their
 * node's own pod CIDR. One JSON line each way (ciphertext, then acknowledgement), at most
 * {@link PQ_MESSAGE_MAX_BYTES} bytes, {@link PQ_IO_TIMEOUT_MS} for the whole exchange.
 *
 * Why a forged message from off-tunnel cannot be accepted (the service checks that the
 * connection's remote address is the `from` node's published exchange address, which must lie
 * inside that node's `spec.podCIDRs`):
 * - the address is in the allowed IPs of that node's WireGuard peer, and the route to it is in
 *   sealnet's table via the tunnel link: the SYN-ACK goes through the tunnel, encrypted to the
 *   peer's key, so only the holder of that key can complete the TCP handshake (a spoofer off
 *   the tunnel never sees the reply and cannot guess the 32-bit sequence number);
 * - WireGuard itself drops a decrypted packet whose source is not in the sending peer's allowed
 *   IPs (cryptokey routing), so a packet from that address on the tunnel came from that peer;
 * - plaintext from a remote pod prefix arriving on the underlay is dropped by the BPF ingress
 *   guard before it reaches the stack;
 * - a pod on the peer node has its own address, not the node's exchange address (a pod
 *   spoofing it never gets the replies, which the peer's kernel delivers to its host).
 * The acknowledgement is also authenticated by its HMAC tag (keymgr/pq/kdf.ts).
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import { PQ_MESSAGE_MAX_BYTES } from '../../keymgr/pq/messages.js';

/** Whole-exchange timeout of one connection, both ends. */
export const PQ_IO_TIMEOUT_MS = 5_000;
/** At most this many exchange connections open on the listener at once. */
export const PQ_MAX_CONNECTIONS = 64;
/** Per remote address: a burst of this many connections, then one per {@link PQ_RATE_REFILL_MS}. */
export const PQ_RATE_BURST = 6;
/** Refill period of the per-address rate limit. */
export const PQ_RATE_REFILL_MS = 5_000;

/** One message that arrived on the listener. */
export interface PqInbound {
  readonly remoteAddress: string;
  readonly localAddress: string;
  readonly text: string;
}

/** Options of {@link PqListener}. */
export interface PqListenerOptions {
  readonly address: string;
  readonly port: number;
  /** Called before anything is read: a connection from an address no peer publishes is closed. */
  readonly admit: (remoteAddress: string) => boolean;
  /** Returns the reply line, or undefined to close without one. */
  readonly handler: (m: PqInbound) => Promise<string | undefined>;
  /** A connection refused before its message was handled (counted, never logged per packet). */
  readonly onRefused: (reason: 'unknown-address' | 'rate-limited' | 'too-large' | 'timeout' | 'busy') => void;
  readonly now?: () => number;
}

/** The exchange listener of one agent. */
export class PqListener {
  private server: Server | undefined;
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private open = 0;

  constructor(private readonly o: PqListenerOptions) {}

  /** Listens; rejects when the address cannot be bound (not local yet, port in use). */
  async start(): Promise<void> {
    const server = createServer((s) => this.onConnection(s));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port: this.o.port, host: this.o.address, exclusive: true }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', () => undefined);
    this.server = server;
  }

  /** Stops listening (open connections end by their timeout). */
  close(): void {
    this.server?.close();
    this.server = undefined;
  }

  private onConnection(s: Socket): void {
    const remote = s.remoteAddress ?? '';
    const refuse = (reason: Parameters<PqListenerOptions['onRefused']>[0]): void => {
      this.o.onRefused(reason);
      s.destroy();
    };
    if (!this.o.admit(remote)) return refuse('unknown-address');
    if (!this.take(remote)) return refuse('rate-limited');
    if (this.open >= PQ_MAX_CONNECTIONS) return refuse('busy');
    this.open++;
    s.once('close', () => this.open--);
    readLine(s, PQ_IO_TIMEOUT_MS).then(
      async (text) => {
        const reply = await this.o.handler({ remoteAddress: remote, localAddress: s.localAddress ?? '', text });
        if (reply === undefined) s.destroy();
        else s.end(`${reply}\n`);
      },
      (err: unknown) => refuse((err as Error).message === 'too-large' ? 'too-large' : 'timeout'),
    );
  }

  /** Token bucket per admitted address (only peers' addresses get one: bounded by the peers). */
  private take(addr: string): boolean {
    const now = (this.o.now ?? Date.now)();
    const b = this.buckets.get(addr) ?? { tokens: PQ_RATE_BURST, at: now };
    const refill = Math.floor((now - b.at) / PQ_RATE_REFILL_MS);
    if (refill > 0) {
      b.tokens = Math.min(PQ_RATE_BURST, b.tokens + refill);
      b.at = now;
    }
    this.buckets.set(addr, b);
    if (b.tokens <= 0) return false;
    b.tokens--;
    return true;
  }
}

/**
 * Sends one message and returns the reply line: connects from `localAddress` (our exchange
 * address, so the reply is routed back through the tunnel to it) to the peer's exchange address.
 */
export async function pqRequest(a: {
  readonly address: string;
  readonly port: number;
  readonly localAddress: string;
  readonly text: string;
  readonly timeoutMs?: number;
}): Promise<string> {
  const s = connect({ host: a.address, port: a.port, localAddress: a.localAddress });
  const connected = new Promise<void>((resolve, reject) => {
    s.once('connect', resolve);
    s.once('error', reject);
  });
  const timeoutMs = a.timeoutMs ?? PQ_IO_TIMEOUT_MS;
  const timer = setTimeout(() => s.destroy(new Error(`no reply within ${timeoutMs / 1000} s`)), timeoutMs);
  try {
    await connected;
    s.write(`${a.text}\n`);
    return await readLine(s, timeoutMs);
  } finally {
    clearTimeout(timer);
    s.destroy();
  }
}

/** Reads one line of at most {@link PQ_MESSAGE_MAX_BYTES} bytes; rejects 'too-large' or on timeout/close. */
function readLine(s: Socket, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (err: Error | undefined, text?: string): void => {
      clearTimeout(timer);
      s.off('data', onData);
      s.off('end', onEnd);
      s.off('error', onError);
      s.off('close', onEnd);
      if (err !== undefined) reject(err);
      else resolve(text!);
    };
    const onData = (c: Buffer): void => {
      const nl = c.indexOf(0x0a);
      const part = nl >= 0 ? c.subarray(0, nl) : c;
      size += part.length;
      if (size > PQ_MESSAGE_MAX_BYTES) return done(new Error('too-large'));
      chunks.push(part);
      if (nl >= 0) done(undefined, Buffer.concat(chunks).toString('utf8'));
    };
    const onEnd = (): void => done(new Error('connection closed before a full line'));
    const onError = (err: Error): void => done(err);
    const timer = setTimeout(() => done(new Error('timeout')), timeoutMs);
    s.on('data', onData);
    s.once('end', onEnd);
    s.once('close', onEnd);
    s.once('error', onError);
  });
}
