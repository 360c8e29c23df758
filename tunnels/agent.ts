/**
 * `sealnet-agent`: parse config, build the adapters, run the reconciler. Thin on purpose:
 * everything with logic lives in the planner, the reconciler and the drivers.
 */
import { createServer, type Server } from 'node:http';
import pino from 'pino';
import { fingerprint } from '../keymgr/keys.js';
import { KeyStore } from '../keymgr/keystore.js';
import { NetlinkRouting } from '../routing/netlink.js';
import { BpfSteering } from '../routing/bpf/datapath.js';
import { WireGuardDriver } from '../wireguard/driver.js';
import { AGENT_USAGE, checkStartable, loadConfig, type AgentConfig } from './config.js';
import { describeError, SealnetError } from './errors.js';
import type { Logger } from './logger.js';
import { createMetrics, registerSteeringCounters, type AgentMetrics } from './metrics.js';
import type { NodeStore } from './ports.js';
import { Reconciler } from './reconciler.js';
import { FileNodeStore } from './stores/file.js';
import { KubernetesNodeStore } from './stores/kubernetes.js';

/** Builds the node store the config names. */
export function createStore(config: AgentConfig): NodeStore {
  return config.store.type === 'file' ? new FileNodeStore({ dir: config.store.dir }) : new KubernetesNodeStore({ kubeconfig: config.store.kubeconfig });
}

function startHttp(config: AgentConfig, metrics: AgentMetrics, reconciler: Reconciler, log: Logger): Server | undefined {
  if (config.metricsAddress === '') return undefined;
  const idx = config.metricsAddress.lastIndexOf(':');
  const host = config.metricsAddress.slice(0, idx).replace(/^\[|\]$/g, '');
  const port = Number(config.metricsAddress.slice(idx + 1));
  const server = createServer((req, res) => {
    const send = (code: number, body: string, type = 'text/plain; charset=utf-8'): void => {
      res.writeHead(code, { 'content-type': type });
      res.end(body);
    };
    if (req.url === '/healthz') return send(200, 'ok\n');
    if (req.url === '/readyz') {
      const r = reconciler.report();
      if (r?.converged === true) return send(200, 'ready\n');
      return send(503, r === undefined ? 'no reconcile yet\n' : `not ready: ${r.errors.map((e) => `${e.step}: ${e.message}`).join('; ') || 'node store not synced'}\n`);
    }
    if (req.url === '/metrics') {
      metrics.registry.metrics().then((text) => send(200, text, metrics.registry.contentType), (err: unknown) => send(500, describeError(err)));
      return;
    }
    send(404, 'not found\n');
  });
  server.on('error', (err) => log.error({ err: describeError(err), address: config.metricsAddress }, 'metrics server failed; continuing without it'));
  server.listen(port, host);
  return server;
}

/** Runs the agent until SIGTERM/SIGINT. Returns the process exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${AGENT_USAGE}\n`);
    return 0;
  }
  let config: AgentConfig;
  try {
    config = await loadConfig(argv, process.env);
    checkStartable(config);
  } catch (err) {
    process.stderr.write(`sealnet-agent: ${describeError(err)}\n`);
    return 2;
  }
  const log: Logger = pino({ level: config.logLevel, base: { node: config.nodeName } });
  if (config.mode === 'ipsec') {
    log.error({}, 'mode "ipsec" is not available in this build yet (issue: IPsec ESP mode); use mode "wireguard"');
    return 2;
  }
  const metrics = createMetrics();
  const keystore = new KeyStore({ stateDir: config.stateDir });
  let key;
  try {
    key = await keystore.loadOrCreate('wireguard');
  } catch (err) {
    log.error({ err: describeError(err) }, 'cannot load or create the WireGuard key');
    return 2;
  }
  for (const w of key.warnings) log.warn({}, `key store: ${w}`);
  log.info({ key: fingerprint(key.publicKey), epoch: key.epoch, created: key.created }, key.created ? 'generated a new WireGuard key' : 'loaded WireGuard key');

  const routing = new NetlinkRouting();
  const wg = new WireGuardDriver({
    wgPath: config.wireguard.wgPath,
    wireguardGoPath: config.wireguard.wireguardGoPath,
    impl: config.wireguard.implementation,
    log: (msg, fields) => log.info(fields, msg),
  });
  const store = createStore(config);
  const steering = config.steering.enabled ? new BpfSteering() : undefined;
  if (steering !== undefined) registerSteeringCounters(metrics, () => steering.counters());
  else log.warn({}, 'steering.enabled is false: no BPF guard; pod traffic to a node without a tunnel follows the routing table (possibly in PLAINTEXT)');
  const reconciler = new Reconciler({
    config,
    key: { publicKey: key.publicKey, privateKeyFile: key.privateKeyFile, epoch: key.epoch, createdAt: key.createdAt },
    store,
    wg,
    routing,
    log,
    metrics,
    steering,
  });
  const http = startHttp(config, metrics, reconciler, log);

  let resolveStop: () => void = () => undefined;
  const stopped = new Promise<void>((r) => { resolveStop = r; });
  process.once('SIGTERM', () => resolveStop());
  process.once('SIGINT', () => resolveStop());

  // Fail closed from the first packet: attach the guard before the node store is even read,
  // whenever the underlay is known from the config (otherwise the first reconcile does it).
  const underlay = config.steering.interfaces[0] ?? (config.endpointAddress === undefined ? undefined : (await routing.linkForAddress(config.endpointAddress).catch(() => undefined))?.name);
  if (steering !== undefined && underlay !== undefined) {
    await reconciler.prepareSteering(underlay).catch((err: unknown) => {
      metrics.errors.inc({ step: 'steering' });
      log.error({ err: describeError(err) }, 'cannot attach BPF steering at start-up; retrying on every reconcile');
    });
  }

  try {
    await store.start({
      onChange: () => reconciler.trigger(),
      onSynced: () => {
        log.info({ nodes: store.list().length }, 'node store synced');
        reconciler.trigger();
      },
      onError: (err) => {
        metrics.invalidInput.inc({ source: 'store' });
        log.warn({ err: describeError(err) }, err.message);
      },
    });
  } catch (err) {
    log.error({ err: describeError(err) }, 'cannot start the node store');
    return 2;
  }
  const resync = setInterval(() => reconciler.trigger(), config.resyncIntervalSeconds * 1000);
  reconciler.trigger();
  log.info({ mode: config.mode, store: config.store.type }, 'sealnet agent running');

  await stopped;
  // Leave the kernel state in place: tunnels keep working while the agent restarts or upgrades.
  clearInterval(resync);
  await reconciler.close();
  await store.stop();
  http?.close();
  routing.close?.();
  log.info({}, 'sealnet agent stopped; tunnels left in place');
  return 0;
}

export { SealnetError };
