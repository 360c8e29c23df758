/**
 * NETLINK_XFRM message encoding: every request sealnet sends, built byte by byte from the
 * layout table in `xfrm-layout.ts` (checked against the kernel headers by a unit test) with the
 * netlink framing of `xfrm-wire.ts`. Pure: no I/O, no clock. The native addon only moves the
 * resulting buffers; replies are decoded in `xfrm-decode.ts`.
 *
 * Byte order: netlink and XFRM integers are host order, except SPIs and selector ports, which
 * are network order (`__be32` / `__be16` in the headers).
 */
import { parseCidr, parseIP } from '../common/ip.js';
import { SealnetError } from '../common/errors.js';
import type {
  XfrmDir,
  XfrmLifetime,
  XfrmMark,
  XfrmMode,
  XfrmPolicyId,
  XfrmPolicySpec,
  XfrmSelector,
  XfrmStateId,
  XfrmStateSpec,
  XfrmTemplate,
} from '../tunnels/ports/xfrm-types.js';
import { AEAD_ICV_BITS, AEAD_RFC4106, AEAD_SALT_BYTES } from '../tunnels/ports/xfrm-types.js';
import { K, LAYOUT } from './xfrm-layout.js';
import { buildMessage, putU16, putU32, putU64, type NlAttr } from './xfrm-wire.js';

const L = LAYOUT;

// --- addresses, selectors, lifetimes ---------------------------------------------------------

/** Address family of an IP address text, or undefined. */
export function familyOf(address: string): 4 | 6 | undefined {
  return parseIP(address)?.family;
}

/** Kernel AF_* number of a family. */
export function afOf(family: 4 | 6): number {
  return family === 4 ? K.AF_INET : K.AF_INET6;
}

function invalid(message: string): SealnetError {
  return new SealnetError('CONFIG_INVALID', message);
}

/** Writes an address into an xfrm_address_t (16 bytes; IPv4 in the first 4, rest zero). */
function putAddress(buf: Buffer, off: number, address: string, family: 4 | 6, what: string): void {
  const ip = parseIP(address);
  if (ip === undefined || ip.family !== family) throw invalid(`${what} ${address} is not an IPv${family} address`);
  const bytes = family === 4 ? 4 : 16;
  let v = ip.value;
  for (let i = bytes - 1; i >= 0; i--) {
    buf[off + i] = Number(v & 0xffn);
    v >>= 8n;
  }
}

/** Family shared by both prefixes of a selector. */
export function selectorFamily(sel: XfrmSelector): 4 | 6 {
  const s = parseCidr(sel.src, { hostBits: 'clear' });
  const d = parseCidr(sel.dst, { hostBits: 'clear' });
  if (s === undefined || d === undefined) throw invalid(`selector ${sel.src} -> ${sel.dst} is not two CIDRs`);
  if (s.family !== d.family) throw invalid(`selector ${sel.src} -> ${sel.dst} mixes address families`);
  return s.family;
}

/** The any-to-any selector of a family. */
export function anySelector(family: 4 | 6): XfrmSelector {
  return family === 4 ? { src: '0.0.0.0/0', dst: '0.0.0.0/0' } : { src: '::/0', dst: '::/0' };
}

function checkPort(port: number | undefined, what: string): number {
  const p = port ?? 0;
  if (!Number.isInteger(p) || p < 0 || p > 0xffff) throw invalid(`${what} ${String(port)} is not a port number`);
  return p;
}

/** Writes an xfrm_selector at `off`. */
function putSelector(buf: Buffer, off: number, sel: XfrmSelector): void {
  const family = selectorFamily(sel);
  const s = parseCidr(sel.src, { hostBits: 'clear' })!;
  const d = parseCidr(sel.dst, { hostBits: 'clear' })!;
  const sf = (f: keyof typeof L.xfrm_selector.fields): number => off + L.xfrm_selector.fields[f][0];
  putAddress(buf, sf('daddr'), sel.dst.slice(0, sel.dst.indexOf('/')), family, 'selector destination');
  putAddress(buf, sf('saddr'), sel.src.slice(0, sel.src.indexOf('/')), family, 'selector source');
  const dport = checkPort(sel.dport, 'selector destination port');
  const sport = checkPort(sel.sport, 'selector source port');
  buf.writeUInt16BE(dport, sf('dport'));
  buf.writeUInt16BE(dport === 0 ? 0 : 0xffff, sf('dport_mask'));
  buf.writeUInt16BE(sport, sf('sport'));
  buf.writeUInt16BE(sport === 0 ? 0 : 0xffff, sf('sport_mask'));
  putU16(buf, sf('family'), afOf(family));
  buf[sf('prefixlen_d')] = d.prefixLength;
  buf[sf('prefixlen_s')] = s.prefixLength;
  const proto = sel.proto ?? 0;
  if (!Number.isInteger(proto) || proto < 0 || proto > 255) throw invalid(`selector protocol ${proto} is not 0..255`);
  buf[sf('proto')] = proto;
  const ifindex = sel.ifindex ?? 0;
  if (!Number.isInteger(ifindex) || ifindex < 0 || ifindex > 0x7fffffff)
    throw invalid(`selector ifindex ${ifindex} is invalid`);
  putU32(buf, sf('ifindex'), ifindex);
  putU32(buf, sf('user'), 0);
}

const XFRM_INF = 0xffff_ffff_ffff_ffffn;

/** Writes an xfrm_lifetime_cfg; an absent limit is XFRM_INF, as iproute2 writes it. */
function putLifetime(buf: Buffer, off: number, lt: XfrmLifetime | undefined): void {
  const f = LAYOUT.xfrm_lifetime_cfg.fields;
  const put = (field: keyof typeof f, v: bigint | undefined): void => {
    if (v !== undefined && (v < 0n || v > XFRM_INF)) throw invalid(`lifetime ${field} ${v} is out of range`);
    putU64(buf, off + f[field][0], v ?? XFRM_INF);
  };
  put('soft_byte_limit', lt?.softBytes);
  put('hard_byte_limit', lt?.hardBytes);
  put('soft_packet_limit', lt?.softPackets);
  put('hard_packet_limit', lt?.hardPackets);
  // Time limits: 0 means "none" to the kernel (iproute2 leaves them 0).
  putU64(buf, off + f.soft_add_expires_seconds[0], lt?.softAddSeconds ?? 0n);
  putU64(buf, off + f.hard_add_expires_seconds[0], lt?.hardAddSeconds ?? 0n);
  putU64(buf, off + f.soft_use_expires_seconds[0], lt?.softUseSeconds ?? 0n);
  putU64(buf, off + f.hard_use_expires_seconds[0], lt?.hardUseSeconds ?? 0n);
}

function checkU32(v: number, what: string): number {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff)
    throw invalid(`${what} ${String(v)} is not a 32-bit unsigned integer`);
  return v;
}

function checkSpi(spi: number): number {
  // SPIs 1-255 are reserved by IANA (RFC 4303 section 2.1); 0 means "none".
  if (!Number.isInteger(spi) || spi < 256 || spi > 0xffffffff)
    throw invalid(`SPI ${String(spi)} is not in 256..0xffffffff`);
  return spi;
}

/** Mode number of a mode name. */
export function modeNumber(mode: XfrmMode): number {
  return mode === 'tunnel' ? K.XFRM_MODE_TUNNEL : K.XFRM_MODE_TRANSPORT;
}

/** Direction number of a direction name. */
export function dirNumber(dir: XfrmDir): number {
  return dir === 'in' ? K.XFRM_POLICY_IN : dir === 'out' ? K.XFRM_POLICY_OUT : K.XFRM_POLICY_FWD;
}

// --- attributes ------------------------------------------------------------------------------

function u32Attr(type: number, v: number): NlAttr {
  const data = Buffer.alloc(4);
  putU32(data, 0, v);
  return { type, data };
}

function markAttr(mark: XfrmMark): NlAttr {
  const data = Buffer.alloc(L.xfrm_mark.size);
  putU32(data, L.xfrm_mark.fields.v[0], checkU32(mark.value, 'mark value'));
  putU32(data, L.xfrm_mark.fields.m[0], checkU32(mark.mask, 'mark mask'));
  return { type: K.XFRMA_MARK, data };
}

/** A mark of all zeros is "no mark" to the kernel; it is not sent. */
function markAttrs(mark: XfrmMark | undefined): NlAttr[] {
  return mark === undefined || (mark.value === 0 && mark.mask === 0) ? [] : [markAttr(mark)];
}

function aeadAttr(spec: XfrmStateSpec): NlAttr {
  const { aead } = spec;
  if (aead.name !== AEAD_RFC4106) throw invalid(`AEAD ${String(aead.name)} is not supported (only ${AEAD_RFC4106})`);
  if (aead.keyBits !== 128 && aead.keyBits !== 256)
    throw invalid(`AES-GCM key size ${String(aead.keyBits)} bits is not 128 or 256`);
  if (aead.icvBits !== AEAD_ICV_BITS) throw invalid(`AES-GCM ICV ${String(aead.icvBits)} bits is not ${AEAD_ICV_BITS}`);
  const keyBytes = aead.keyBits / 8 + AEAD_SALT_BYTES;
  if (aead.key.length !== keyBytes) {
    throw invalid(
      `${AEAD_RFC4106} with a ${aead.keyBits}-bit key needs ${keyBytes} key bytes (key and 4-byte salt), got ${aead.key.length}`,
    );
  }
  const f = L.xfrm_algo_aead.fields;
  const data = Buffer.alloc(L.xfrm_algo_aead.size + keyBytes);
  data.write(aead.name, f.alg_name[0], 'latin1');
  putU32(data, f.alg_key_len[0], keyBytes * 8);
  putU32(data, f.alg_icv_len[0], aead.icvBits);
  Buffer.from(aead.key.buffer, aead.key.byteOffset, aead.key.length).copy(data, f.alg_key[0]);
  return { type: K.XFRMA_ALG_AEAD, data };
}

/** Replay state: ESN, or a window too large for the u8 field of xfrm_usersa_info. */
function replayEsnAttr(window: number): NlAttr {
  const f = L.xfrm_replay_state_esn.fields;
  const bmpLen = Math.max(1, Math.ceil(window / 32));
  const data = Buffer.alloc(L.xfrm_replay_state_esn.size + bmpLen * 4);
  putU32(data, f.bmp_len[0], bmpLen);
  putU32(data, f.replay_window[0], window);
  return { type: K.XFRMA_REPLAY_ESN_VAL, data };
}

/** Largest replay window the u8 field (and its 32-bit bitmap) holds without an ESN attribute. */
const LEGACY_REPLAY_MAX = 32;

/** XFRM_MSG_NEWSA (or UPDSA with `update`) for an ESP state. */
export function encodeNewState(spec: XfrmStateSpec, opts: { seq: number; update?: boolean }): Buffer {
  const family = familyOf(spec.dst);
  if (family === undefined) throw invalid(`state destination ${spec.dst} is not an IP address`);
  if (familyOf(spec.src) !== family)
    throw invalid(`state source ${spec.src} is not an IPv${family} address like ${spec.dst}`);
  checkSpi(spec.spi);
  checkU32(spec.reqid, 'reqid');
  const w = spec.replayWindow;
  if (!Number.isInteger(w) || w < 0 || w > K.XFRMA_REPLAY_ESN_MAX)
    throw invalid(`replay window ${String(w)} is not 0..${K.XFRMA_REPLAY_ESN_MAX}`);
  if (spec.esn && w === 0) throw invalid('ESN needs a replay window above 0 (the kernel refuses ESN without one)');

  const p = Buffer.alloc(L.xfrm_usersa_info.size);
  const f = L.xfrm_usersa_info.fields;
  // A tunnel-mode state without a selector gets the all-zero AF_UNSPEC one and the flag
  // XFRM_STATE_AF_UNSPEC, as strongSwan writes it (without the flag the kernel's
  // copy_from_user_state() fills in the outer family): the kernel then picks the inner mode per
  // packet, so one IPv6 SA carries IPv4 pods too. With a selector of the outer family
  // (iproute2's default) xfrm_state_look_at() skips the state for inner packets of the other
  // family, and the SPI-pinned template fails with EEXIST (counted as XfrmOutPolError).
  const anyFamily = spec.selector === undefined && spec.mode === 'tunnel';
  if (spec.selector !== undefined) putSelector(p, f.sel[0], spec.selector);
  else if (!anyFamily) putSelector(p, f.sel[0], anySelector(family));
  putAddress(p, f.id[0] + L.xfrm_id.fields.daddr[0], spec.dst, family, 'state destination');
  p.writeUInt32BE(spec.spi, f.id[0] + L.xfrm_id.fields.spi[0]);
  p[f.id[0] + L.xfrm_id.fields.proto[0]] = K.IPPROTO_ESP;
  putAddress(p, f.saddr[0], spec.src, family, 'state source');
  putLifetime(p, f.lft[0], spec.lifetime);
  putU32(p, f.reqid[0], spec.reqid);
  putU16(p, f.family[0], afOf(family));
  p[f.mode[0]] = modeNumber(spec.mode);
  const esnAttr = spec.esn || w > LEGACY_REPLAY_MAX;
  // With XFRMA_REPLAY_ESN_VAL the kernel requires the u8 field to be 0.
  p[f.replay_window[0]] = esnAttr ? 0 : w;
  p[f.flags[0]] = (spec.esn ? K.XFRM_STATE_ESN : 0) | (anyFamily ? K.XFRM_STATE_AF_UNSPEC : 0);

  const attrs: NlAttr[] = [aeadAttr(spec)];
  if (esnAttr) attrs.push(replayEsnAttr(w));
  attrs.push(...markAttrs(spec.mark));
  if (spec.outputMark !== undefined) {
    attrs.push(u32Attr(K.XFRMA_SET_MARK, checkU32(spec.outputMark.value, 'output mark')));
    attrs.push(u32Attr(K.XFRMA_SET_MARK_MASK, checkU32(spec.outputMark.mask, 'output mark mask')));
  }
  if (spec.extraFlags !== undefined && spec.extraFlags !== 0)
    attrs.push(u32Attr(K.XFRMA_SA_EXTRA_FLAGS, checkU32(spec.extraFlags, 'extra flags')));
  const msg = buildMessage({
    type: opts.update === true ? K.XFRM_MSG_UPDSA : K.XFRM_MSG_NEWSA,
    flags: K.NLM_F_REQUEST | K.NLM_F_ACK,
    seq: opts.seq,
    payload: p,
    attrs,
  });
  // The attribute copies held the key; the message is now the only copy (the caller wipes it).
  for (const a of attrs) a.data.fill(0);
  return msg;
}

/** XFRM_MSG_GETSA or DELSA for one state (ESP). */
export function encodeStateId(id: XfrmStateId, opts: { seq: number; op: 'get' | 'delete' }): Buffer {
  const family = familyOf(id.dst);
  if (family === undefined) throw invalid(`state destination ${id.dst} is not an IP address`);
  checkSpi(id.spi);
  const p = Buffer.alloc(L.xfrm_usersa_id.size);
  const f = L.xfrm_usersa_id.fields;
  putAddress(p, f.daddr[0], id.dst, family, 'state destination');
  p.writeUInt32BE(id.spi, f.spi[0]);
  putU16(p, f.family[0], afOf(family));
  p[f.proto[0]] = K.IPPROTO_ESP;
  return buildMessage({
    type: opts.op === 'get' ? K.XFRM_MSG_GETSA : K.XFRM_MSG_DELSA,
    flags: K.NLM_F_REQUEST | K.NLM_F_ACK,
    seq: opts.seq,
    payload: p,
    attrs: markAttrs(id.mark),
  });
}

/** A dump request (XFRM_MSG_GETSA or GETPOLICY with NLM_F_DUMP): a bare header, as iproute2 sends. */
export function encodeDump(what: 'states' | 'policies', seq: number): Buffer {
  return buildMessage({
    type: what === 'states' ? K.XFRM_MSG_GETSA : K.XFRM_MSG_GETPOLICY,
    flags: K.NLM_F_REQUEST | K.NLM_F_DUMP,
    seq,
    payload: Buffer.alloc(0),
  });
}

function templateBytes(t: XfrmTemplate, innerFamily: 4 | 6): Buffer {
  const family = familyOf(t.dst);
  if (family === undefined) throw invalid(`template destination ${t.dst} is not an IP address`);
  if (familyOf(t.src) !== family)
    throw invalid(`template source ${t.src} is not an IPv${family} address like ${t.dst}`);
  if (t.mode !== 'tunnel' && family !== innerFamily)
    throw invalid('a transport-mode template must have the family of the selector');
  if (t.spi !== 0) checkSpi(t.spi);
  const b = Buffer.alloc(L.xfrm_user_tmpl.size);
  const f = L.xfrm_user_tmpl.fields;
  putAddress(b, f.id[0] + L.xfrm_id.fields.daddr[0], t.dst, family, 'template destination');
  b.writeUInt32BE(t.spi, f.id[0] + L.xfrm_id.fields.spi[0]);
  b[f.id[0] + L.xfrm_id.fields.proto[0]] = K.IPPROTO_ESP;
  putU16(b, f.family[0], afOf(family));
  putAddress(b, f.saddr[0], t.src, family, 'template source');
  putU32(b, f.reqid[0], checkU32(t.reqid, 'template reqid'));
  b[f.mode[0]] = modeNumber(t.mode);
  b[f.share[0]] = K.XFRM_SHARE_ANY;
  b[f.optional[0]] = t.optional === true ? 1 : 0;
  // All algorithms allowed (~0), as iproute2 does.
  putU32(b, f.aalgos[0], 0xffffffff);
  putU32(b, f.ealgos[0], 0xffffffff);
  putU32(b, f.calgos[0], 0xffffffff);
  return b;
}

/** XFRM_MSG_NEWPOLICY (or UPDPOLICY with `update`). */
export function encodeNewPolicy(spec: XfrmPolicySpec, opts: { seq: number; update?: boolean }): Buffer {
  const family = selectorFamily(spec.selector);
  if (spec.action === 'block' && spec.templates.length > 0) throw invalid('a block policy has no templates');
  if (spec.action === 'allow' && spec.templates.length === 0)
    throw invalid('an allow policy without templates would exempt traffic from IPsec');
  if (spec.templates.length > 6) throw invalid('more than 6 templates (XFRM_MAX_DEPTH)');
  const p = Buffer.alloc(L.xfrm_userpolicy_info.size);
  const f = L.xfrm_userpolicy_info.fields;
  putSelector(p, f.sel[0], spec.selector);
  putLifetime(p, f.lft[0], spec.lifetime);
  putU32(p, f.priority[0], checkU32(spec.priority, 'policy priority'));
  putU32(p, f.index[0], 0);
  p[f.dir[0]] = dirNumber(spec.dir);
  p[f.action[0]] = spec.action === 'allow' ? K.XFRM_POLICY_ALLOW : K.XFRM_POLICY_BLOCK;
  p[f.flags[0]] = 0;
  p[f.share[0]] = K.XFRM_SHARE_ANY;
  const attrs: NlAttr[] = [];
  if (spec.templates.length > 0) {
    attrs.push({ type: K.XFRMA_TMPL, data: Buffer.concat(spec.templates.map((t) => templateBytes(t, family))) });
  }
  attrs.push(...markAttrs(spec.mark));
  return buildMessage({
    type: opts.update === true ? K.XFRM_MSG_UPDPOLICY : K.XFRM_MSG_NEWPOLICY,
    flags: K.NLM_F_REQUEST | K.NLM_F_ACK,
    seq: opts.seq,
    payload: p,
    attrs,
  });
}

/** XFRM_MSG_GETPOLICY or DELPOLICY by selector, direction and mark (main policy type). */
export function encodePolicyId(id: XfrmPolicyId, opts: { seq: number; op: 'get' | 'delete' }): Buffer {
  const p = Buffer.alloc(L.xfrm_userpolicy_id.size);
  const f = L.xfrm_userpolicy_id.fields;
  putSelector(p, f.sel[0], id.selector);
  putU32(p, f.index[0], 0);
  p[f.dir[0]] = dirNumber(id.dir);
  return buildMessage({
    type: opts.op === 'get' ? K.XFRM_MSG_GETPOLICY : K.XFRM_MSG_DELPOLICY,
    flags: K.NLM_F_REQUEST | K.NLM_F_ACK,
    seq: opts.seq,
    payload: p,
    attrs: markAttrs(id.mark),
  });
}

/** What an ESP capability probe asks the kernel to construct. */
export type EspProbeKind = 'aead' | 'cbc';

/**
 * A capability probe: XFRM_MSG_UPDSA of an ESP state that cannot exist (destination `0.0.0.0`
 * / `::`). The kernel builds the whole state — algorithm lookup, then the ESP type — before it
 * looks for the state to update, so the answer tells what is missing without ever installing
 * anything: ENOSYS = algorithm missing, EPROTONOSUPPORT = no ESP, ESRCH = everything present.
 * `aead` asks for rfc4106(gcm(aes)) (what sealnet installs); `cbc` for cbc(aes), which every
 * ESP-capable kernel has (XFRM_ESP selects it), to tell "no ESP" from "no GCM".
 */
export function encodeEspProbe(opts: {
  kind: EspProbeKind;
  family: 4 | 6;
  spi: number;
  reqid: number;
  seq: number;
}): Buffer {
  const any = opts.family === 4 ? '0.0.0.0' : '::';
  if (opts.kind === 'aead') {
    return encodeNewState(
      {
        src: any,
        dst: any,
        spi: opts.spi,
        mode: 'tunnel',
        reqid: opts.reqid,
        aead: { name: AEAD_RFC4106, keyBits: 128, icvBits: AEAD_ICV_BITS, key: new Uint8Array(16 + AEAD_SALT_BYTES) },
        esn: true,
        replayWindow: 32,
      },
      { seq: opts.seq, update: true },
    );
  }
  const p = Buffer.alloc(L.xfrm_usersa_info.size);
  const f = L.xfrm_usersa_info.fields;
  putSelector(p, f.sel[0], anySelector(opts.family));
  p.writeUInt32BE(checkSpi(opts.spi), f.id[0] + L.xfrm_id.fields.spi[0]);
  p[f.id[0] + L.xfrm_id.fields.proto[0]] = K.IPPROTO_ESP;
  putLifetime(p, f.lft[0], undefined);
  putU32(p, f.reqid[0], opts.reqid);
  putU16(p, f.family[0], afOf(opts.family));
  p[f.mode[0]] = K.XFRM_MODE_TUNNEL;
  const af = L.xfrm_algo.fields;
  const algo = Buffer.alloc(L.xfrm_algo.size + 16);
  algo.write('cbc(aes)', af.alg_name[0], 'latin1');
  putU32(algo, af.alg_key_len[0], 128);
  return buildMessage({
    type: K.XFRM_MSG_UPDSA,
    flags: K.NLM_F_REQUEST | K.NLM_F_ACK,
    seq: opts.seq,
    payload: p,
    attrs: [{ type: K.XFRMA_ALG_CRYPT, data: algo }],
  });
}
