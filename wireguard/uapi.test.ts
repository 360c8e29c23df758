import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PublicKey } from '../keymgr/keys.js';
import type { PeerChange } from '../tunnels/ports/index.js';
import { SealnetError } from '../common/errors.js';
import { encodePeerChanges, encodePresharedKey, parseSetReply, uapiSet } from './uapi.js';

function pub(): PublicKey {
  const x = generateKeyPairSync('x25519').publicKey.export({ format: 'jwk' }).x ?? '';
  return Buffer.from(x, 'base64url').toString('base64') as PublicKey;
}
const hex = (k: PublicKey): string => Buffer.from(k, 'base64').toString('hex');

const K1 = pub();
const K2 = pub();

describe('encodePeerChanges', () => {
  it('writes what `wg set` writes to the socket: endpoint, keepalive, replace, allowed IPs', () => {
    expect(
      encodePeerChanges([
        {
          op: 'set',
          publicKey: K1,
          endpoint: '198.18.0.2:51880',
          allowedIPs: ['100.64.1.0/24', 'fd00::/64'],
          persistentKeepalive: 25,
        },
        { op: 'remove', publicKey: K2 },
      ]),
    ).toBe(
      'set=1\n' +
        `public_key=${hex(K1)}\n` +
        'endpoint=198.18.0.2:51880\n' +
        'persistent_keepalive_interval=25\n' +
        'replace_allowed_ips=true\n' +
        'allowed_ip=100.64.1.0/24\n' +
        'allowed_ip=fd00::/64\n' +
        `public_key=${hex(K2)}\n` +
        'remove=true\n' +
        '\n',
    );
  });

  it('empty allowed IPs replace the list with nothing; keepalive 0 is off; no endpoint leaves it', () => {
    expect(
      encodePeerChanges([{ op: 'set', publicKey: K1, endpoint: '', allowedIPs: [], persistentKeepalive: 0 }]),
    ).toBe(`set=1\npublic_key=${hex(K1)}\npersistent_keepalive_interval=0\nreplace_allowed_ips=true\n\n`);
  });

  it('prints endpoints and prefixes canonically: bracketed IPv6, mixed IPv4-mapped, host bits cleared', () => {
    const text = encodePeerChanges([
      {
        op: 'set',
        publicKey: K1,
        endpoint: '[FD00:0:0::0001]:08080',
        allowedIPs: ['100.64.1.7/24', 'FD00::1/64', '::ffff:198.18.0.1/128'],
        persistentKeepalive: 65535,
      },
      {
        op: 'set',
        publicKey: K2,
        endpoint: '[::ffff:198.18.0.9]:1',
        allowedIPs: ['0.0.0.0/0'],
        persistentKeepalive: 1,
      },
    ]);
    expect(text.split('\n')).toEqual([
      'set=1',
      `public_key=${hex(K1)}`,
      'endpoint=[fd00::1]:8080',
      'persistent_keepalive_interval=65535',
      'replace_allowed_ips=true',
      'allowed_ip=100.64.1.0/24',
      'allowed_ip=fd00::/64',
      'allowed_ip=::ffff:198.18.0.1/128',
      `public_key=${hex(K2)}`,
      'endpoint=[::ffff:198.18.0.9]:1',
      'persistent_keepalive_interval=1',
      'replace_allowed_ips=true',
      'allowed_ip=0.0.0.0/0',
      '',
      '',
    ]);
  });

  it('an empty list is an empty set operation', () => {
    expect(encodePeerChanges([])).toBe('set=1\n\n');
  });

  it.each<[string, PeerChange, RegExp]>([
    [
      'a newline smuggled into an allowed IP',
      { op: 'set', publicKey: K1, endpoint: '', allowedIPs: ['10.0.0.0/8\nremove=true'], persistentKeepalive: 0 },
      /allowed IP .* is not a CIDR/,
    ],
    [
      'a comma smuggled into one allowed IP',
      { op: 'set', publicKey: K1, endpoint: '', allowedIPs: ['10.0.0.0/8,0.0.0.0/0'], persistentKeepalive: 0 },
      /is not a CIDR/,
    ],
    [
      'a newline smuggled into an endpoint',
      { op: 'set', publicKey: K1, endpoint: '1.2.3.4:5\nremove=true', allowedIPs: [], persistentKeepalive: 0 },
      /endpoint .* is not host:port/,
    ],
    [
      'a host name (wireguard-go resolves none)',
      { op: 'set', publicKey: K1, endpoint: 'node-1.example:51880', allowedIPs: [], persistentKeepalive: 0 },
      /not an IP address literal/,
    ],
    [
      'a short-form IPv4 address',
      { op: 'set', publicKey: K1, endpoint: '1.2.3:51880', allowedIPs: [], persistentKeepalive: 0 },
      /not an IP address literal/,
    ],
    [
      'an IPv6 zone',
      { op: 'set', publicKey: K1, endpoint: '[fe80::1%eth0]:51880', allowedIPs: [], persistentKeepalive: 0 },
      /IPv6 zone/,
    ],
    [
      'a port above 65535',
      { op: 'set', publicKey: K1, endpoint: '198.18.0.1:65536', allowedIPs: [], persistentKeepalive: 0 },
      /port above 65535/,
    ],
    [
      'keepalive above 65535',
      { op: 'set', publicKey: K1, endpoint: '', allowedIPs: [], persistentKeepalive: 65536 },
      /persistent keepalive 65536/,
    ],
    [
      'a negative keepalive',
      { op: 'set', publicKey: K1, endpoint: '', allowedIPs: [], persistentKeepalive: -1 },
      /persistent keepalive -1/,
    ],
    ['a key with a newline', { op: 'remove', publicKey: `${K1.slice(0, 43)}\n` as PublicKey }, /malformed public key/],
    [
      'a key of 31 bytes',
      { op: 'remove', publicKey: Buffer.alloc(31, 1).toString('base64') as PublicKey },
      /malformed/,
    ],
  ])('rejects %s, encoding nothing of the batch', (_name, bad, message) => {
    const good: PeerChange = { op: 'remove', publicKey: K2 };
    let out: string | undefined;
    let error: unknown;
    try {
      out = encodePeerChanges([good, bad]);
    } catch (err) {
      error = err;
    }
    expect(out).toBeUndefined();
    expect(error).toBeInstanceOf(SealnetError);
    expect((error as SealnetError).code).toBe('CONFIG_INVALID');
    expect((error as Error).message).toMatch(message);
  });
});

describe('encodePresharedKey', () => {
  it('writes the key as lowercase hex after the peer, in a fresh buffer', () => {
    const psk = Uint8Array.from({ length: 32 }, (_, i) => (i * 37 + 250) & 0xff);
    const buf = encodePresharedKey(K1, psk);
    expect(buf.toString('latin1')).toBe(
      `set=1\npublic_key=${hex(K1)}\npreshared_key=${Buffer.from(psk).toString('hex')}\n\n`,
    );
    expect(buf.byteOffset).toBe(0);
    expect(buf.buffer.byteLength).toBe(buf.length); // not a slice of Node's shared pool
  });

  it('rejects a key of the wrong size and a malformed peer key', () => {
    expect(() => encodePresharedKey(K1, new Uint8Array(31))).toThrow(/31 bytes, expected 32/);
    expect(() => encodePresharedKey('x\nremove=true' as PublicKey, new Uint8Array(32))).toThrow(/malformed peer key/);
  });
});

describe('parseSetReply', () => {
  it.each<[string, ReturnType<typeof parseSetReply>]>([
    ['errno=0\n\n', { errno: 0 }],
    ['errno=-22\n\n', { errno: -22 }],
    ['', 'incomplete'],
    ['err', 'incomplete'],
    ['errno=-2', 'incomplete'],
    ['errno=0\n', 'incomplete'],
    ['errno=0\n\nerrno=0\n\n', 'malformed'],
    ['errno=x\n\n', 'malformed'],
    ['private_key=00\n', 'malformed'],
    ['errno=12345678901\n\n', 'malformed'],
  ])('%j → %j', (text, want) => {
    expect(parseSetReply(text)).toEqual(want);
  });
});

describe('uapiSet against a fake wireguard-go socket', () => {
  let dir = '';
  let server: Server | undefined;
  const received: string[] = [];
  const conns: Socket[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sealnet-uapi-'));
    received.length = 0;
  });
  afterEach(async () => {
    for (const c of conns.splice(0)) c.destroy();
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
    server = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  /** Listens on dir/wg0.sock; `answer` gets the request text and the socket. */
  async function serve(answer: (request: string, sock: Socket) => void): Promise<string> {
    const path = join(dir, 'wg0.sock');
    server = createServer({ allowHalfOpen: true }, (sock) => {
      conns.push(sock);
      let text = '';
      sock.on('data', (b: Buffer) => {
        text += b.toString('latin1');
        if (text.endsWith('\n\n')) {
          received.push(text);
          answer(text, sock);
        }
      });
      sock.on('error', () => undefined);
    });
    await new Promise<void>((r) => server?.listen(path, r));
    return path;
  }

  it('sends the message and resolves on errno=0', async () => {
    const socketPath = await serve((_t, s) => s.end('errno=0\n\n'));
    await expect(uapiSet('wg0', 'set=1\n\n', { what: 'nothing', socketPath })).resolves.toBe('applied');
    expect(received).toEqual(['set=1\n\n']);
  });

  it('errno≠0 is WG_FAILED naming the link, the errno and what was sent', async () => {
    const socketPath = await serve((_t, s) => s.end('errno=-22\n\n'));
    const err = await uapiSet('sealwg0', 'set=1\n\n', { what: '2 peer changes', socketPath }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SealnetError);
    expect((err as SealnetError).code).toBe('WG_FAILED');
    expect((err as Error).message).toMatch(/UAPI set of 2 peer changes on sealwg0 .*errno=-22 \(EINVAL/);
  });

  it('an answer split across reads is put together', async () => {
    const socketPath = await serve((_t, s) => {
      s.write('err');
      setTimeout(() => s.end('no=0\n\n'), 20);
    });
    await expect(uapiSet('wg0', 'set=1\n\n', { what: 'x', socketPath })).resolves.toBe('applied');
  });

  it('an oversized or malformed answer is refused, and its secret-looking text is not echoed at length', async () => {
    const socketPath = await serve((_t, s) => s.end(`private_key=${'ab'.repeat(32)}\n`));
    await expect(uapiSet('wg0', 'set=1\n\n', { what: 'x', socketPath })).rejects.toThrow(/longer than 64 bytes/);
    server?.close();
    await rm(socketPath, { force: true });
    const p2 = await serve((_t, s) => s.end('hello\n\n'));
    await expect(uapiSet('wg0', 'set=1\n\n', { what: 'x', socketPath: p2 })).rejects.toThrow(
      /"hello\\n\\n" is not errno/,
    );
  });

  it('closing without an answer is an error', async () => {
    const socketPath = await serve((_t, s) => s.end());
    await expect(uapiSet('wg0', 'set=1\n\n', { what: 'x', socketPath })).rejects.toThrow(/closed the connection/);
  });

  it('no answer within the timeout is an error', async () => {
    const socketPath = await serve(() => undefined);
    await expect(uapiSet('wg0', 'set=1\n\n', { what: 'x', socketPath, timeoutMs: 100 })).rejects.toThrow(
      /no answer within 100 ms/,
    );
  });

  it('no socket file, or a stale one, is `no-socket` (the caller falls back to wg)', async () => {
    await expect(uapiSet('wg0', 'set=1\n\n', { what: 'x', socketPath: join(dir, 'absent.sock') })).resolves.toBe(
      'no-socket',
    );
    const plain = join(dir, 'plain.sock');
    await writeFile(plain, '');
    await expect(uapiSet('wg0', 'set=1\n\n', { what: 'x', socketPath: plain })).resolves.toBe('no-socket');
  });
});
