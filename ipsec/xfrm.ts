/**
 * Typed XFRM API over the NETLINK_XFRM addon: states and policies added, updated, deleted,
 * read and dumped, with errors that name the errno, the object, and — when the kernel lacks
 * something — the missing kernel feature.
 *
 * Every request and every reply buffer is wiped after use: state requests carry SA keys, and
 * state replies (get, dump) carry them back.
 */
import { spiHex } from '../tunnels/ports/xfrm-types.js';
import { SealnetError } from '../common/errors.js';
import { XFRM_REQID, XFRM_SPI_MIN } from '../common/constants.js';
import { isAddonSyscallError, loadXfrmAddon, type XfrmTransport } from './addon.js';
import type { XfrmOps } from '../tunnels/ports/ipsec.js';
import type {
  XfrmPolicy,
  XfrmPolicyId,
  XfrmPolicySpec,
  XfrmState,
  XfrmStateId,
  XfrmStateSpec,
} from '../tunnels/ports/xfrm-types.js';
import { decodeDone, decodeError, decodePolicy, decodeState, parseHeader } from './xfrm-decode.js';
import {
  describeErrno,
  hasErrno,
  NO_GCM_SENTENCE,
  NO_XFRM_USER_SENTENCE,
  noEspSentence,
  XfrmError,
} from './xfrm-errors.js';
import { K } from './xfrm-layout.js';
import {
  encodeDump,
  encodeEspProbe,
  encodeNewPolicy,
  encodeNewState,
  encodePolicyId,
  encodeStateId,
  familyOf,
  type EspProbeKind,
} from './xfrm-msg.js';

/** Options of {@link XfrmClient}. */
export interface XfrmClientOptions {
  /** Defaults to the native addon (loaded on construction). */
  readonly transport?: XfrmTransport;
  /** Per request; a dump counts as one request. Default 10 s. */
  readonly timeoutMs?: number;
}

const EPERM = 1;

/** Default per-request timeout of {@link XfrmClient}. */
export const XFRM_DEFAULT_TIMEOUT_MS = 10_000;

/** Result of one ESP capability probe. */
export type EspProbeResult = 'supported' | 'no-esp' | 'no-algorithm' | { readonly unexpected: XfrmError };

/** Describes a state for messages: "spi 0x51000001 to 198.18.0.2". */
function stateName(id: XfrmStateId): string {
  const mark = id.mark === undefined ? '' : ` mark 0x${id.mark.value.toString(16)}/0x${id.mark.mask.toString(16)}`;
  return `spi ${spiHex(id.spi)} to ${id.dst}${mark}`;
}

/** Describes a policy for messages: "out 0.0.0.0/0 -> 100.64.2.0/24". */
function policyName(id: XfrmPolicyId): string {
  const mark = id.mark === undefined ? '' : ` mark 0x${id.mark.value.toString(16)}/0x${id.mark.mask.toString(16)}`;
  return `${id.dir} ${id.selector.src} -> ${id.selector.dst}${mark}`;
}

/** The kernel's XFRM state and policy tables, through the addon. Implements {@link XfrmOps}. */
export class XfrmClient implements XfrmOps {
  readonly #transport: XfrmTransport;
  readonly #timeoutMs: number;
  #seq = Math.floor(Math.random() * 0x7fffffff);

  constructor(opts: XfrmClientOptions = {}) {
    this.#transport = opts.transport ?? loadXfrmAddon();
    this.#timeoutMs = opts.timeoutMs ?? XFRM_DEFAULT_TIMEOUT_MS;
  }

  /** Adds an ESP state. @throws XfrmError (EEXIST when it exists; KERNEL_FEATURE_MISSING without ESP/GCM). */
  async addState(spec: XfrmStateSpec): Promise<void> {
    await this.#stateChange(spec, false);
  }

  /** Updates an existing state (XFRM_MSG_UPDSA: lifetimes, marks; not keys). ESRCH when absent. */
  async updateState(spec: XfrmStateSpec): Promise<void> {
    await this.#stateChange(spec, true);
  }

  /** Deletes a state; resolves false when it did not exist. */
  async deleteState(id: XfrmStateId): Promise<boolean> {
    try {
      await this.#request(
        encodeStateId(id, { seq: this.#nextSeq(), op: 'delete' }),
        `delete XFRM state ${stateName(id)}`,
      );
      return true;
    } catch (err) {
      if (hasErrno(err, 'ESRCH')) return false;
      throw err;
    }
  }

  /** One state, or undefined when absent. The key in the result is a copy the caller zeroes. */
  async getState(id: XfrmStateId): Promise<XfrmState | undefined> {
    try {
      const [state] = await this.#request(
        encodeStateId(id, { seq: this.#nextSeq(), op: 'get' }),
        `get XFRM state ${stateName(id)}`,
        decodeState,
      );
      return state;
    } catch (err) {
      if (hasErrno(err, 'ESRCH')) return undefined;
      throw err;
    }
  }

  /** Every state in this network namespace. */
  async dumpStates(): Promise<XfrmState[]> {
    return this.#request(encodeDump('states', this.#nextSeq()), 'dump XFRM states', decodeState);
  }

  /** Adds a policy. @throws XfrmError EEXIST when one with the same selector, direction and mark exists. */
  async addPolicy(spec: XfrmPolicySpec): Promise<void> {
    await this.#request(encodeNewPolicy(spec, { seq: this.#nextSeq() }), `add XFRM policy ${policyName(spec)}`);
  }

  /** Replaces a policy atomically, or adds it. */
  async updatePolicy(spec: XfrmPolicySpec): Promise<void> {
    await this.#request(
      encodeNewPolicy(spec, { seq: this.#nextSeq(), update: true }),
      `update XFRM policy ${policyName(spec)}`,
    );
  }

  /** Deletes a policy (exact selector, direction and mark); resolves false when it did not exist. */
  async deletePolicy(id: XfrmPolicyId): Promise<boolean> {
    try {
      await this.#request(
        encodePolicyId(id, { seq: this.#nextSeq(), op: 'delete' }),
        `delete XFRM policy ${policyName(id)}`,
      );
      return true;
    } catch (err) {
      if (hasErrno(err, 'ENOENT')) return false;
      throw err;
    }
  }

  /** The policy with exactly this selector, direction and mark, or undefined. */
  async getPolicy(id: XfrmPolicyId): Promise<XfrmPolicy | undefined> {
    try {
      const [policy] = await this.#request(
        encodePolicyId(id, { seq: this.#nextSeq(), op: 'get' }),
        `get XFRM policy ${policyName(id)}`,
        decodePolicy,
      );
      return policy;
    } catch (err) {
      if (hasErrno(err, 'ENOENT')) return undefined;
      throw err;
    }
  }

  /** Every policy in this network namespace. */
  async dumpPolicies(): Promise<XfrmPolicy[]> {
    return this.#request(encodeDump('policies', this.#nextSeq()), 'dump XFRM policies', decodePolicy);
  }

  /**
   * Asks the kernel whether it could build an ESP state, without installing one (see
   * `encodeEspProbe`). `aead` probes rfc4106(gcm(aes)); `cbc` probes plain ESP.
   */
  async probeEsp(family: 4 | 6, kind: EspProbeKind = 'aead'): Promise<EspProbeResult> {
    const req = encodeEspProbe({ kind, family, spi: XFRM_SPI_MIN, reqid: XFRM_REQID, seq: this.#nextSeq() });
    try {
      await this.#request(req, `probe ESP (${kind}, IPv${family})`);
    } catch (err) {
      if (hasErrno(err, 'ESRCH')) return 'supported';
      if (hasErrno(err, 'EPROTONOSUPPORT', 'ENOPROTOOPT')) return 'no-esp';
      if (hasErrno(err, 'ENOSYS')) return 'no-algorithm';
      if (err instanceof XfrmError && err.code === 'NETLINK_FAILED') return { unexpected: err };
      throw err;
    }
    // The kernel updated a state at 0.0.0.0 with sealnet's first SPI: only sealnet puts one there.
    return 'supported';
  }

  /** @throws SealnetError `KERNEL_FEATURE_MISSING` unless ESP with rfc4106(gcm(aes)) works for `family`. */
  async checkEsp(family: 4 | 6): Promise<void> {
    const aead = await this.probeEsp(family, 'aead');
    if (aead === 'supported') return;
    throw await this.#featureError(family, aead, undefined);
  }

  /** The KERNEL_FEATURE_MISSING error for a failed probe (or NETLINK_FAILED when it is unexplained). */
  async #featureError(
    family: 4 | 6,
    aead: Exclude<EspProbeResult, 'supported'>,
    cause: XfrmError | undefined,
  ): Promise<SealnetError> {
    if (aead === 'no-esp') return new SealnetError('KERNEL_FEATURE_MISSING', noEspSentence(family), { cause });
    if (aead === 'no-algorithm') {
      // The AEAD lookup comes before the ESP type in the kernel: ask for plain ESP to tell which.
      const plain = await this.probeEsp(family, 'cbc');
      if (plain === 'no-esp') return new SealnetError('KERNEL_FEATURE_MISSING', noEspSentence(family), { cause });
      return new SealnetError('KERNEL_FEATURE_MISSING', NO_GCM_SENTENCE, { cause });
    }
    return new SealnetError(
      'NETLINK_FAILED',
      `cannot tell whether the kernel supports ESP: ${aead.unexpected.message}`,
      { cause: cause ?? aead.unexpected },
    );
  }

  async #stateChange(spec: XfrmStateSpec, update: boolean): Promise<void> {
    const what = `${update ? 'update' : 'add'} XFRM state ${stateName(spec)}`;
    try {
      await this.#request(encodeNewState(spec, { seq: this.#nextSeq(), update }), what);
    } catch (err) {
      if (!(err instanceof XfrmError)) throw err;
      const family = familyOf(spec.dst) ?? 4;
      if (hasErrno(err, 'EPROTONOSUPPORT', 'ENOPROTOOPT')) {
        throw this.#withContext(await this.#featureError(family, 'no-esp', err), what, err);
      }
      if (hasErrno(err, 'ENOSYS')) {
        throw this.#withContext(await this.#featureError(family, 'no-algorithm', err), what, err);
      }
      throw err;
    }
  }

  /** Adds the failed operation and errno to a feature error, keeping its sentence first. */
  #withContext(feature: SealnetError, what: string, err: XfrmError): SealnetError {
    return new XfrmError({
      code: feature.code,
      message: `${feature.message} (${what} failed: ${describeErrno(err.errnoNumber, err.kernelMessage)})`,
      errno: err.errnoNumber,
      kernelMessage: err.kernelMessage,
      cause: err,
    });
  }

  #nextSeq(): number {
    this.#seq = (this.#seq + 1) >>> 0 || 1;
    return this.#seq;
  }

  /**
   * Sends one request; returns the decoded data messages (those before the terminating ACK or
   * NLMSG_DONE). Wipes the request and every reply buffer.
   */
  async #request<T = never>(req: Buffer, what: string, decode?: (msg: Buffer) => T): Promise<T[]> {
    let replies: Buffer[];
    try {
      replies = await this.#transport.transact(req, { timeoutMs: this.#timeoutMs });
    } catch (err) {
      throw this.#syscallError(err, what);
    } finally {
      req.fill(0);
    }
    try {
      const out: T[] = [];
      for (const msg of replies) {
        const h = parseHeader(msg);
        if (h.type === K.NLMSG_ERROR) {
          const e = decodeError(msg);
          if (e.errno !== 0) {
            const hint = e.errno === EPERM ? ' (XFRM changes need CAP_NET_ADMIN in the network namespace)' : '';
            throw new XfrmError({
              code: 'NETLINK_FAILED',
              message: `failed to ${what}: ${describeErrno(e.errno, e.message)}${hint}`,
              errno: e.errno,
              kernelMessage: e.message,
            });
          }
          return out;
        }
        if (h.type === K.NLMSG_DONE) {
          const errno = decodeDone(msg);
          if (errno !== 0)
            throw new XfrmError({
              code: 'NETLINK_FAILED',
              message: `failed to ${what}: ${describeErrno(errno)}`,
              errno,
            });
          return out;
        }
        if (decode === undefined)
          throw new SealnetError('NETLINK_FAILED', `failed to ${what}: unexpected reply message type ${h.type}`);
        out.push(decode(msg));
      }
      throw new SealnetError('NETLINK_FAILED', `failed to ${what}: the reply ended without an ACK or NLMSG_DONE`);
    } finally {
      for (const msg of replies) msg.fill(0);
    }
  }

  #syscallError(err: unknown, what: string): SealnetError {
    if (!isAddonSyscallError(err)) return new SealnetError('NETLINK_FAILED', `failed to ${what}`, { cause: err });
    if (err.syscall === 'socket' && (err.code === 'EPROTONOSUPPORT' || err.code === 'EAFNOSUPPORT')) {
      return new XfrmError({
        code: 'KERNEL_FEATURE_MISSING',
        message: `${NO_XFRM_USER_SENTENCE} (socket(NETLINK_XFRM): ${err.code})`,
        errno: err.errno,
        cause: err,
      });
    }
    const hint = err.code === 'EPERM' || err.code === 'EACCES' ? ' (XFRM changes need CAP_NET_ADMIN)' : '';
    return new XfrmError({
      code: 'NETLINK_FAILED',
      message: `failed to ${what}: ${err.syscall} ${describeErrno(err.errno)}${hint}`,
      errno: err.errno,
      cause: err,
    });
  }
}
