/**
 * Start-up of mode ipsec for `sealnet-agent`: the IPsec part of the composition root. It
 * checks the kernel first — XFRM netlink, ESP and rfc4106(gcm(aes)) for the outer address
 * family — before anything is published, written to the kernel or created on disk: on a kernel
 * without ESP the agent exits with the sentence naming the missing feature and leaves nothing
 * behind (it never half-configures). Then it loads or creates the node's IPsec key (a separate
 * X25519 key, `KeyStore` kind `ipsec`), decides the IPsec generation (kept while the kernel
 * holds this node's SAs, new after a reboot) and builds the driver over the XFRM addon.
 */
import { IpsecDriver } from '../../ipsec/driver.js';
import { XfrmClient } from '../../ipsec/xfrm.js';
import { fingerprint, type PrivateKey } from '../../keymgr/keys.js';
import { KeyStore } from '../../keymgr/keystore.js';
import { parseIP } from '../../common/ip.js';
import type { AgentConfig } from './config.js';
import { describeError } from '../../common/errors.js';
import type { IpsecRuntime } from '../reconcile/ipsec-pass.js';
import { IpsecRotation } from '../rotation/ipsec.js';
import { RotationStateFile } from '../../keymgr/rotationstore.js';
import { loadGeneration } from '../../keymgr/generation.js';
import { rotationSettings } from '../rotation/wireguard.js';
import type { Logger } from '../../common/logger.js';

/**
 * The outer address family checked at start: the configured endpoint's, else IPv4 (the node's
 * InternalIP is known only once the store is read; the first reconcile checks that family
 * again before it publishes a key for it).
 */
export function startupFamily(config: AgentConfig): 4 | 6 {
  return config.endpointAddress === undefined ? 4 : (parseIP(config.endpointAddress)?.family ?? 4);
}

/**
 * Checks the kernel, then loads the IPsec key. Resolves undefined after logging why mode ipsec
 * cannot run (the caller exits with status 2).
 */
export async function startIpsecMode(o: {
  readonly config: AgentConfig;
  readonly log: Logger;
  readonly onRotationCompleted?: () => void;
}): Promise<(IpsecRuntime & { setWake(fn: () => void): void; close(): void }) | undefined> {
  const { config, log } = o;
  const family = startupFamily(config);
  // The driver reads private keys through this map: the current key, plus the next one during
  // a rotation (tunnels/rotation/ipsec.ts adds and removes them).
  const privateKeys = new Map<number, PrivateKey>();
  let driver: IpsecDriver;
  try {
    driver = new IpsecDriver({ xfrm: new XfrmClient(), privateKey: (epoch) => privateKeys.get(epoch) });
    await driver.checkKernel([family]);
  } catch (err) {
    // A missing feature's sentence already says that mode ipsec cannot run and what to do.
    const code = (err as { code?: unknown }).code;
    const text = err instanceof Error ? err.message : String(err);
    log.error(
      { err: describeError(err), code },
      code === 'KERNEL_FEATURE_MISSING' ? text : `mode ipsec cannot start: ${text}`,
    );
    return undefined;
  }
  log.info({ family }, `kernel supports ESP with rfc4106(gcm(aes)) for IPv${family}`);
  const keystore = new KeyStore({ stateDir: config.stateDir });
  let key;
  try {
    key = await keystore.loadOrCreate('ipsec');
  } catch (err) {
    log.error({ err: describeError(err) }, 'cannot load or create the IPsec key');
    return undefined;
  }
  for (const w of key.warnings) log.warn({}, `key store: ${w}`);
  privateKeys.set(key.epoch, key.privateKey);
  // The generation lives as long as this node's XFRM state (keymgr/generation.ts): read the
  // kernel before deciding, so a restart keeps it and a reboot draws a new one.
  let generation;
  try {
    const held = (await driver.observe()).states.length > 0;
    generation = await loadGeneration({ stateDir: config.stateDir, kernelHoldsStates: held });
  } catch (err) {
    log.error({ err: describeError(err) }, 'cannot read the kernel’s SAs or the IPsec generation file');
    return undefined;
  }
  for (const w of generation.warnings) log.warn({}, `IPsec generation: ${w}`);
  log.info(
    { generation: generation.generation.toString(16).padStart(8, '0'), fresh: generation.fresh },
    `IPsec generation: ${generation.reason}`,
  );
  log.info(
    { key: fingerprint(key.publicKey), epoch: key.epoch, created: key.created },
    key.created ? 'generated a new IPsec key' : 'loaded IPsec key',
  );
  // Key rotation: the same state file and request/report annotations as mode wireguard (which
  // this agent does not run), resumed where an earlier run left it.
  let wake: () => void = () => undefined;
  const rotation = new IpsecRotation({
    nodeName: config.nodeName,
    settings: rotationSettings(config.rotation),
    keystore,
    stateFile: new RotationStateFile(config.stateDir),
    privateKeys,
    current: { publicKey: key.publicKey, epoch: key.epoch, createdAt: key.createdAt },
    log,
    wake: () => wake(),
    ...(o.onRotationCompleted !== undefined ? { onCompleted: o.onRotationCompleted } : {}),
  });
  try {
    await rotation.load();
  } catch (err) {
    log.error({ err: describeError(err) }, 'cannot load the IPsec key rotation state');
    return undefined;
  }
  return {
    port: driver,
    get key() {
      return rotation.published();
    },
    checkedFamilies: [family],
    rotation,
    generation: generation.generation,
    setWake: (fn: () => void) => {
      wake = fn;
    },
    close: () => rotation.close(),
  };
}
