/**
 * `sealnet-agent`: parse config, build the adapters, run the reconciler. Thin on purpose:
 * everything with logic lives in the planner, the reconciler and the drivers.
 */
import { chmod, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { disableCoreDumps } from '../../common/coredump.js';
import { KeyOwnerBook } from '../../keymgr/keyowners.js';
import { createServer, type RequestListener, type Server } from 'node:http';
import pino from 'pino';
import { fingerprint } from '../../keymgr/keys.js';
import { KeyStore } from '../../keymgr/keystore.js';
import { NetlinkRouting } from '../../routing/netlink.js';
import { BpfSteering } from '../../routing/bpf/datapath.js';
import { disableDumpable } from '../../routing/bpf/syscall.js';
import { WireGuardDriver } from '../../wireguard/driver.js';
import { AGENT_USAGE, checkStartable, loadConfig, type AgentConfig } from './config.js';
import { describeError, SealnetError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import { createMetrics, recordRotation, registerSteeringCounters, type AgentMetrics } from '../../common/metrics.js';
import type { NodeStore } from '../ports/index.js';
import { Reconciler } from '../reconcile/reconciler.js';
import { WG_INTERFACE } from '../../common/constants.js';
import { RotationController, rotationSettings } from '../rotation/wireguard.js';
import { RotationStateFile } from '../../keymgr/rotationstore.js';
import { StateTextFile } from '../../keymgr/statefile.js';
import { LAST_APPLIED_FILE, LAST_APPLIED_MAX_BYTES } from '../plan/lastapplied.js';
import { TcMirror } from '../../routing/mirror.js';
import { startIpsecMode } from './ipsec.js';
import { ensureLooseRpFilter } from '../../routing/rpfilter.js';
import { checkOverlays } from '../../routing/overlay.js';
import { overlayGate } from './overlay.js';
import { FileNodeStore } from '../stores/file.js';
import {
  loadOrCreateStatusToken,
  relevantChangeFilter,
  serveStatus,
  STATUS_SOCKET_FILE,
  StatusService,
} from '../status/service.js';
import { registerStatusMetrics } from '../status/metrics.js';
import { NotReadyTaint } from './not-ready-taint.js';
import { DeferredNodeStore } from './deferredstore.js';
import type { NodeTaintPort } from '../ports/index.js';
import { loadOrCreateKemKey } from '../../keymgr/pq/kemstore.js';
import { pqSettings } from '../../keymgr/pq/exchange.js';
import { PqService } from '../pq/service.js';
import { registerPqMetrics } from '../pq/metrics.js';

/**
 * Builds the node store the config names. The Kubernetes client is imported only when used: it
 * is most of the agent's start-up time (~20 s of CPU under qemu TCG, ~0.4 s on metal).
 */
export async function createStore(config: AgentConfig, metrics?: AgentMetrics): Promise<NodeStore> {
  if (config.store.type === 'file') return new FileNodeStore({ dir: config.store.dir });
  const { KubernetesNodeStore } = await import('../stores/kubernetes.js');
  // A lean watch: other nodes' status summaries are not kept; irrelevant updates and dropped
  // annotations are counted (tunnels/stores/kubernetes.ts).
  return new KubernetesNodeStore({
    kubeconfig: config.store.kubeconfig,
    keepStatus: false,
    onIrrelevantUpdate: () => metrics?.storeIrrelevantUpdates.inc(),
    onDroppedAnnotation: (reason) => metrics?.storeDroppedAnnotations.inc({ reason }),
  });
}

/** The agent's HTTP endpoints: `/healthz`, `/readyz`, `/metrics`, `/status` (bearer token). */
function httpHandler(metrics: AgentMetrics, st: { status: StatusService; token: string | undefined }): RequestListener {
  return (req, res) => {
    const send = (code: number, body: string, type = 'text/plain; charset=utf-8'): void => {
      res.writeHead(code, { 'content-type': type });
      res.end(body);
    };
    if (req.url === '/healthz') return send(200, 'ok\n');
    if (req.url === '/readyz') {
      // Ready only when every known peer is programmed (tunnels/status/report.ts readiness()).
      st.status.readiness().then(
        (r) => (r.ready ? send(200, 'ready\n') : send(503, `not ready: ${r.reasons.join('; ')}\n`)),
        (err: unknown) => send(503, `not ready: ${describeError(err)}\n`),
      );
      return;
    }
    if (req.url === '/status') return serveStatus(req, res, st);
    if (req.url === '/metrics') {
      metrics.registry.metrics().then(
        (text) => send(200, text, metrics.registry.contentType),
        (err: unknown) => send(500, describeError(err)),
      );
      return;
    }
    send(404, 'not found\n');
  };
}

function startHttp(config: AgentConfig, handler: RequestListener, log: Logger): Server | undefined {
  if (config.metricsAddress === '') return undefined;
  const idx = config.metricsAddress.lastIndexOf(':');
  const host = config.metricsAddress.slice(0, idx).replace(/^\[|\]$/g, '');
  const port = Number(config.metricsAddress.slice(idx + 1));
  const server = createServer(handler);
  server.on('error', (err) =>
    log.error(
      { err: describeError(err), address: config.metricsAddress },
      'metrics server failed; continuing without it',
    ),
  );
  server.listen(port, host);
  return server;
}

/**
 * `/status` alone on the node's own address (`status.listenHost`, set by the chart from the
 * downward API): the API server's pod proxy reaches a host-network agent pod at its pod IP, the
 * node's IP, and `sealctl status --store kubernetes` goes that way. Token required like
 * everywhere; `/metrics`, `/readyz` stay on the loopback metrics address.
 */
function startStatusListener(config: AgentConfig, handler: RequestListener, log: Logger): Server | undefined {
  const host = config.status.listenHost;
  if (host === undefined) return undefined;
  const server = createServer((req, res) => {
    if (req.url === '/status') return handler(req, res);
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
    res.end('not found: only /status is served on this address\n');
  });
  server.on('error', (err) =>
    log.error(
      { err: describeError(err), host, port: config.status.listenPort },
      'cannot serve /status on the node address (sealctl through the pod proxy will report this node unreachable); continuing without it',
    ),
  );
  server.listen(config.status.listenPort, host);
  return server;
}

/**
 * The same endpoints on a Unix socket in the state dir (`status.sock`, 0600): how `sealctl
 * --store file` reaches an agent in another network namespace on the same host (the namespace
 * harness, the demo) without any route. The directory's and socket's modes are the first gate,
 * the bearer token the second.
 */
async function startSocket(config: AgentConfig, handler: RequestListener, log: Logger): Promise<Server | undefined> {
  const path = join(config.stateDir, STATUS_SOCKET_FILE);
  if (Buffer.byteLength(path) > 100) {
    log.warn({ path }, 'state dir path too long for a Unix socket; /status is served on the metrics address only');
    return undefined;
  }
  await rm(path, { force: true }).catch(() => undefined);
  const server = createServer(handler);
  const up = await new Promise<boolean>((resolve) => {
    server.once('error', (err) => {
      log.warn({ err: describeError(err), path }, 'cannot serve /status on a Unix socket; continuing without it');
      resolve(false);
    });
    server.listen(path, () => resolve(true));
  });
  if (!up) return undefined;
  await chmod(path, 0o600).catch(() => undefined);
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
  // Before any key is loaded: a core file of the agent would hold them.
  await disableCoreDumps((p) => readFile(p, 'utf8')).catch((err: unknown) =>
    log.warn(
      { err: describeError(err) },
      'could not set RLIMIT_CORE to 0 (prlimit); a crash could leave a core file with key material',
    ),
  );
  try {
    disableDumpable();
  } catch (err) {
    log.warn(
      { err: describeError(err) },
      'could not turn the dumpable flag off (prctl); the agent process can be ptrace-attached by its uid',
    );
  }
  // Mode ipsec checks the kernel before anything is published, changed or created: a kernel
  // without ESP ends the agent here (status 2), with nothing left behind.
  const metrics = createMetrics();
  const ipsec =
    config.mode === 'ipsec'
      ? await startIpsecMode({
          config,
          log,
          onRotationCompleted: () => recordRotation(metrics, { kind: 'ipsec', result: 'completed' }),
        })
      : undefined;
  if (config.mode === 'ipsec' && ipsec === undefined) return 2;
  const keystore = new KeyStore({ stateDir: config.stateDir });
  let key;
  try {
    key = await keystore.loadOrCreate('wireguard');
  } catch (err) {
    log.error({ err: describeError(err) }, 'cannot load or create the WireGuard key');
    return 2;
  }
  for (const w of key.warnings) log.warn({}, `key store: ${w}`);
  log.info(
    { key: fingerprint(key.publicKey), epoch: key.epoch, created: key.created },
    key.created ? 'generated a new WireGuard key' : 'loaded WireGuard key',
  );

  const routing = new NetlinkRouting();
  const wg = new WireGuardDriver({
    wgPath: config.wireguard.wgPath,
    wireguardGoPath: config.wireguard.wireguardGoPath,
    impl: config.wireguard.implementation,
    log: (msg, fields) => log.info(fields, msg),
    // The key store's 0700 directory: the short-lived file a preshared key reaches `wg` through
    // on a kernel link (a wireguard-go link gets it over its UAPI socket).
    secretDir: join(config.stateDir, 'keys'),
  });
  // The real store is built after the restore of the last applied state has started (below):
  // until then passes and the status service see an empty, unsynced one.
  const deferredStore = new DeferredNodeStore();
  const steering = config.steering.enabled ? new BpfSteering() : undefined;
  if (steering !== undefined) registerSteeringCounters(metrics, () => steering.counters());
  else
    log.warn(
      {},
      'steering.enabled is false: no BPF guard; pod traffic to a node without a tunnel follows the routing table (possibly in PLAINTEXT)',
    );
  // Key rotation (WireGuard mode): resumes a rotation an earlier run was in the middle of.
  let wakeReconciler: () => void = () => undefined;
  const rotation =
    config.mode === 'wireguard'
      ? new RotationController({
          nodeName: config.nodeName,
          listenPort: config.wireguard.listenPort,
          settings: rotationSettings(config.rotation),
          keystore,
          stateFile: new RotationStateFile(config.stateDir),
          log,
          metrics,
          wake: () => wakeReconciler(),
        })
      : undefined;
  try {
    await rotation?.load();
  } catch (err) {
    log.error({ err: describeError(err) }, 'cannot load the key rotation state');
    return 2;
  }
  const keyOwners = await KeyOwnerBook.open(config.stateDir, (err) =>
    log.warn(
      { err: describeError(err) },
      'cannot write key-owners.json (first-seen key ownership); retrying on the next change',
    ),
  );
  // The post-quantum pair secret (mode wireguard; checkStartable refused it in mode ipsec).
  let pq: PqService | undefined;
  if (config.postQuantum.mode !== 'off') {
    try {
      const kem = await loadOrCreateKemKey(config.stateDir);
      for (const w of kem.warnings) log.warn({}, `key store: ${w}`);
      log.info(
        { mode: config.postQuantum.mode, renewMinutes: config.postQuantum.renewMinutes },
        kem.created ? 'generated a new ML-KEM-768 key' : 'loaded ML-KEM-768 key',
      );
      pq = new PqService({
        nodeName: config.nodeName,
        settings: pqSettings(config.postQuantum.mode, config.postQuantum.renewMinutes),
        kem: kem.pair,
        wg,
        log,
        metrics: registerPqMetrics(metrics.registry),
        wake: () => wakeReconciler(),
      });
    } catch (err) {
      log.error({ err: describeError(err) }, 'cannot load or create the ML-KEM key');
      return 2;
    }
  }
  const reconciler = new Reconciler({
    pq,
    rpFilter: ensureLooseRpFilter,
    keyOwners,
    config,
    key: { publicKey: key.publicKey, privateKeyFile: key.privateKeyFile, epoch: key.epoch, createdAt: key.createdAt },
    store: deferredStore,
    wg,
    routing,
    log,
    metrics,
    steering,
    ipsec,
    rotation,
    mirror: rotation === undefined ? undefined : new TcMirror(),
    lastApplied: new StateTextFile(config.stateDir, { name: LAST_APPLIED_FILE, maxBytes: LAST_APPLIED_MAX_BYTES }),
  });
  wakeReconciler = () => reconciler.trigger({ full: true });
  ipsec?.setWake(() => reconciler.trigger({ full: true }));
  // Mode ipsec reports its IPsec key (the one its pairs' SAs derive from) and the observed SAs.
  const status = new StatusService({
    config,
    key: () =>
      (ipsec === undefined
        ? undefined
        : {
            publicKey: ipsec.key.publicKey,
            epoch: ipsec.key.epoch,
            createdAt: ipsec.key.createdAt ?? key.createdAt,
          }) ??
      rotation?.published() ?? { publicKey: key.publicKey, epoch: key.epoch, createdAt: key.createdAt },
    observeIpsec: ipsec === undefined ? undefined : () => ipsec.port.observe(),
    ipsecEvidence: ipsec?.port,
    link: () => rotation?.publishedLink() ?? WG_INTERFACE,
    wg,
    steering,
    reconciler,
    store: deferredStore,
    metrics,
    log,
    pq: pq === undefined ? undefined : () => pq.status(),
  });
  registerStatusMetrics(metrics, () => status.report());
  let token: string | undefined;
  try {
    const t = await loadOrCreateStatusToken(config);
    token = t.token;
    if (t.warning !== undefined) log.warn({}, t.warning);
  } catch (err) {
    log.error({ err: describeError(err) }, 'cannot load or create the /status token; /status is disabled');
  }
  const statusAuth = { status, token };
  // A token file given in the config (the chart's Secret) may be replaced under the agent: the
  // kubelet swaps a Secret volume's files when the Secret changes. Re-read it every minute.
  const tokenRefresh =
    config.status.tokenFile === undefined
      ? undefined
      : setInterval(() => {
          loadOrCreateStatusToken(config).then(
            (t) => {
              if (t.token !== statusAuth.token)
                log.info({ file: t.file }, 'status token file changed; using the new token');
              statusAuth.token = t.token;
            },
            (err: unknown) =>
              log.warn({ err: describeError(err) }, 'cannot re-read the status token file; keeping the token in use'),
          );
        }, 60_000);
  tokenRefresh?.unref();
  const handler = httpHandler(metrics, statusAuth);
  const http = startHttp(config, handler, log);
  const socket = await startSocket(config, handler, log);
  const statusServer = startStatusListener(config, handler, log);

  let resolveStop: () => void = () => undefined;
  const stopped = new Promise<void>((r) => {
    resolveStop = r;
  });
  process.once('SIGTERM', () => resolveStop());
  process.once('SIGINT', () => resolveStop());
  // SIGHUP: reconcile in full now (re-read every peer, route and steering entry and repair what
  // was changed behind the agent's back) instead of at the next periodic resync.
  const onHup = (): void => {
    log.info({}, 'SIGHUP: full reconcile pass requested');
    reconciler.trigger({ full: true });
  };
  process.on('SIGHUP', onHup);

  // Beside an overlay CNI the guard must be able to read the overlay's packets (issue 15): refuse
  // to run fail-open, before anything is attached or published.
  const overlayRefused = await overlayGate(config, { check: () => checkOverlays(), log });
  if (overlayRefused !== undefined) {
    log.error({}, overlayRefused.message);
    process.stderr.write(`sealnet-agent: ${overlayRefused.message}\n`);
    return 2;
  }

  // Fail closed from the first packet: attach the guard before the node store is even read,
  // whenever the underlay is known from the config (otherwise the first reconcile does it).
  const underlay =
    config.steering.interfaces[0] ??
    (config.endpointAddress === undefined
      ? undefined
      : (await routing.linkForAddress(config.endpointAddress).catch(() => undefined))?.name);
  if (steering !== undefined && underlay !== undefined) {
    await reconciler.prepareSteering(underlay).catch((err: unknown) => {
      metrics.errors.inc({ step: 'steering' });
      log.error({ err: describeError(err) }, 'cannot attach BPF steering at start-up; retrying on every reconcile');
    });
  }

  // Tunnels back before the store synced (issue 15): the last applied state, if it is valid and
  // this node's, is programmed while the store starts; passes wait for it.
  void reconciler.restoreLastApplied();
  const store = await createStore(config, metrics);
  deferredStore.set(store);

  // The kubelet registered this Node with sealnet.io/not-ready:NoSchedule (README): lift it once
  // the guard is attached and the first pass after the sync converged. Never re-added.
  const taintPort =
    config.store.type === 'kubernetes' && config.store.removeNotReadyTaint !== false && 'removeTaint' in store
      ? (store as NodeStore & NodeTaintPort)
      : undefined;
  const taint =
    taintPort !== undefined
      ? new NotReadyTaint({
          nodeName: config.nodeName,
          port: taintPort,
          steeringEnabled: steering !== undefined,
          guardAttached: () => reconciler.steeringAttached(),
          storeSynced: () => store.synced(),
          lastPass: () => reconciler.report(),
          log,
        })
      : undefined;
  const relevant = relevantChangeFilter();
  try {
    await store.start({
      // Status reports (every agent's, every heartbeat) are not planner input: no reconcile for them.
      onChange: (nodes) => {
        if (relevant(nodes)) reconciler.trigger();
      },
      onSynced: () => {
        log.info({ nodes: store.list().length }, 'node store synced');
        taint?.storeSynced();
        reconciler.trigger({ full: true });
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
  // The periodic resync reads the kernel in full and repairs anything changed behind our back;
  // store events in between are applied from the view the last pass left (tunnels/reconcile/kernelview.ts).
  const resync = setInterval(() => {
    reconciler.trigger({ full: true });
    // An overlay device created after start (the CNI started later): cannot refuse any more, so
    // it is an error on every resync (log and sealnet_reconcile_errors_total{step="overlay"}).
    overlayGate(config, { check: () => checkOverlays(), log }).then(
      (e) => {
        if (e === undefined) return;
        metrics.errors.inc({ step: 'overlay' });
        log.error({}, e.message);
      },
      () => undefined,
    );
  }, config.resyncIntervalSeconds * 1000);
  reconciler.trigger({ full: true });
  status.start();
  pq?.start();
  taint?.start();
  log.info({ mode: config.mode, store: config.store.type }, 'sealnet agent running');

  await stopped;
  // Leave the kernel state in place: tunnels keep working while the agent restarts or upgrades.
  clearInterval(resync);
  taint?.stop();
  process.off('SIGHUP', onHup);
  rotation?.close();
  pq?.close();
  ipsec?.close();
  await reconciler.close();
  await status.stop(); // a last report: agent stopped, tunnels left in place
  await store.stop();
  http?.close();
  socket?.close();
  statusServer?.close();
  if (tokenRefresh !== undefined) clearInterval(tokenRefresh);
  routing.close?.();
  log.info({}, 'sealnet agent stopped; tunnels left in place');
  return 0;
}

export { SealnetError };
