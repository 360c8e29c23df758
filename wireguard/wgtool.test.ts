import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PublicKey } from '../keymgr/keys.js';
import type { PeerChange } from '../tunnels/ports/index.js';
import { SealnetError } from '../common/errors.js';
import { interfaceDiff, parseLinkJson } from './driver.js';
import {
  interfaceSetArgs,
  peerClause,
  peerSetBatches,
  presharedKeyArgs,
  redactWgStderr,
  wgShowDump,
} from './wgtool.js';
import { parseDump } from './dump.js';

function pub(): PublicKey {
  const x = generateKeyPairSync('x25519').publicKey.export({ format: 'jwk' }).x ?? '';
  return Buffer.from(x, 'base64url').toString('base64') as PublicKey;
}

const K1 = pub();
const K2 = pub();

describe('peerClause', () => {
  it('builds set and remove clauses, keepalive last, "off" for 0', () => {
    expect(
      peerClause({
        op: 'set',
        publicKey: K1,
        endpoint: '198.18.0.2:51880',
        allowedIPs: ['100.64.1.0/24', 'fd00::/64'],
        persistentKeepalive: 25,
      }),
    ).toEqual([
      'peer',
      K1,
      'endpoint',
      '198.18.0.2:51880',
      'allowed-ips',
      '100.64.1.0/24,fd00::/64',
      'persistent-keepalive',
      '25',
    ]);
    expect(
      peerClause({ op: 'set', publicKey: K1, endpoint: '[fd00::1]:1', allowedIPs: [], persistentKeepalive: 0 }),
    ).toEqual(['peer', K1, 'endpoint', '[fd00::1]:1', 'allowed-ips', '', 'persistent-keepalive', 'off']);
    expect(peerClause({ op: 'remove', publicKey: K2 })).toEqual(['peer', K2, 'remove']);
  });

  it('omits an empty endpoint', () => {
    expect(
      peerClause({ op: 'set', publicKey: K1, endpoint: '', allowedIPs: ['10.0.0.0/8'], persistentKeepalive: 0 }),
    ).toEqual(['peer', K1, 'allowed-ips', '10.0.0.0/8', 'persistent-keepalive', 'off']);
  });

  it.each<[string, PeerChange]>([
    [
      'a comma smuggled into one allowed IP',
      { op: 'set', publicKey: K1, endpoint: '', allowedIPs: ['10.0.0.0/8,0.0.0.0/0'], persistentKeepalive: 0 },
    ],
    [
      'an allowed IP without prefix length',
      { op: 'set', publicKey: K1, endpoint: '', allowedIPs: ['10.0.0.1'], persistentKeepalive: 0 },
    ],
    [
      'an endpoint with spaces',
      { op: 'set', publicKey: K1, endpoint: '1.2.3.4:5 remove', allowedIPs: [], persistentKeepalive: 0 },
    ],
    [
      'an endpoint without port',
      { op: 'set', publicKey: K1, endpoint: '1.2.3.4', allowedIPs: [], persistentKeepalive: 0 },
    ],
    ['a fractional keepalive', { op: 'set', publicKey: K1, endpoint: '', allowedIPs: [], persistentKeepalive: 2.5 }],
    ['a malformed key', { op: 'remove', publicKey: 'remove' as PublicKey }],
  ])('rejects %s', (_name, change) => {
    expect(() => peerClause(change)).toThrow(SealnetError);
  });
});

describe('peerSetBatches', () => {
  const changes: PeerChange[] = Array.from({ length: 50 }, (_, i) =>
    i % 5 === 4
      ? { op: 'remove', publicKey: pub() }
      : {
          op: 'set',
          publicKey: pub(),
          endpoint: `198.18.0.${i}:51880`,
          allowedIPs: [`100.64.${i}.0/24`],
          persistentKeepalive: 25,
        },
  );

  it('puts everything into one call when it fits', () => {
    const b = peerSetBatches('sealwg0', changes);
    expect(b).toHaveLength(1);
    expect(b[0]?.count).toBe(50);
    expect(b[0]?.args.slice(0, 2)).toEqual(['set', 'sealwg0']);
  });

  it('splits by argv size, preserving order, each batch under the limit', () => {
    const limit = 1000;
    const batches = peerSetBatches('sealwg0', changes, { maxBytes: limit });
    expect(batches.length).toBeGreaterThan(1);
    for (const b of batches) {
      expect(b.args.reduce((n, a) => n + Buffer.byteLength(a) + 1, 0)).toBeLessThanOrEqual(limit);
      expect(b.args.slice(0, 2)).toEqual(['set', 'sealwg0']);
    }
    const keysInOrder = batches.flatMap((b) => b.args.filter((_, i) => b.args[i - 1] === 'peer'));
    expect(keysInOrder).toEqual(changes.map((c) => c.publicKey));
    expect(batches.reduce((n, b) => n + b.count, 0)).toBe(50);
  });

  it('gives an oversized clause a call of its own, never an empty call', () => {
    const big: PeerChange = {
      op: 'set',
      publicKey: K1,
      endpoint: '',
      allowedIPs: Array.from({ length: 100 }, (_, i) => `10.${i}.0.0/16`),
      persistentKeepalive: 0,
    };
    const b = peerSetBatches('wg', [{ op: 'remove', publicKey: K2 }, big, { op: 'remove', publicKey: K2 }], {
      maxBytes: 200,
    });
    expect(b.map((x) => x.count)).toEqual([1, 1, 1]);
  });

  it('validates every change before returning anything', () => {
    const bad: PeerChange = { op: 'set', publicKey: K1, endpoint: 'x y', allowedIPs: [], persistentKeepalive: 0 };
    expect(() => peerSetBatches('wg', [...changes, bad])).toThrow(/endpoint/);
  });
});

describe('interfaceSetArgs', () => {
  it('sets only what is given, fwmark in hex or off', () => {
    expect(interfaceSetArgs('sealwg0', {})).toBeUndefined();
    expect(interfaceSetArgs('sealwg0', { fwmark: 0x5188 })).toEqual(['set', 'sealwg0', 'fwmark', '0x5188']);
    expect(
      interfaceSetArgs('sealwg0', { listenPort: 51880, fwmark: 0, privateKeyFile: '/var/lib/sealnet/wg.key' }),
    ).toEqual(['set', 'sealwg0', 'listen-port', '51880', 'fwmark', 'off', 'private-key', '/var/lib/sealnet/wg.key']);
  });
  it('rejects out-of-range values', () => {
    expect(() => interfaceSetArgs('x', { listenPort: 70000 })).toThrow(SealnetError);
    expect(() => interfaceSetArgs('x', { fwmark: -1 })).toThrow(SealnetError);
    expect(() => interfaceSetArgs('x', { privateKeyFile: '' })).toThrow(SealnetError);
  });
});

describe('interfaceDiff', () => {
  const want = { privateKeyFile: '/k', publicKey: K1, listenPort: 51880, fwmark: 0x5188 };
  it('is empty when the device matches: the private key is never re-set', () => {
    expect(interfaceDiff({ publicKey: K1, listenPort: 51880, fwmark: 0x5188 }, want)).toEqual({});
  });
  it('sets the key only when the public key differs or is missing', () => {
    expect(interfaceDiff({ publicKey: K2, listenPort: 51880, fwmark: 0x5188 }, want)).toEqual({ privateKeyFile: '/k' });
    expect(interfaceDiff({ publicKey: undefined, listenPort: 40000, fwmark: 0 }, want)).toEqual({
      privateKeyFile: '/k',
      listenPort: 51880,
      fwmark: 0x5188,
    });
  });
  it('leaves a random port alone when any port is wanted', () => {
    expect(interfaceDiff({ publicKey: K1, listenPort: 40000, fwmark: 0x5188 }, { ...want, listenPort: 0 })).toEqual({});
  });
});

describe('parseLinkJson', () => {
  it('reads ifindex, kind and admin state', () => {
    const tun =
      '[{"ifindex":7,"ifname":"sealwg0","flags":["POINTOPOINT","MULTICAST","NOARP","UP","LOWER_UP"],"linkinfo":{"info_kind":"tun"}}]';
    expect(parseLinkJson('sealwg0', tun)).toEqual({ ifindex: 7, kind: 'tun', up: true });
    const wg =
      '[{"ifindex":3,"ifname":"sealwg0","flags":["POINTOPOINT","NOARP"],"linkinfo":{"info_kind":"wireguard"}}]';
    expect(parseLinkJson('sealwg0', wg)).toEqual({ ifindex: 3, kind: 'wireguard', up: false });
    expect(parseLinkJson('lo', '[{"ifindex":1,"flags":["LOOPBACK","UP"]}]')).toEqual({
      ifindex: 1,
      kind: undefined,
      up: true,
    });
  });
  it('rejects output that is not a link', () => {
    expect(() => parseLinkJson('x', 'Device "x" does not exist.')).toThrow(SealnetError);
    expect(() => parseLinkJson('x', '[]')).toThrow(/no link/);
  });
});

describe('redactWgStderr', () => {
  it('removes quoted key-file content and key-shaped tokens', () => {
    const secret = Buffer.alloc(32, 7).toString('base64');
    expect(redactWgStderr("Key is not the correct length or format: `not-really-a-key'\n")).toBe(
      "Key is not the correct length or format: `(redacted)'\n",
    );
    expect(redactWgStderr(`something ${secret} else`)).toBe('something (redacted) else');
    expect(redactWgStderr('Invalid length key in key file\n')).toBe('Invalid length key in key file\n');
  });
});

describe('wgShowDump', () => {
  // A stand-in `wg` that prints a real-shaped dump holding a private key and a preshared key.
  const keys = (): { priv: string; pub: string } => {
    const { publicKey, privateKey } = generateKeyPairSync('x25519');
    const b64 = (f: string | undefined): string => Buffer.from(f ?? '', 'base64url').toString('base64');
    return { priv: b64(privateKey.export({ format: 'jwk' }).d), pub: b64(publicKey.export({ format: 'jwk' }).x) };
  };
  const self = keys();
  const a = keys();
  const b = keys();
  const psk = randomBytes(32).toString('base64');
  const raw =
    [
      [self.priv, self.pub, 51880, '0x5188'],
      [a.pub, psk, '198.18.0.2:51880', '100.64.1.0/24,198.18.0.2/32', 1700000000, 1234, 5678, 25],
      [b.pub, '(none)', '(none)', '(none)', 0, 0, 0, 'off'],
    ]
      .map((f) => f.join('\t'))
      .join('\n') + '\n';
  let dir: string;
  let fakeWg: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sealnet-wgdump-'));
    fakeWg = join(dir, 'wg');
    await writeFile(join(dir, 'dump.txt'), raw, { mode: 0o600 });
    await writeFile(
      fakeWg,
      `#!${process.execPath}\nconst a = process.argv.slice(2);\n` +
        `if (a.join(' ') !== 'show sealwg0 dump') { process.stderr.write('Unable to access interface: No such device\\n'); process.exit(1); }\n` +
        `process.stdout.write(require('fs').readFileSync(${JSON.stringify(join(dir, 'dump.txt'))}));\n`,
      { mode: 0o700 },
    );
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('returns the dump with the private key and preshared keys withheld, everything else as wg printed it', async () => {
    const out = await wgShowDump(fakeWg, 'sealwg0');
    expect(out).not.toContain(self.priv);
    expect(out).not.toContain(psk);
    expect(out.split('\n')[0]).toBe(`(withheld)\t${self.pub}\t51880\t0x5188`);
    expect(parseDump(out)).toEqual(parseDump(raw));
  });

  it('fails with the error of wg when the device is absent', async () => {
    await expect(wgShowDump(fakeWg, 'sealwg9')).rejects.toThrow(/No such device/);
  });
});

describe('presharedKeyArgs', () => {
  const peer = 'x'.repeat(42) + 'A=';
  test('the key goes through a file: argv names the file and holds nothing key-shaped but the peer', () => {
    const args = presharedKeyArgs('sealwg0', peer as never, '/s/.psk-1');
    expect(args).toEqual(['set', 'sealwg0', 'peer', peer, 'preshared-key', '/s/.psk-1']);
  });
  test('a malformed peer key cannot smuggle in another clause', () => {
    expect(() => presharedKeyArgs('sealwg0', 'abc remove' as never, '/s/.psk-1')).toThrow(/malformed peer key/);
  });
});
