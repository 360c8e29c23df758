import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { SealnetError } from '../common/errors.js';
import { parseDump, redactDump } from './dump.js';

/** A fresh X25519 keypair in wg's base64 format (generated per run: no fixed secrets in the repo). */
function keypair(): { priv: string; pub: string } {
  const { publicKey, privateKey } = generateKeyPairSync('x25519');
  const b64 = (jwkField: string | undefined): string => Buffer.from(jwkField ?? '', 'base64url').toString('base64');
  return { priv: b64(privateKey.export({ format: 'jwk' }).d), pub: b64(publicKey.export({ format: 'jwk' }).x) };
}
const psk = (): string => randomBytes(32).toString('base64');

const self = keypair();
const peerA = keypair();
const peerB = keypair();
const peerC = keypair();
const PSK = psk();

const line = (...fields: (string | number)[]): string => fields.join('\t');

function dump(lines: string[]): string {
  return lines.map((l) => `${l}\n`).join('');
}

/** Runs `fn`, expects a SealnetError, returns its message. */
function errorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(SealnetError);
    expect((err as SealnetError).code).toBe('WG_FAILED');
    return (err as Error).message;
  }
  throw new Error('expected an error');
}

const good = dump([
  line(self.priv, self.pub, 51880, '0x5188'),
  line(peerA.pub, '(none)', '198.18.0.2:51880', '100.64.1.0/24,198.18.0.2/32', 1700000000, 1234, 5678, 25),
  line(peerB.pub, PSK, '[fd00::0:2]:51880', 'fd00:0:0:2::/64,100.64.2.0/24,100.64.0.0/24', 0, 0, 0, 'off'),
  line(peerC.pub, '(none)', '(none)', '(none)', 0, 0, 0, 'off'),
]);

describe('parseDump', () => {
  it('parses interface and peers, canonicalising and sorting allowed IPs', () => {
    const r = parseDump(good);
    expect(r.iface).toEqual({ publicKey: self.pub, listenPort: 51880, fwmark: 0x5188 });
    expect(r.peers).toEqual([
      {
        publicKey: peerA.pub,
        endpoint: '198.18.0.2:51880',
        allowedIPs: ['100.64.1.0/24', '198.18.0.2/32'],
        latestHandshake: 1700000000,
        rxBytes: 1234,
        txBytes: 5678,
        persistentKeepalive: 25,
      },
      {
        publicKey: peerB.pub,
        endpoint: '[fd00::2]:51880',
        allowedIPs: ['100.64.0.0/24', '100.64.2.0/24', 'fd00:0:0:2::/64'],
        latestHandshake: 0,
        rxBytes: 0,
        txBytes: 0,
        persistentKeepalive: 0,
      },
      {
        publicKey: peerC.pub,
        endpoint: undefined,
        allowedIPs: [],
        latestHandshake: 0,
        rxBytes: 0,
        txBytes: 0,
        persistentKeepalive: 0,
      },
    ]);
  });

  it('never keeps the private key or a preshared key in its result', () => {
    const text = JSON.stringify(parseDump(good));
    expect(text).not.toContain(self.priv);
    expect(text).not.toContain(PSK);
  });

  it('accepts a device without keys (fresh wireguard-go) and without peers', () => {
    expect(parseDump(line('(none)', '(none)', 40123, 'off') + '\n')).toEqual({
      iface: { publicKey: undefined, listenPort: 40123, fwmark: 0 },
      peers: [],
    });
    // Without the trailing newline too.
    expect(parseDump(line('(none)', '(none)', 0, 'off')).peers).toEqual([]);
  });

  it('keeps an IPv6 scope id and canonicalises the address of endpoints', () => {
    const r = parseDump(
      dump([
        line(self.priv, self.pub, 1, 'off'),
        line(peerA.pub, '(none)', '[FE80::0001%eth0]:7', '(none)', 0, 0, 0, 'off'),
      ]),
    );
    expect(r.peers[0]?.endpoint).toBe('[fe80::1%eth0]:7');
  });

  it('clears host bits and drops duplicates in allowed IPs', () => {
    const r = parseDump(
      dump([
        line(self.priv, self.pub, 1, 'off'),
        line(peerA.pub, '(none)', '(none)', '10.1.2.3/8,10.0.0.0/8', 0, 0, 0, 'off'),
      ]),
    );
    expect(r.peers[0]?.allowedIPs).toEqual(['10.0.0.0/8']);
  });

  it('rounds u64 counters beyond 2^53 instead of failing', () => {
    const r = parseDump(
      dump([
        line(self.priv, self.pub, 1, 'off'),
        line(peerA.pub, '(none)', '(none)', '(none)', 0, '18446744073709551615', 0, 'off'),
      ]),
    );
    expect(r.peers[0]?.rxBytes).toBe(2 ** 64);
  });

  const iface = line(self.priv, self.pub, 51880, 'off');
  const peer = (over: Partial<Record<number, string>>): string => {
    const f = [peerA.pub, '(none)', '198.18.0.2:1', '100.64.0.0/24', '0', '0', '0', 'off'];
    for (const [i, v] of Object.entries(over)) f[Number(i)] = v ?? '';
    return f.join('\t');
  };

  it.each([
    ['empty text', '', /line 1, field interface: empty dump/],
    [
      'too few interface fields',
      line(self.priv, self.pub, 1),
      /line 1, field interface: want 4 tab-separated fields, got 3/,
    ],
    [
      'too many interface fields (wg show all dump)',
      line('sealwg0', self.priv, self.pub, 1, 'off'),
      /line 1, field interface: want 4.*got 5/,
    ],
    [
      'malformed private key',
      line(`${self.priv.slice(0, 20)}`, self.pub, 1, 'off'),
      /line 1, field private-key: .*value withheld/,
    ],
    [
      'bad interface public key',
      line(self.priv, 'AAAA', 1, 'off'),
      /line 1, field public-key: public key is 4 characters/,
    ],
    [
      'low-order interface public key',
      line(self.priv, Buffer.alloc(32).toString('base64'), 1, 'off'),
      /line 1, field public-key: .*low-order/,
    ],
    ['port out of range', line(self.priv, self.pub, 65536, 'off'), /line 1, field listen-port/],
    ['port with sign', line(self.priv, self.pub, '+1', 'off'), /line 1, field listen-port/],
    ['decimal fwmark', line(self.priv, self.pub, 1, '20872'), /line 1, field fwmark/],
    ['0x0 fwmark', line(self.priv, self.pub, 1, '0x0'), /line 1, field fwmark: zero/],
    ['fwmark beyond 32 bits', line(self.priv, self.pub, 1, '0x100000000'), /line 1, field fwmark/],
  ])('rejects line 1 with %s without echoing it', (_name, text, pattern) => {
    const msg = errorOf(() => parseDump(text));
    expect(msg).toMatch(pattern);
    expect(msg).not.toContain(self.priv);
    expect(msg).not.toContain(self.priv.slice(0, 20));
  });

  it.each([
    [
      'too few fields',
      peer({}).split('\t').slice(0, 7).join('\t'),
      /line 2, field peer: want 8 tab-separated fields, got 7/,
    ],
    ['bad public key', peer({ 0: 'x' }), /line 2, field public-key/],
    ['malformed preshared key', peer({ 1: `${PSK.slice(0, 30)}` }), /line 2, field preshared-key: .*value withheld/],
    ['endpoint without port', peer({ 2: '198.18.0.2' }), /line 2, field endpoint/],
    ['endpoint v6 without brackets', peer({ 2: 'fd00::1:51820' }), /line 2, field endpoint/],
    ['endpoint port 0', peer({ 2: '198.18.0.2:0' }), /line 2, field endpoint: port 0/],
    ['endpoint bad IPv4', peer({ 2: '198.18.0.256:1' }), /line 2, field endpoint: not an IPv4/],
    ['hostname endpoint', peer({ 2: 'node-a:1' }), /line 2, field endpoint/],
    ['allowed IP without length', peer({ 3: '100.64.0.1' }), /line 2, field allowed-ips: not a CIDR: "100.64.0.1"/],
    ['allowed IPs with empty entry', peer({ 3: '100.64.0.0/24,' }), /line 2, field allowed-ips: not a CIDR: ""/],
    ['allowed IP prefix too long', peer({ 3: '100.64.0.0/33' }), /line 2, field allowed-ips/],
    ['negative handshake', peer({ 4: '-1' }), /line 2, field latest-handshake/],
    ['leading zero counter', peer({ 5: '01' }), /line 2, field transfer-rx/],
    ['counter beyond u64', peer({ 6: '18446744073709551616' }), /line 2, field transfer-tx/],
    ['keepalive 0 (printed as off)', peer({ 7: '0' }), /line 2, field persistent-keepalive/],
    ['keepalive too big', peer({ 7: '65536' }), /line 2, field persistent-keepalive/],
  ])('rejects a peer line with %s, naming line and field', (_name, peerLine, pattern) => {
    const msg = errorOf(() => parseDump(dump([iface, peerLine])));
    expect(msg).toMatch(pattern);
    expect(msg).not.toContain(self.priv);
    expect(msg).not.toContain(PSK.slice(0, 30));
  });

  it('rejects a peer listed twice and counts lines from 1', () => {
    const msg = errorOf(() => parseDump(dump([iface, peer({}), peer({ 3: '100.64.9.0/24' })])));
    expect(msg).toMatch(/line 3, field public-key: peer .* listed twice/);
  });

  it('rejects blank lines in the middle and CRLF line ends', () => {
    expect(errorOf(() => parseDump(dump([iface, '', peer({})])))).toMatch(/line 2, field peer: want 8/);
    expect(errorOf(() => parseDump(`${iface}\r\n`))).toMatch(/line 1, field fwmark/);
  });
});

describe('redactDump', () => {
  it('removes the private key and preshared keys, keeps everything else', () => {
    const red = redactDump(good);
    expect(red).not.toContain(self.priv);
    expect(red).not.toContain(PSK);
    expect(red.split('\n')[0]).toBe(line('(redacted)', self.pub, 51880, '0x5188'));
    expect(red).toContain(peerA.pub);
    expect(red).toContain(line(peerB.pub, '(redacted)', '[fd00::0:2]:51880'));
    expect(red).toContain(line(peerC.pub, '(none)', '(none)'));
    expect(red.split('\n')).toHaveLength(good.split('\n').length);
  });

  it('handles `wg show all dump` layout', () => {
    const all = dump([
      line('sealwg0', self.priv, self.pub, 51880, 'off'),
      line('sealwg0', peerA.pub, PSK, '198.18.0.2:1', '(none)', 0, 0, 0, 'off'),
    ]);
    const red = redactDump(all);
    expect(red).not.toContain(self.priv);
    expect(red).not.toContain(PSK);
    expect(red).toContain(self.pub);
    expect(red).toContain(peerA.pub);
  });

  it('withholds a malformed first line and key-shaped tokens in malformed lines', () => {
    const red = redactDump(dump([`${self.priv} ${self.pub}`, `garbage ${PSK} more`]));
    expect(red).toBe('(redacted)\ngarbage (redacted) more\n');
  });

  it('redacts a key-shaped value outside the public-key column of a well-formed line', () => {
    const shifted = redactDump(line(self.priv, self.pub, self.priv, 'off'));
    expect(shifted).toBe(line('(redacted)', self.pub, '(redacted)', 'off'));
  });
});
