/**
 * NETLINK_XFRM reply decoding: netlink headers, attributes, NLMSG_ERROR (with the kernel's
 * extended-ACK sentence), and the XFRM_MSG_NEWSA / NEWPOLICY messages of gets and dumps. Pure.
 * Every read is bounds-checked: a short or malformed message is a NETLINK_FAILED error, never
 * a silently wrong value.
 */
import { formatIP } from '../common/ip.js';
import { SealnetError } from '../common/errors.js';
import type {
  XfrmCurrent,
  XfrmDir,
  XfrmLifetime,
  XfrmMark,
  XfrmPolicy,
  XfrmSelector,
  XfrmState,
  XfrmTemplate,
} from '../tunnels/ports/xfrm-types.js';
import { K, LAYOUT } from './xfrm-layout.js';
import { getS32, getU16, getU32, getU64, nlAlign } from './xfrm-wire.js';

const L = LAYOUT;

/** A netlink message header. */
export interface NlHeader {
  readonly len: number;
  readonly type: number;
  readonly flags: number;
  readonly seq: number;
  readonly pid: number;
}

function malformed(what: string): SealnetError {
  return new SealnetError('NETLINK_FAILED', `malformed XFRM netlink reply: ${what}`);
}

/** Reads and checks the header of one message. */
export function parseHeader(msg: Buffer): NlHeader {
  if (msg.length < L.nlmsghdr.size) throw malformed(`message of ${msg.length} bytes is shorter than a netlink header`);
  const f = L.nlmsghdr.fields;
  const len = getU32(msg, f.nlmsg_len[0]);
  if (len < L.nlmsghdr.size || len > msg.length)
    throw malformed(`nlmsg_len ${len} does not fit the ${msg.length}-byte message`);
  return {
    len,
    type: getU16(msg, f.nlmsg_type[0]),
    flags: getU16(msg, f.nlmsg_flags[0]),
    seq: getU32(msg, f.nlmsg_seq[0]),
    pid: getU32(msg, f.nlmsg_pid[0]),
  };
}

/** Attributes in `buf[start, end)`, by type (a repeated type keeps the last). Values are views. */
export function parseAttrs(buf: Buffer, start: number, end: number): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  let off = start;
  while (off + L.nlattr.size <= end) {
    const len = getU16(buf, off + L.nlattr.fields.nla_len[0]);
    // NLA_F_NESTED / NLA_F_NET_BYTEORDER live in the top bits of the type.
    const type = getU16(buf, off + L.nlattr.fields.nla_type[0]) & 0x3fff;
    if (len < L.nlattr.size || off + len > end)
      throw malformed(`attribute ${type} of length ${len} overruns the message`);
    out.set(type, buf.subarray(off + L.nlattr.size, off + len));
    off += nlAlign(len);
  }
  return out;
}

/** Outcome of an NLMSG_ERROR: errno 0 is an ACK. `errno` is positive. */
export interface NlError {
  readonly errno: number;
  /** The kernel's own sentence (NLMSGERR_ATTR_MSG), when it sent one. */
  readonly message: string | undefined;
}

/** Decodes an NLMSG_ERROR message (ACK or error), extended-ACK text included. */
export function decodeError(msg: Buffer): NlError {
  const h = parseHeader(msg);
  const base = L.nlmsghdr.size;
  if (h.len < base + L.nlmsgerr.size) throw malformed('NLMSG_ERROR shorter than struct nlmsgerr');
  const errno = -getS32(msg, base + L.nlmsgerr.fields.error[0]) | 0;
  let message: string | undefined;
  if ((h.flags & K.NLM_F_ACK_TLVS) !== 0) {
    // Capped: only the request's header is echoed; otherwise the whole request.
    let tlv = base + L.nlmsgerr.size;
    if ((h.flags & K.NLM_F_CAPPED) === 0) {
      const echoed = getU32(msg, base + L.nlmsgerr.fields.msg[0]);
      tlv = base + L.nlmsgerr.fields.error[1] + nlAlign(Math.max(echoed, L.nlmsghdr.size));
    }
    if (tlv <= h.len) {
      const text = parseAttrs(msg, tlv, h.len).get(K.NLMSGERR_ATTR_MSG);
      if (text !== undefined) message = cString(text, 0, text.length) || undefined;
    }
  }
  return { errno, message };
}

/** The error an NLMSG_DONE carries (0 for a complete dump), positive. */
export function decodeDone(msg: Buffer): number {
  const h = parseHeader(msg);
  return h.len >= L.nlmsghdr.size + 4 ? -getS32(msg, L.nlmsghdr.size) | 0 : 0;
}

function cString(buf: Buffer, off: number, max: number): string {
  const end = buf.indexOf(0, off);
  return buf.toString('latin1', off, end < 0 || end > off + max ? off + max : end);
}

function need(buf: Buffer, size: number, what: string): void {
  if (buf.length < size) throw malformed(`${what} is ${buf.length} bytes, want at least ${size}`);
}

function familyOfAf(af: number): 4 | 6 | undefined {
  return af === K.AF_INET ? 4 : af === K.AF_INET6 ? 6 : undefined;
}

/** Reads an xfrm_address_t of the given family. */
function getAddress(buf: Buffer, off: number, family: 4 | 6): string {
  const bytes = family === 4 ? 4 : 16;
  let v = 0n;
  for (let i = 0; i < bytes; i++) v = (v << 8n) | BigInt(buf[off + i] ?? 0);
  return formatIP(family, v);
}

function getSelector(buf: Buffer, off: number, fallback: 4 | 6): XfrmSelector {
  const f = L.xfrm_selector.fields;
  const family = familyOfAf(getU16(buf, off + f.family[0])) ?? fallback;
  const sel: XfrmSelector = {
    src: `${getAddress(buf, off + f.saddr[0], family)}/${buf[off + f.prefixlen_s[0]] ?? 0}`,
    dst: `${getAddress(buf, off + f.daddr[0], family)}/${buf[off + f.prefixlen_d[0]] ?? 0}`,
  };
  const proto = buf[off + f.proto[0]] ?? 0;
  const sport = buf.readUInt16BE(off + f.sport[0]);
  const dport = buf.readUInt16BE(off + f.dport[0]);
  const ifindex = getU32(buf, off + f.ifindex[0]);
  return {
    ...sel,
    ...(proto !== 0 ? { proto } : {}),
    ...(sport !== 0 ? { sport } : {}),
    ...(dport !== 0 ? { dport } : {}),
    ...(ifindex !== 0 ? { ifindex } : {}),
  };
}

const XFRM_INF = 0xffff_ffff_ffff_ffffn;

function getLifetime(buf: Buffer, off: number): XfrmLifetime {
  const f = L.xfrm_lifetime_cfg.fields;
  const lim = (field: keyof typeof f): bigint | undefined => {
    const v = getU64(buf, off + f[field][0]);
    return v === XFRM_INF ? undefined : v;
  };
  const secs = (field: keyof typeof f): bigint | undefined => {
    const v = getU64(buf, off + f[field][0]);
    return v === 0n || v === XFRM_INF ? undefined : v;
  };
  const all: XfrmLifetime = {
    softBytes: lim('soft_byte_limit'),
    hardBytes: lim('hard_byte_limit'),
    softPackets: lim('soft_packet_limit'),
    hardPackets: lim('hard_packet_limit'),
    softAddSeconds: secs('soft_add_expires_seconds'),
    hardAddSeconds: secs('hard_add_expires_seconds'),
    softUseSeconds: secs('soft_use_expires_seconds'),
    hardUseSeconds: secs('hard_use_expires_seconds'),
  };
  // Only the limits that are set, so an unlimited lifetime reads back as {}.
  return Object.fromEntries(Object.entries(all).filter(([, v]) => v !== undefined)) as XfrmLifetime;
}

function getCurrent(buf: Buffer, off: number): XfrmCurrent {
  const f = L.xfrm_lifetime_cur.fields;
  return {
    bytes: getU64(buf, off + f.bytes[0]),
    packets: getU64(buf, off + f.packets[0]),
    addTime: getU64(buf, off + f.add_time[0]),
    useTime: getU64(buf, off + f.use_time[0]),
  };
}

function getMark(attr: Buffer | undefined): XfrmMark | undefined {
  if (attr === undefined) return undefined;
  need(attr, L.xfrm_mark.size, 'XFRMA_MARK');
  return { value: getU32(attr, L.xfrm_mark.fields.v[0]), mask: getU32(attr, L.xfrm_mark.fields.m[0]) };
}

function getU32Attr(attr: Buffer | undefined, what: string): number | undefined {
  if (attr === undefined) return undefined;
  need(attr, 4, what);
  return getU32(attr, 0);
}

function modeName(n: number): 'transport' | 'tunnel' | number {
  return n === K.XFRM_MODE_TUNNEL ? 'tunnel' : n === K.XFRM_MODE_TRANSPORT ? 'transport' : n;
}

/** Decodes an XFRM_MSG_NEWSA (or UPDSA) message: a get reply or one dump entry. */
export function decodeState(msg: Buffer): XfrmState {
  const h = parseHeader(msg);
  // UPDSA has the same layout (kernel notifications use it).
  if (h.type !== K.XFRM_MSG_NEWSA && h.type !== K.XFRM_MSG_UPDSA)
    throw malformed(`expected XFRM_MSG_NEWSA, got message type ${h.type}`);
  const base = L.nlmsghdr.size;
  if (h.len < base + L.xfrm_usersa_info.size) throw malformed('XFRM_MSG_NEWSA shorter than struct xfrm_usersa_info');
  const p = msg.subarray(base, base + L.xfrm_usersa_info.size);
  const f = L.xfrm_usersa_info.fields;
  const family = familyOfAf(getU16(p, f.family[0]));
  if (family === undefined) throw malformed(`state of unknown address family ${getU16(p, f.family[0])}`);
  const attrs = parseAttrs(msg, base + nlAlign(L.xfrm_usersa_info.size), h.len);
  const flags = p[f.flags[0]] ?? 0;

  let aead: XfrmState['aead'];
  const aeadAttr = attrs.get(K.XFRMA_ALG_AEAD);
  if (aeadAttr !== undefined) {
    const af = L.xfrm_algo_aead.fields;
    need(aeadAttr, L.xfrm_algo_aead.size, 'XFRMA_ALG_AEAD');
    const keyBytes = Math.ceil(getU32(aeadAttr, af.alg_key_len[0]) / 8);
    need(aeadAttr, L.xfrm_algo_aead.size + keyBytes, 'XFRMA_ALG_AEAD key');
    aead = {
      name: cString(aeadAttr, af.alg_name[0], L.xfrm_algo_aead.fields.alg_name[1]),
      icvBits: getU32(aeadAttr, af.alg_icv_len[0]),
      key: Uint8Array.from(aeadAttr.subarray(af.alg_key[0], af.alg_key[0] + keyBytes)),
    };
  }
  const otherAlgorithms: string[] = [];
  for (const t of [K.XFRMA_ALG_AUTH, K.XFRMA_ALG_CRYPT, K.XFRMA_ALG_COMP]) {
    const a = attrs.get(t);
    if (a !== undefined && a.length >= L.xfrm_algo.size)
      otherAlgorithms.push(cString(a, 0, L.xfrm_algo.fields.alg_name[1]));
  }

  let replayWindow = p[f.replay_window[0]] ?? 0;
  let outbound = 0n;
  let inbound = 0n;
  const esnAttr = attrs.get(K.XFRMA_REPLAY_ESN_VAL);
  const replayAttr = attrs.get(K.XFRMA_REPLAY_VAL);
  if (esnAttr !== undefined) {
    const ef = L.xfrm_replay_state_esn.fields;
    need(esnAttr, L.xfrm_replay_state_esn.size, 'XFRMA_REPLAY_ESN_VAL');
    replayWindow = getU32(esnAttr, ef.replay_window[0]);
    outbound = (BigInt(getU32(esnAttr, ef.oseq_hi[0])) << 32n) | BigInt(getU32(esnAttr, ef.oseq[0]));
    inbound = (BigInt(getU32(esnAttr, ef.seq_hi[0])) << 32n) | BigInt(getU32(esnAttr, ef.seq[0]));
  } else if (replayAttr !== undefined) {
    need(replayAttr, L.xfrm_replay_state.size, 'XFRMA_REPLAY_VAL');
    outbound = BigInt(getU32(replayAttr, L.xfrm_replay_state.fields.oseq[0]));
    inbound = BigInt(getU32(replayAttr, L.xfrm_replay_state.fields.seq[0]));
  }

  const setMark = getU32Attr(attrs.get(K.XFRMA_SET_MARK), 'XFRMA_SET_MARK');
  const setMarkMask = getU32Attr(attrs.get(K.XFRMA_SET_MARK_MASK), 'XFRMA_SET_MARK_MASK');
  const lastUsedAttr = attrs.get(K.XFRMA_LASTUSED);
  if (lastUsedAttr !== undefined) need(lastUsedAttr, 8, 'XFRMA_LASTUSED');
  const sf = L.xfrm_stats.fields;
  const stats = f.stats[0];
  const idOff = f.id[0];
  return {
    src: getAddress(p, f.saddr[0], family),
    dst: getAddress(p, idOff + L.xfrm_id.fields.daddr[0], family),
    spi: p.readUInt32BE(idOff + L.xfrm_id.fields.spi[0]),
    proto: p[idOff + L.xfrm_id.fields.proto[0]] ?? 0,
    family,
    mode: modeName(p[f.mode[0]] ?? 0),
    reqid: getU32(p, f.reqid[0]),
    flags,
    extraFlags: getU32Attr(attrs.get(K.XFRMA_SA_EXTRA_FLAGS), 'XFRMA_SA_EXTRA_FLAGS') ?? 0,
    esn: (flags & K.XFRM_STATE_ESN) !== 0,
    replayWindow,
    aead,
    otherAlgorithms,
    mark: getMark(attrs.get(K.XFRMA_MARK)),
    outputMark: setMark === undefined ? undefined : { value: setMark, mask: setMarkMask ?? 0xffffffff },
    selector: getSelector(p, f.sel[0], family),
    lifetime: getLifetime(p, f.lft[0]),
    current: getCurrent(p, f.curlft[0]),
    stats: {
      replayWindow: getU32(p, stats + sf.replay_window[0]),
      replay: getU32(p, stats + sf.replay[0]),
      integrityFailed: getU32(p, stats + sf.integrity_failed[0]),
    },
    sequence: { outbound, inbound },
    lastUsed: lastUsedAttr === undefined ? undefined : getU64(lastUsedAttr, 0),
  };
}

const DIRS: readonly XfrmDir[] = ['in', 'out', 'fwd'];

/** Decodes an XFRM_MSG_NEWPOLICY (or UPDPOLICY) message: a get reply or one dump entry. */
export function decodePolicy(msg: Buffer): XfrmPolicy {
  const h = parseHeader(msg);
  if (h.type !== K.XFRM_MSG_NEWPOLICY && h.type !== K.XFRM_MSG_UPDPOLICY)
    throw malformed(`expected XFRM_MSG_NEWPOLICY, got message type ${h.type}`);
  const base = L.nlmsghdr.size;
  if (h.len < base + L.xfrm_userpolicy_info.size)
    throw malformed('XFRM_MSG_NEWPOLICY shorter than struct xfrm_userpolicy_info');
  const p = msg.subarray(base, base + L.xfrm_userpolicy_info.size);
  const f = L.xfrm_userpolicy_info.fields;
  const attrs = parseAttrs(msg, base + nlAlign(L.xfrm_userpolicy_info.size), h.len);
  const dirNum = p[f.dir[0]] ?? 0;
  const dir = DIRS[dirNum];
  if (dir === undefined) throw malformed(`policy of unknown direction ${dirNum}`);
  const selFamily = familyOfAf(getU16(p, f.sel[0] + L.xfrm_selector.fields.family[0])) ?? 4;

  const templates: XfrmTemplate[] = [];
  const templateProtos: number[] = [];
  const tmplAttr = attrs.get(K.XFRMA_TMPL);
  if (tmplAttr !== undefined) {
    const size = L.xfrm_user_tmpl.size;
    const tf = L.xfrm_user_tmpl.fields;
    if (tmplAttr.length % size !== 0)
      throw malformed(`XFRMA_TMPL of ${tmplAttr.length} bytes is not a whole number of templates`);
    for (let off = 0; off < tmplAttr.length; off += size) {
      const family = familyOfAf(getU16(tmplAttr, off + tf.family[0])) ?? selFamily;
      const mode = tmplAttr[off + tf.mode[0]] ?? 0;
      templates.push({
        src: getAddress(tmplAttr, off + tf.saddr[0], family),
        dst: getAddress(tmplAttr, off + tf.id[0] + L.xfrm_id.fields.daddr[0], family),
        spi: tmplAttr.readUInt32BE(off + tf.id[0] + L.xfrm_id.fields.spi[0]),
        reqid: getU32(tmplAttr, off + tf.reqid[0]),
        // Modes other than tunnel/transport (BEET, route optimisation) occur only in foreign
        // policies, which sealnet never rewrites; they read as transport.
        mode: mode === K.XFRM_MODE_TUNNEL ? 'tunnel' : 'transport',
        optional: (tmplAttr[off + tf.optional[0]] ?? 0) !== 0,
      });
      templateProtos.push(tmplAttr[off + tf.id[0] + L.xfrm_id.fields.proto[0]] ?? 0);
    }
  }
  const typeAttr = attrs.get(K.XFRMA_POLICY_TYPE);
  const action = p[f.action[0]] ?? 0;
  return {
    selector: getSelector(p, f.sel[0], selFamily),
    dir,
    mark: getMark(attrs.get(K.XFRMA_MARK)),
    action: action === K.XFRM_POLICY_BLOCK ? 'block' : 'allow',
    priority: getU32(p, f.priority[0]),
    templates,
    templateProtos,
    lifetime: getLifetime(p, f.lft[0]),
    index: getU32(p, f.index[0]),
    type: typeAttr !== undefined && typeAttr.length >= 1 ? (typeAttr[0] ?? 0) : K.XFRM_POLICY_TYPE_MAIN,
    ifId: getU32Attr(attrs.get(K.XFRMA_IF_ID), 'XFRMA_IF_ID') ?? 0,
    current: getCurrent(p, f.curlft[0]),
  };
}
