/**
 * Agent configuration: a JSON file plus command-line overrides, validated strictly. Every
 * error names the field and what is allowed; unknown fields are errors (typos must not be
 * silently ignored by a security component).
 */
import { readFile } from 'node:fs/promises';
import { parseFlags } from '../../common/args.js';
import { DEFAULT_STATE_DIR, WG_DEFAULT_KEEPALIVE, WG_DEFAULT_PORT } from '../../common/constants.js';
import { SealnetError } from '../../common/errors.js';
import { canonicalCidr, formatIP, parseCidr, parseIP } from '../../common/ip.js';
import { nonUnicastClass } from '../../common/addrclass.js';
import { RENEW_MINUTES_DEFAULT, RENEW_MINUTES_MAX, RENEW_MINUTES_MIN } from '../../keymgr/pq/exchange.js';

export type {
  StoreConfig,
  AgentConfig,
  RotationConfig,
  IpsecConfig,
  StatusConfig,
  SteeringConfig,
  PostQuantumConfig,
} from '../ports/config.js';
import type {
  StoreConfig,
  AgentConfig,
  RotationConfig,
  IpsecConfig,
  StatusConfig,
  SteeringConfig,
  PostQuantumConfig,
} from '../ports/config.js';

type Json = Record<string, unknown>;

function fieldError(field: string, msg: string): SealnetError {
  return new SealnetError('CONFIG_INVALID', `invalid agent config: ${field} ${msg}`);
}

function checkKeys(obj: Json, allowed: readonly string[], where: string): void {
  for (const k of Object.keys(obj)) {
    if (!allowed.includes(k))
      throw fieldError(where === '' ? k : `${where}.${k}`, `is not a known field (known: ${allowed.join(', ')})`);
  }
}

function str(obj: Json, key: string, where: string, def?: string): string {
  const v = obj[key];
  if (v === undefined && def !== undefined) return def;
  if (typeof v !== 'string' || v === '')
    throw fieldError(
      `${where}${key}`,
      `must be a non-empty string${v === undefined ? ' (missing)' : `, got ${JSON.stringify(v)}`}`,
    );
  return v;
}

function int(obj: Json, key: string, where: string, def: number, min: number, max: number): number {
  const v = obj[key] ?? def;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
    throw fieldError(`${where}${key}`, `must be an integer from ${min} to ${max}, got ${JSON.stringify(v)}`);
  return v;
}

function oneOf<T extends string>(obj: Json, key: string, where: string, allowed: readonly T[], def: T): T {
  const v = obj[key] ?? def;
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v))
    throw fieldError(
      `${where}${key}`,
      `must be one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}, got ${JSON.stringify(v)}`,
    );
  return v as T;
}

function obj(v: unknown, field: string): Json {
  if (v === undefined) return {};
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw fieldError(field, 'must be an object');
  return v as Json;
}

const NODE_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

/** Validates a parsed config object (after overrides were merged in). */
export function validateConfig(input: unknown): AgentConfig {
  const root = obj(input, '(root)');
  checkKeys(
    root,
    [
      'nodeName',
      'mode',
      'stateDir',
      'store',
      'wireguard',
      'resyncIntervalSeconds',
      'debounceMs',
      'logLevel',
      'metricsAddress',
      'endpointAddress',
      'underlayMtu',
      'steering',
      'status',
      'ipsec',
      'rotation',
      'postQuantum',
    ],
    '',
  );
  const nodeName = str(root, 'nodeName', '');
  if (!NODE_NAME.test(nodeName))
    throw fieldError(
      'nodeName',
      `must be a Kubernetes node name (lowercase RFC 1123), got ${JSON.stringify(nodeName)}`,
    );
  const mode = oneOf(root, 'mode', '', ['wireguard', 'ipsec'] as const, 'wireguard');

  const storeIn = obj(root.store, 'store');
  const storeType = oneOf(storeIn, 'type', 'store.', ['file', 'kubernetes'] as const, 'kubernetes');
  let store: StoreConfig;
  if (storeType === 'file') {
    checkKeys(storeIn, ['type', 'dir'], 'store');
    store = { type: 'file', dir: str(storeIn, 'dir', 'store.') };
  } else {
    checkKeys(storeIn, ['type', 'kubeconfig', 'removeNotReadyTaint'], 'store');
    store = {
      type: 'kubernetes',
      kubeconfig: storeIn.kubeconfig === undefined ? undefined : str(storeIn, 'kubeconfig', 'store.'),
      removeNotReadyTaint: bool(storeIn, 'removeNotReadyTaint', 'store.', true),
    };
  }

  const wgIn = obj(root.wireguard, 'wireguard');
  checkKeys(
    wgIn,
    ['listenPort', 'implementation', 'wireguardGoPath', 'wgPath', 'persistentKeepalive', 'restoreLastApplied'],
    'wireguard',
  );
  const wireguard = {
    listenPort: int(wgIn, 'listenPort', 'wireguard.', WG_DEFAULT_PORT, 1, 65535),
    implementation: oneOf(wgIn, 'implementation', 'wireguard.', ['auto', 'kernel', 'userspace'] as const, 'auto'),
    wireguardGoPath: str(wgIn, 'wireguardGoPath', 'wireguard.', 'wireguard-go'),
    wgPath: str(wgIn, 'wgPath', 'wireguard.', 'wg'),
    persistentKeepalive: int(wgIn, 'persistentKeepalive', 'wireguard.', WG_DEFAULT_KEEPALIVE, 0, 65535),
    restoreLastApplied: bool(wgIn, 'restoreLastApplied', 'wireguard.', true),
  };

  const endpointAddress = root.endpointAddress === undefined ? undefined : str(root, 'endpointAddress', '');
  if (endpointAddress !== undefined && parseIP(endpointAddress) === undefined)
    throw fieldError('endpointAddress', `must be an IPv4 or IPv6 address, got ${JSON.stringify(endpointAddress)}`);
  const metricsAddress = root.metricsAddress === '' ? '' : str(root, 'metricsAddress', '', '127.0.0.1:9588');
  if (metricsAddress !== '' && !/^(\[[0-9a-fA-F:.]+\]|[0-9.]+|localhost):\d{1,5}$/.test(metricsAddress))
    throw fieldError('metricsAddress', `must be "host:port" or "" to disable, got ${JSON.stringify(metricsAddress)}`);

  const steering = validateSteering(obj(root.steering, 'steering'));
  if (steering.nodeToNode && mode !== 'wireguard')
    throw fieldError('steering.nodeToNode', `is supported in mode wireguard only, got mode ${JSON.stringify(mode)}`);
  const statusIn = obj(root.status, 'status');
  checkKeys(
    statusIn,
    ['publish', 'heartbeatSeconds', 'minIntervalSeconds', 'tokenFile', 'listenHost', 'listenPort'],
    'status',
  );
  const listenHost = statusIn.listenHost === undefined ? undefined : str(statusIn, 'listenHost', 'status.');
  const listenIP = listenHost === undefined ? undefined : parseIP(listenHost);
  if (listenHost !== undefined && listenIP === undefined)
    throw fieldError(
      'status.listenHost',
      `must be an IPv4 or IPv6 address (the node's own, e.g. from the downward API status.hostIP), got ${JSON.stringify(listenHost)}`,
    );
  const status: StatusConfig = {
    publish: bool(statusIn, 'publish', 'status.', true),
    heartbeatSeconds: int(statusIn, 'heartbeatSeconds', 'status.', 300, 2, 86400),
    minIntervalSeconds: int(statusIn, 'minIntervalSeconds', 'status.', 10, 1, 3600),
    tokenFile: statusIn.tokenFile === undefined ? undefined : str(statusIn, 'tokenFile', 'status.'),
    listenHost: listenIP === undefined ? undefined : formatIP(listenIP.family, listenIP.value),
    listenPort: int(statusIn, 'listenPort', 'status.', 9589, 1, 65535),
  };
  if (status.minIntervalSeconds > status.heartbeatSeconds)
    throw fieldError(
      'status.minIntervalSeconds',
      `must not exceed status.heartbeatSeconds (${status.heartbeatSeconds}), got ${status.minIntervalSeconds}`,
    );

  return {
    nodeName,
    mode,
    stateDir: str(root, 'stateDir', '', DEFAULT_STATE_DIR),
    store,
    wireguard,
    resyncIntervalSeconds: int(root, 'resyncIntervalSeconds', '', 30, 1, 86400),
    debounceMs: int(root, 'debounceMs', '', 10, 0, 60000),
    logLevel: oneOf(root, 'logLevel', '', ['debug', 'info', 'warn', 'error'] as const, 'info'),
    metricsAddress,
    endpointAddress,
    underlayMtu: root.underlayMtu === undefined ? undefined : int(root, 'underlayMtu', '', 1500, 1280, 65535),
    steering,
    status,
    ipsec: validateIpsec(obj(root.ipsec, 'ipsec')),
    rotation: validateRotation(obj(root.rotation, 'rotation'), wireguard.listenPort),
    postQuantum: validatePostQuantum(obj(root.postQuantum, 'postQuantum')),
  };
}

function validatePostQuantum(o: Json): PostQuantumConfig {
  checkKeys(o, ['mode', 'renewMinutes'], 'postQuantum');
  return {
    mode: oneOf(o, 'mode', 'postQuantum.', ['off', 'preferred', 'required'] as const, 'off'),
    renewMinutes: int(o, 'renewMinutes', 'postQuantum.', RENEW_MINUTES_DEFAULT, RENEW_MINUTES_MIN, RENEW_MINUTES_MAX),
  };
}

/** 30 days: the default maximum key age. */
const DEFAULT_MAX_KEY_AGE_SECONDS = 30 * 86400;

function validateRotation(o: Json, listenPort: number): RotationConfig {
  checkKeys(o, ['graceSeconds', 'peerTimeoutSeconds', 'maxKeyAgeSeconds', 'maxConcurrentAuto'], 'rotation');
  // The new key's link listens on the other port of the pair (listenPort, listenPort + 1).
  if (listenPort > 65534)
    throw fieldError(
      'wireguard.listenPort',
      `must be at most 65534: a key rotation uses listenPort + 1 for the new key's link, got ${listenPort}`,
    );
  const cfg: RotationConfig = {
    graceSeconds: int(o, 'graceSeconds', 'rotation.', 30, 0, 86400),
    peerTimeoutSeconds: int(o, 'peerTimeoutSeconds', 'rotation.', 15, 1, 3600),
    maxKeyAgeSeconds: int(o, 'maxKeyAgeSeconds', 'rotation.', DEFAULT_MAX_KEY_AGE_SECONDS, 0, 10 * 365 * 86400),
    maxConcurrentAuto: int(o, 'maxConcurrentAuto', 'rotation.', 1, 1, 1000),
  };
  if (cfg.maxKeyAgeSeconds !== 0 && cfg.maxKeyAgeSeconds < 3600)
    throw fieldError(
      'rotation.maxKeyAgeSeconds',
      `must be 0 (off) or at least 3600 (one hour), got ${cfg.maxKeyAgeSeconds}`,
    );
  return cfg;
}

function validateIpsec(o: Json): IpsecConfig {
  checkKeys(o, ['keyBits', 'replayWindow'], 'ipsec');
  const keyBits = o.keyBits ?? 256;
  if (keyBits !== 128 && keyBits !== 256)
    throw fieldError('ipsec.keyBits', `must be 128 or 256 (AES-GCM key size), got ${JSON.stringify(keyBits)}`);
  return { keyBits, replayWindow: int(o, 'replayWindow', 'ipsec.', 1024, 1, 4096) };
}

function bool(o: Json, key: string, where: string, def: boolean): boolean {
  const v = o[key] ?? def;
  if (typeof v !== 'boolean') throw fieldError(`${where}${key}`, `must be true or false, got ${JSON.stringify(v)}`);
  return v;
}

function cidrList(o: Json, key: string, where: string): string[] {
  const v = o[key] ?? [];
  if (!Array.isArray(v)) throw fieldError(`${where}${key}`, `must be a list of CIDRs, got ${JSON.stringify(v)}`);
  return v.map((c, i) => {
    const canon = typeof c === 'string' ? canonicalCidr(c) : undefined;
    if (canon === undefined || typeof c !== 'string' || !c.includes('/'))
      throw fieldError(`${where}${key}[${i}]`, `must be a CIDR such as "10.244.0.0/16", got ${JSON.stringify(c)}`);
    return canon;
  });
}

function validateSteering(st: Json): SteeringConfig {
  checkKeys(
    st,
    ['enabled', 'failClosed', 'clusterCidrs', 'exemptCidrs', 'interfaces', 'enforceIngress', 'nodeToNode', 'nodeCidrs'],
    'steering',
  );
  const enabled = bool(st, 'enabled', 'steering.', true);
  const failClosed = bool(st, 'failClosed', 'steering.', true);
  const clusterCidrs = cidrList(st, 'clusterCidrs', 'steering.');
  const ifaces = st.interfaces ?? [];
  if (!Array.isArray(ifaces) || ifaces.some((i) => typeof i !== 'string' || !/^[A-Za-z0-9_.-]{1,15}$/.test(i))) {
    throw fieldError('steering.interfaces', `must be a list of interface names, got ${JSON.stringify(ifaces)}`);
  }
  const nodeToNode = bool(st, 'nodeToNode', 'steering.', false);
  // Host traffic reaches the tunnel only through the egress program's redirect (no route: a
  // route to a peer's address via the tunnel would carry the tunnel's own UDP into itself).
  if (nodeToNode && !enabled)
    throw fieldError(
      'steering.nodeToNode',
      'needs steering.enabled: host traffic to other nodes is steered into the tunnel by the BPF program',
    );
  const nodeCidrs = cidrList(st, 'nodeCidrs', 'steering.');
  nodeCidrs.forEach((c, i) => {
    const p = parseCidr(c, { hostBits: 'clear' })!;
    const why =
      p.prefixLength < (p.family === 4 ? 8 : 7)
        ? 'is wider than a /8 (IPv4) or /7 (IPv6)'
        : nonUnicastClass(p.family, p.network) !== undefined
          ? `starts in a ${nonUnicastClass(p.family, p.network)!} range`
          : undefined;
    if (why !== undefined)
      throw fieldError(`steering.nodeCidrs[${i}]`, `${c} ${why}; list the networks your nodes' InternalIPs are in`);
  });
  return {
    enabled,
    failClosed,
    clusterCidrs,
    exemptCidrs: cidrList(st, 'exemptCidrs', 'steering.'),
    interfaces: ifaces as string[],
    enforceIngress: bool(st, 'enforceIngress', 'steering.', true),
    nodeToNode,
    nodeCidrs,
  };
}

/**
 * Checks what the agent needs to start safely, beyond the shape of the config: with fail-closed
 * steering (the default) the cluster pod range must be known, or nothing could be dropped before
 * the node store has synced.
 */
export function checkStartable(cfg: AgentConfig): void {
  // Mode ipsec does not mix the pair secret into its SA keys yet: starting would run `required`
  // pairs classical-only, the fail-open this mode forbids.
  if (cfg.postQuantum.mode !== 'off' && cfg.mode === 'ipsec') {
    throw fieldError(
      'postQuantum.mode',
      `${JSON.stringify(cfg.postQuantum.mode)} is available in mode wireguard only: mode ipsec does not derive its SA keys from the post-quantum pair secret yet (issue 19); use "off"`,
    );
  }
  // `required` drops a pair by taking its routes out of the tunnel: only the fail-closed BPF guard
  // then stops its pod traffic from leaving in plaintext over the CNI's routes.
  if (cfg.postQuantum.mode === 'required' && !(cfg.steering.enabled && cfg.steering.failClosed)) {
    throw fieldError(
      'postQuantum.mode',
      '"required" needs steering.enabled and steering.failClosed (the defaults): a pair without a post-quantum secret is dropped by the BPF guard; without it its traffic would leave in plaintext',
    );
  }
  const st = cfg.steering;
  if (st.enabled && st.failClosed && st.clusterCidrs.length === 0) {
    throw fieldError(
      'steering.clusterCidrs',
      'is required when steering.failClosed is true (the default): list the cluster pod range(s), e.g. --cluster-cidr 10.244.0.0/16, so pod traffic is dropped from the first packet until a tunnel is ready (or set steering.failClosed: false explicitly)',
    );
  }
}

const FLAGS: Record<string, (cfg: Json, v: string) => void> = {
  '--node-name': (c, v) => {
    c.nodeName = v;
  },
  '--mode': (c, v) => {
    c.mode = v;
  },
  '--state-dir': (c, v) => {
    c.stateDir = v;
  },
  '--store': (c, v) => {
    c.store = { ...obj(c.store, 'store'), type: v };
  },
  '--store-dir': (c, v) => {
    c.store = { ...obj(c.store, 'store'), dir: v };
  },
  '--kubeconfig': (c, v) => {
    c.store = { ...obj(c.store, 'store'), kubeconfig: v };
  },
  '--log-level': (c, v) => {
    c.logLevel = v;
  },
  '--cluster-cidr': (c, v) => {
    const st = obj(c.steering, 'steering');
    c.steering = { ...st, clusterCidrs: [...(Array.isArray(st.clusterCidrs) ? st.clusterCidrs : []), v] };
  },
  '--status-host': (c, v) => {
    c.status = { ...obj(c.status, 'status'), listenHost: v };
  },
  '--metrics-address': (c, v) => {
    c.metricsAddress = v;
  },
  '--listen-port': (c, v) => {
    if (!/^\d+$/.test(v)) throw fieldError('--listen-port', `must be a port number, got ${JSON.stringify(v)}`);
    c.wireguard = { ...obj(c.wireguard, 'wireguard'), listenPort: Number(v) };
  },
};

/** Usage text for `sealnet-agent --help`. */
export const AGENT_USAGE = `usage: sealnet-agent [--config FILE] [--node-name NAME] [--mode wireguard|ipsec]
       [--store kubernetes|file] [--store-dir DIR] [--kubeconfig FILE] [--state-dir DIR]
       [--listen-port PORT] [--log-level debug|info|warn|error] [--metrics-address HOST:PORT]
       [--cluster-cidr CIDR ...] [--status-host NODE_IP]
The node name defaults to $NODE_NAME. Flags override the config file.`;

/**
 * Loads the config from argv (`--config FILE` plus overrides) and the environment
 * (`NODE_NAME` only: it is not secret, and the DaemonSet sets it from the downward API).
 */
export async function loadConfig(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): Promise<AgentConfig> {
  let cfg: Json = {};
  const options = Object.fromEntries([
    ['config', { type: 'string' as const }],
    ...Object.keys(FLAGS).map((f) => [f.slice(2), { type: 'string' as const, multiple: true }]),
  ]);
  const { values } = parseFlags(argv, { options, usage: AGENT_USAGE });
  const file = values.config as string | undefined;
  if (file !== undefined) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      throw new SealnetError('CONFIG_INVALID', `cannot read config file ${file}`, { cause: err });
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw new SealnetError('CONFIG_INVALID', `config file ${file} is not valid JSON: ${(err as Error).message}`);
    }
    cfg = obj(parsed, '(root)');
  }
  // Flags override the file; a repeated flag: the last wins, except --cluster-cidr (each adds one).
  const overrides: [string, string][] = [];
  for (const flag of Object.keys(FLAGS)) {
    const given = (values[flag.slice(2)] ?? []) as string[];
    for (const v of flag === '--cluster-cidr' ? given : given.slice(-1)) overrides.push([flag, v]);
  }
  if (cfg.nodeName === undefined && env.NODE_NAME !== undefined && env.NODE_NAME !== '') cfg.nodeName = env.NODE_NAME;
  for (const [name, value] of overrides) FLAGS[name]!(cfg, value);
  return validateConfig(cfg);
}
