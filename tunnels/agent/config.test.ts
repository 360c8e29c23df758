import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkStartable, loadConfig, validateConfig, type AgentConfig } from './config.js';
import { SealnetError } from '../../common/errors.js';

function configError(fn: () => unknown): SealnetError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(SealnetError);
    expect((err as SealnetError).code).toBe('CONFIG_INVALID');
    return err as SealnetError;
  }
  throw new Error('expected a CONFIG_INVALID error');
}

async function configRejection(p: Promise<unknown>): Promise<SealnetError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(SealnetError);
    expect((err as SealnetError).code).toBe('CONFIG_INVALID');
    return err as SealnetError;
  }
  throw new Error('expected a CONFIG_INVALID rejection');
}

const DEFAULTS: AgentConfig = {
  nodeName: 'node-a',
  mode: 'wireguard',
  stateDir: '/var/lib/sealnet',
  store: { type: 'kubernetes', kubeconfig: undefined, removeNotReadyTaint: true },
  wireguard: {
    listenPort: 51880,
    implementation: 'auto',
    wireguardGoPath: 'wireguard-go',
    wgPath: 'wg',
    persistentKeepalive: 25,
    restoreLastApplied: true,
  },
  resyncIntervalSeconds: 30,
  debounceMs: 10,
  logLevel: 'info',
  metricsAddress: '127.0.0.1:9588',
  endpointAddress: undefined,
  underlayMtu: undefined,
  steering: {
    enabled: true,
    failClosed: true,
    clusterCidrs: [],
    exemptCidrs: [],
    interfaces: [],
    enforceIngress: true,
    nodeToNode: false,
    nodeCidrs: [],
  },
  status: {
    publish: true,
    heartbeatSeconds: 300,
    minIntervalSeconds: 10,
    tokenFile: undefined,
    listenHost: undefined,
    listenPort: 9589,
  },
  ipsec: { keyBits: 256, replayWindow: 1024 },
  rotation: { graceSeconds: 30, peerTimeoutSeconds: 15, maxKeyAgeSeconds: 2592000, maxConcurrentAuto: 1 },
  postQuantum: { mode: 'off', renewMinutes: 10 },
};

describe('steering config', () => {
  it('canonicalises CIDRs and names a bad entry by index', () => {
    expect(
      validateConfig({ nodeName: 'node-a', steering: { clusterCidrs: ['100.64.1.7/10'] } }).steering.clusterCidrs,
    ).toEqual(['100.64.0.0/10']);
    expect(() =>
      validateConfig({ nodeName: 'node-a', steering: { clusterCidrs: ['100.64.0.0/10', '100.64.0.0'] } }),
    ).toThrow('steering.clusterCidrs[1] must be a CIDR');
    expect(() => validateConfig({ nodeName: 'node-a', steering: { failClosed: 'yes' } })).toThrow(
      'steering.failClosed must be true or false',
    );
    expect(() =>
      validateConfig({ nodeName: 'node-a', steering: { interfaces: ['eth0', 'a very long name!'] } }),
    ).toThrow('steering.interfaces must be a list of interface names');
    expect(validateConfig({ nodeName: 'node-a' }).steering.nodeToNode).toBe(false);
    expect(validateConfig({ nodeName: 'node-a', steering: { nodeToNode: true } }).steering.nodeToNode).toBe(true);
    expect(() => validateConfig({ nodeName: 'node-a', steering: { nodeToNode: 'on' } })).toThrow(
      'steering.nodeToNode must be true or false',
    );
    expect(() => validateConfig({ nodeName: 'node-a', steering: { nodeToNode: true, enabled: false } })).toThrow(
      'steering.nodeToNode needs steering.enabled',
    );
    expect(() => validateConfig({ nodeName: 'node-a', mode: 'ipsec', steering: { nodeToNode: true } })).toThrow(
      'steering.nodeToNode is supported in mode wireguard only',
    );
  });

  it('refuses to start fail-closed without the cluster pod range, and accepts an explicit opt-out', async () => {
    expect(() => checkStartable(validateConfig({ nodeName: 'node-a' }))).toThrow(
      'steering.clusterCidrs is required when steering.failClosed is true',
    );
    expect(() => checkStartable(validateConfig({ nodeName: 'node-a', steering: { failClosed: false } }))).not.toThrow();
    expect(() => checkStartable(validateConfig({ nodeName: 'node-a', steering: { enabled: false } }))).not.toThrow();
    const cfg = await loadConfig(
      ['--node-name', 'node-a', '--cluster-cidr', '100.64.0.0/10', '--cluster-cidr', 'fd00:100::/56'],
      {},
    );
    expect(cfg.steering.clusterCidrs).toEqual(['100.64.0.0/10', 'fd00:100::/56']);
    expect(() => checkStartable(cfg)).not.toThrow();
  });
});

describe('validateConfig', () => {
  it('fills every default from just a node name', () => {
    expect(validateConfig({ nodeName: 'node-a' })).toStrictEqual(DEFAULTS);
  });

  it('accepts every field set explicitly', () => {
    const full = {
      nodeName: 'worker-1.example',
      mode: 'ipsec',
      stateDir: '/run/sealnet',
      store: { type: 'file', dir: '/tmp/nodes' },
      wireguard: {
        listenPort: 51820,
        implementation: 'userspace',
        wireguardGoPath: '/opt/wireguard-go',
        wgPath: '/usr/bin/wg',
        persistentKeepalive: 0,
        restoreLastApplied: false,
      },
      resyncIntervalSeconds: 5,
      debounceMs: 0,
      logLevel: 'debug',
      metricsAddress: '[::1]:9000',
      endpointAddress: 'fd00:198:18::1',
      underlayMtu: 9000,
      steering: {
        enabled: true,
        failClosed: false,
        clusterCidrs: ['100.64.0.0/10'],
        exemptCidrs: ['198.18.0.100/32'],
        interfaces: ['eth0'],
        enforceIngress: false,
        nodeToNode: false,
        nodeCidrs: ['198.18.0.0/15'],
      },
      status: {
        publish: false,
        heartbeatSeconds: 60,
        minIntervalSeconds: 2,
        tokenFile: '/run/sealnet/token',
        listenHost: '198.18.0.1',
        listenPort: 9600,
      },
      rotation: { graceSeconds: 5, peerTimeoutSeconds: 3, maxKeyAgeSeconds: 0, maxConcurrentAuto: 2 },
      ipsec: { keyBits: 128, replayWindow: 64 },
      postQuantum: { mode: 'required', renewMinutes: 2 },
    };
    expect(validateConfig(full)).toStrictEqual({ ...full, store: { type: 'file', dir: '/tmp/nodes' } });
  });

  it('"" disables the metrics server', () => {
    expect(validateConfig({ nodeName: 'node-a', metricsAddress: '' }).metricsAddress).toBe('');
  });

  it('status.listenHost: an IP of either family, canonicalised; a name or junk is refused naming the field', async () => {
    const st = (v: unknown): unknown => validateConfig({ nodeName: 'node-a', status: { listenHost: v } }).status;
    expect(st('198.18.0.7')).toMatchObject({ listenHost: '198.18.0.7', listenPort: 9589 });
    expect(st('FD00:5EA1:0:0::7')).toMatchObject({ listenHost: 'fd00:5ea1::7' });
    expect(() => st('node-a.example')).toThrow(/status\.listenHost must be an IPv4 or IPv6 address/);
    expect(() => st('[fd00::7]')).toThrow(/status\.listenHost/);
    expect(() => validateConfig({ nodeName: 'node-a', status: { listenPort: 0 } })).toThrow(/status\.listenPort/);
    const cfg = await loadConfig(['--node-name', 'node-a', '--status-host', '198.18.0.9'], {});
    expect(cfg.status).toMatchObject({ listenHost: '198.18.0.9', listenPort: 9589, publish: true });
  });

  it('a kubeconfig path is kept', () => {
    expect(
      validateConfig({ nodeName: 'node-a', store: { type: 'kubernetes', kubeconfig: '/etc/kube.conf' } }).store,
    ).toStrictEqual({ type: 'kubernetes', kubeconfig: '/etc/kube.conf', removeNotReadyTaint: true });
  });

  it('store.removeNotReadyTaint defaults to true and may be turned off', () => {
    expect(validateConfig({ nodeName: 'node-a' }).store).toMatchObject({ removeNotReadyTaint: true });
    expect(
      validateConfig({ nodeName: 'node-a', store: { type: 'kubernetes', removeNotReadyTaint: false } }).store,
    ).toMatchObject({ removeNotReadyTaint: false });
  });

  it.each([
    ['nodeName missing', {}, 'invalid agent config: nodeName must be a non-empty string (missing)'],
    ['nodeName empty', { nodeName: '' }, 'nodeName must be a non-empty string, got ""'],
    [
      'nodeName not RFC 1123',
      { nodeName: 'Node_A' },
      'nodeName must be a Kubernetes node name (lowercase RFC 1123), got "Node_A"',
    ],
    ['nodeName a number', { nodeName: 7 }, 'nodeName must be a non-empty string, got 7'],
    ['mode', { mode: 'gre' }, 'mode must be one of "wireguard", "ipsec", got "gre"'],
    ['store not an object', { store: 'file' }, 'store must be an object'],
    ['store.type', { store: { type: 'etcd' } }, 'store.type must be one of "file", "kubernetes", got "etcd"'],
    ['store.dir missing', { store: { type: 'file' } }, 'store.dir must be a non-empty string (missing)'],
    [
      'store.kubeconfig empty',
      { store: { type: 'kubernetes', kubeconfig: '' } },
      'store.kubeconfig must be a non-empty string, got ""',
    ],
    [
      'store field of the other type',
      { store: { type: 'file', dir: '/x', kubeconfig: '/k' } },
      'store.kubeconfig is not a known field (known: type, dir)',
    ],
    [
      'store unknown field',
      { store: { type: 'kubernetes', namespace: 'x' } },
      'store.namespace is not a known field (known: type, kubeconfig, removeNotReadyTaint)',
    ],
    [
      'store.removeNotReadyTaint not a boolean',
      { store: { type: 'kubernetes', removeNotReadyTaint: 'yes' } },
      'store.removeNotReadyTaint must be',
    ],
    ['wireguard not an object', { wireguard: [] }, 'wireguard must be an object'],
    [
      'wireguard.listenPort 0',
      { wireguard: { listenPort: 0 } },
      'wireguard.listenPort must be an integer from 1 to 65535, got 0',
    ],
    [
      'wireguard.listenPort 65536',
      { wireguard: { listenPort: 65536 } },
      'wireguard.listenPort must be an integer from 1 to 65535, got 65536',
    ],
    [
      'wireguard.listenPort as string',
      { wireguard: { listenPort: '51880' } },
      'wireguard.listenPort must be an integer from 1 to 65535, got "51880"',
    ],
    [
      'wireguard.listenPort fractional',
      { wireguard: { listenPort: 518.5 } },
      'wireguard.listenPort must be an integer from 1 to 65535, got 518.5',
    ],
    [
      'wireguard.implementation',
      { wireguard: { implementation: 'ebpf' } },
      'wireguard.implementation must be one of "auto", "kernel", "userspace", got "ebpf"',
    ],
    ['wireguard.wgPath empty', { wireguard: { wgPath: '' } }, 'wireguard.wgPath must be a non-empty string, got ""'],
    [
      'wireguard.wireguardGoPath not a string',
      { wireguard: { wireguardGoPath: true } },
      'wireguard.wireguardGoPath must be a non-empty string, got true',
    ],
    [
      'wireguard.persistentKeepalive negative',
      { wireguard: { persistentKeepalive: -1 } },
      'wireguard.persistentKeepalive must be an integer from 0 to 65535, got -1',
    ],
    [
      'status unknown field',
      { status: { heartbeat: 5 } },
      'status.heartbeat is not a known field (known: publish, heartbeatSeconds, minIntervalSeconds, tokenFile, listenHost, listenPort)',
    ],
    [
      'status interval above the heartbeat',
      { status: { heartbeatSeconds: 5, minIntervalSeconds: 10 } },
      'status.minIntervalSeconds must not exceed status.heartbeatSeconds (5), got 10',
    ],
    [
      'status heartbeat too short',
      { status: { heartbeatSeconds: 1 } },
      'status.heartbeatSeconds must be an integer from 2 to 86400, got 1',
    ],
    [
      'wireguard unknown field',
      { wireguard: { listenport: 1 } },
      'wireguard.listenport is not a known field (known: listenPort, implementation, wireguardGoPath, wgPath, persistentKeepalive, restoreLastApplied)',
    ],
    [
      'resyncIntervalSeconds 0',
      { resyncIntervalSeconds: 0 },
      'resyncIntervalSeconds must be an integer from 1 to 86400, got 0',
    ],
    ['debounceMs too large', { debounceMs: 60001 }, 'debounceMs must be an integer from 0 to 60000, got 60001'],
    ['logLevel', { logLevel: 'trace' }, 'logLevel must be one of "debug", "info", "warn", "error", got "trace"'],
    [
      'metricsAddress without port',
      { metricsAddress: '127.0.0.1' },
      'metricsAddress must be "host:port" or "" to disable, got "127.0.0.1"',
    ],
    ['metricsAddress hostname', { metricsAddress: 'metrics.example:9588' }, 'metricsAddress must be "host:port"'],
    [
      'endpointAddress hostname',
      { endpointAddress: 'node-a.example' },
      'endpointAddress must be an IPv4 or IPv6 address, got "node-a.example"',
    ],
    ['endpointAddress empty', { endpointAddress: '' }, 'endpointAddress must be a non-empty string, got ""'],
    ['underlayMtu too small', { underlayMtu: 1000 }, 'underlayMtu must be an integer from 1280 to 65535, got 1000'],
    ['underlayMtu as string', { underlayMtu: '1500' }, 'underlayMtu must be an integer from 1280 to 65535, got "1500"'],
    [
      'unknown top-level field (a typo)',
      { nodename: 'node-a' },
      'invalid agent config: nodename is not a known field (known: nodeName, mode, stateDir, store, wireguard, resyncIntervalSeconds, debounceMs, logLevel, metricsAddress, endpointAddress, underlayMtu, steering, status, ipsec, rotation, postQuantum)',
    ],
    ['stateDir empty', { stateDir: '' }, 'stateDir must be a non-empty string, got ""'],
  ] as [string, Record<string, unknown>, string][])('%s is named in the error', (_label, over, message) => {
    const input = 'nodeName' in over || Object.keys(over).length === 0 ? over : { nodeName: 'node-a', ...over };
    const err = configError(() => validateConfig(input));
    expect(err.message).toContain(message);
  });

  it.each([null, [], 'node-a', 3])('a root that is not an object (%j) is rejected', (input) => {
    expect(configError(() => validateConfig(input)).message).toBe('invalid agent config: (root) must be an object');
  });
});

describe('loadConfig', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sealnet-config-test-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const file = async (name: string, content: string): Promise<string> => {
    const path = join(dir, name);
    await writeFile(path, content);
    return path;
  };

  it('reads the file', async () => {
    const path = await file(
      'a.json',
      JSON.stringify({
        nodeName: 'node-a',
        store: { type: 'file', dir: '/nodes' },
        wireguard: { listenPort: 51999, wgPath: '/opt/wg' },
      }),
    );
    const cfg = await loadConfig(['--config', path], {});
    expect(cfg.nodeName).toBe('node-a');
    expect(cfg.store).toStrictEqual({ type: 'file', dir: '/nodes' });
    expect(cfg.wireguard.listenPort).toBe(51999);
    expect(cfg.wireguard.wgPath).toBe('/opt/wg');
  });

  it('flags override the file, and a nested override keeps the other nested fields', async () => {
    const path = await file(
      'b.json',
      JSON.stringify({
        nodeName: 'node-a',
        logLevel: 'warn',
        store: { type: 'file', dir: '/nodes' },
        wireguard: { listenPort: 51999, wgPath: '/opt/wg' },
      }),
    );
    const cfg = await loadConfig(
      [
        '--config',
        path,
        '--node-name=node-b',
        '--listen-port',
        '51820',
        '--log-level',
        'debug',
        '--store-dir',
        '/other',
      ],
      { NODE_NAME: 'node-env' },
    );
    expect(cfg.nodeName).toBe('node-b');
    expect(cfg.logLevel).toBe('debug');
    expect(cfg.wireguard).toStrictEqual({ ...DEFAULTS.wireguard, listenPort: 51820, wgPath: '/opt/wg' });
    expect(cfg.store).toStrictEqual({ type: 'file', dir: '/other' });
  });

  it('flags override the file even when they come before --config', async () => {
    const path = await file('c.json', JSON.stringify({ nodeName: 'node-a', mode: 'ipsec' }));
    const cfg = await loadConfig(['--mode', 'wireguard', '--config', path], {});
    expect(cfg.mode).toBe('wireguard');
  });

  it('NODE_NAME from the environment when neither file nor flag names the node', async () => {
    expect((await loadConfig([], { NODE_NAME: 'node-env' })).nodeName).toBe('node-env');
    expect((await loadConfig(['--store', 'file', '--store-dir', '/n'], { NODE_NAME: 'node-env' })).store).toStrictEqual(
      { type: 'file', dir: '/n' },
    );
  });

  it('the file and the flag win over NODE_NAME; an empty NODE_NAME is ignored', async () => {
    const path = await file('d.json', JSON.stringify({ nodeName: 'node-file' }));
    expect((await loadConfig(['--config', path], { NODE_NAME: 'node-env' })).nodeName).toBe('node-file');
    expect((await loadConfig(['--node-name', 'node-flag'], { NODE_NAME: 'node-env' })).nodeName).toBe('node-flag');
    const err = await configRejection(loadConfig([], { NODE_NAME: '' }));
    expect(err.message).toContain('nodeName must be a non-empty string (missing)');
  });

  it('a file that is not JSON names the file', async () => {
    const path = await file('bad.json', '{ "nodeName": "node-a", }');
    const err = await configRejection(loadConfig(['--config', path], {}));
    expect(err.message).toMatch(
      new RegExp(`^config file ${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is not valid JSON: `),
    );
  });

  it('valid JSON that is not an object says so, not "not valid JSON"', async () => {
    const path = await file('array.json', '["node-a"]');
    const err = await configRejection(loadConfig(['--config', path], {}));
    expect(err.message).toBe('invalid agent config: (root) must be an object');
  });

  it('a missing file names the file and keeps the cause', async () => {
    const path = join(dir, 'missing.json');
    const err = await configRejection(loadConfig(['--config', path], {}));
    expect(err.message).toBe(`cannot read config file ${path}`);
    expect((err.cause as NodeJS.ErrnoException).code).toBe('ENOENT');
  });

  it('an unknown field in the file is rejected', async () => {
    const path = await file('typo.json', JSON.stringify({ nodeName: 'node-a', listenPort: 51820 }));
    const err = await configRejection(loadConfig(['--config', path], {}));
    expect(err.message).toContain('listenPort is not a known field');
  });

  it.each([
    [['--nodename', 'x'], 'unknown flag "--nodename"'],
    [['--node-name'], 'flag --node-name needs a value'],
    [['--config'], 'flag --config needs a value'],
    [['--node-name', 'node-a', '--listen-port', 'abc'], '--listen-port must be a port number, got "abc"'],
    [
      ['--node-name', 'node-a', '--listen-port', '70000'],
      'wireguard.listenPort must be an integer from 1 to 65535, got 70000',
    ],
    [['--node-name', 'node-a', '--store', 'etcd'], 'store.type must be one of "file", "kubernetes", got "etcd"'],
  ])('bad flags %j', async (argv, message) => {
    const err = await configRejection(loadConfig(argv, {}));
    expect(err.message).toContain(message);
  });

  it('the usage text comes with an unknown flag', async () => {
    const err = await configRejection(loadConfig(['--verbose'], {}));
    expect(err.message).toContain('usage: sealnet-agent');
  });
});

describe('postQuantum config', () => {
  it('defaults to off, renewal every 10 minutes', () => {
    expect(validateConfig({ nodeName: 'node-a' }).postQuantum).toStrictEqual({ mode: 'off', renewMinutes: 10 });
  });

  it.each(['off', 'preferred', 'required'])('accepts mode %s', (mode) => {
    expect(validateConfig({ nodeName: 'node-a', postQuantum: { mode } }).postQuantum.mode).toBe(mode);
  });

  it.each([
    [{ mode: 'on' }, 'postQuantum.mode must be one of "off", "preferred", "required", got "on"'],
    [{ mode: true }, 'postQuantum.mode must be one of "off", "preferred", "required", got true'],
    [{ renewMinutes: 0 }, 'postQuantum.renewMinutes must be an integer from 1 to 1440, got 0'],
    [{ renewMinutes: 1441 }, 'postQuantum.renewMinutes must be an integer from 1 to 1440, got 1441'],
    [{ renewMinutes: 2.5 }, 'postQuantum.renewMinutes must be an integer from 1 to 1440, got 2.5'],
    [{ renewMinutes: '10' }, 'postQuantum.renewMinutes must be an integer from 1 to 1440, got "10"'],
    [{ renewSeconds: 60 }, 'postQuantum.renewSeconds is not a known field (known: mode, renewMinutes)'],
    ['required', 'postQuantum must be an object'],
  ])('refuses %p with a message naming the field', (postQuantum, message) => {
    expect(configError(() => validateConfig({ nodeName: 'node-a', postQuantum })).message).toBe(
      `invalid agent config: ${message}`,
    );
  });

  it('starts with preferred in mode wireguard; refuses any mode but off in mode ipsec', () => {
    const base = { nodeName: 'node-a', steering: { failClosed: false } };
    expect(() => checkStartable(validateConfig({ ...base, postQuantum: { mode: 'preferred' } }))).not.toThrow();
    for (const mode of ['preferred', 'required']) {
      expect(
        configError(() => checkStartable(validateConfig({ ...base, mode: 'ipsec', postQuantum: { mode } }))).message,
      ).toMatch(/postQuantum\.mode ".*" is available in mode wireguard only/);
    }
  });

  it('refuses required without the fail-closed guard (a dropped pair would leave in plaintext)', () => {
    const cidr = { clusterCidrs: ['100.64.0.0/10'] };
    const ok = { nodeName: 'node-a', steering: cidr, postQuantum: { mode: 'required' } };
    expect(() => checkStartable(validateConfig(ok))).not.toThrow();
    for (const steering of [
      { ...cidr, failClosed: false },
      { ...cidr, enabled: false },
    ]) {
      expect(configError(() => checkStartable(validateConfig({ ...ok, steering }))).message).toMatch(
        /postQuantum\.mode "required" needs steering\.enabled and steering\.failClosed/,
      );
    }
  });
});
