/**
 * Message encoding and decoding. Offsets come from the layout table (itself checked against
 * the kernel headers in xfrm-layout.test.ts); here: byte placement of what sealnet sets,
 * byte order, attribute framing, and a round trip through the decoder (a NEWSA / NEWPOLICY
 * request has exactly the layout of a dump entry).
 */
import { describe, expect, it } from '@jest/globals';
import type { XfrmPolicySpec, XfrmStateSpec } from '../tunnels/ports/xfrm-types.js';
import { decodeDone, decodeError, decodePolicy, decodeState, parseAttrs, parseHeader } from './xfrm-decode.js';
import { K, LAYOUT } from './xfrm-layout.js';
import {
  encodeDump,
  encodeEspProbe,
  encodeNewPolicy,
  encodeNewState,
  encodePolicyId,
  encodeStateId,
} from './xfrm-msg.js';
import { buildMessage, getU16, getU32, nlAlign, putU32 } from './xfrm-wire.js';

const HDR = LAYOUT.nlmsghdr.size;
const SA = LAYOUT.xfrm_usersa_info.fields;
const key20 = Uint8Array.from({ length: 20 }, (_, i) => i + 1);

const state = (over: Partial<XfrmStateSpec> = {}): XfrmStateSpec => ({
  src: '198.18.0.1',
  dst: '198.18.0.2',
  spi: 0x51abcdef,
  mode: 'tunnel',
  reqid: 0x5188,
  aead: { name: 'rfc4106(gcm(aes))', keyBits: 128, icvBits: 128, key: key20 },
  esn: true,
  replayWindow: 1024,
  ...over,
});

const policy = (over: Partial<XfrmPolicySpec> = {}): XfrmPolicySpec => ({
  selector: { src: '100.64.1.0/24', dst: '100.64.2.0/24' },
  dir: 'out',
  action: 'allow',
  priority: 2,
  templates: [{ src: '198.18.0.1', dst: '198.18.0.2', spi: 0x51000001, reqid: 0x5188, mode: 'tunnel' }],
  ...over,
});

function attrsOf(msg: Buffer, fixed: number): Map<number, Buffer> {
  return parseAttrs(msg, HDR + nlAlign(fixed), parseHeader(msg).len);
}

describe('netlink framing', () => {
  it('writes the header and pads every attribute to 4 bytes', () => {
    const msg = buildMessage({
      type: 16,
      flags: 5,
      seq: 42,
      payload: Buffer.from([1, 2, 3]),
      attrs: [
        { type: 7, data: Buffer.from([9]) },
        { type: 8, data: Buffer.alloc(4, 0xee) },
      ],
    });
    expect(msg.length).toBe(16 + 4 + 8 + 8);
    expect(parseHeader(msg)).toEqual({ len: msg.length, type: 16, flags: 5, seq: 42, pid: 0 });
    const attrs = parseAttrs(msg, 20, msg.length);
    expect([...attrs.keys()]).toEqual([7, 8]);
    expect([...attrs.get(7)!]).toEqual([9]);
    expect(getU16(msg, 20)).toBe(5); // nla_len counts the header, not the padding
  });

  it('rejects truncated messages and overrunning attributes', () => {
    expect(() => parseHeader(Buffer.alloc(8))).toThrow(expect.objectContaining({ code: 'NETLINK_FAILED' }));
    const msg = buildMessage({
      type: 16,
      flags: 0,
      seq: 1,
      payload: Buffer.alloc(0),
      attrs: [{ type: 1, data: Buffer.alloc(8) }],
    });
    putU32(msg, 0, 200);
    expect(() => parseHeader(msg)).toThrow(/nlmsg_len 200/);
    putU32(msg, 0, msg.length);
    msg.writeUInt16LE(40, 16);
    expect(() => parseAttrs(msg, 16, msg.length)).toThrow(/overruns/);
  });
});

describe('XFRM_MSG_NEWSA', () => {
  it('places SPI (network order), addresses, family, mode, reqid, ESN and the AEAD key', () => {
    const msg = encodeNewState(state({ outputMark: { value: 0x5188, mask: 0xffffffff }, extraFlags: 2 }), { seq: 9 });
    const h = parseHeader(msg);
    expect(h).toMatchObject({ type: K.XFRM_MSG_NEWSA, flags: K.NLM_F_REQUEST | K.NLM_F_ACK, seq: 9 });
    const p = msg.subarray(HDR);
    const id = SA.id[0];
    expect(p.subarray(id, id + 4)).toEqual(Buffer.from([198, 18, 0, 2]));
    expect(p.readUInt32BE(id + LAYOUT.xfrm_id.fields.spi[0])).toBe(0x51abcdef);
    expect(p[id + LAYOUT.xfrm_id.fields.proto[0]]).toBe(50);
    expect(p.subarray(SA.saddr[0], SA.saddr[0] + 4)).toEqual(Buffer.from([198, 18, 0, 1]));
    expect(getU16(p, SA.family[0])).toBe(2);
    expect(p[SA.mode[0]]).toBe(1);
    expect(getU32(p, SA.reqid[0])).toBe(0x5188);
    expect(p[SA.replay_window[0]]).toBe(0); // must be 0 when XFRMA_REPLAY_ESN_VAL is sent
    expect(p[SA.flags[0]]).toBe(K.XFRM_STATE_ESN | K.XFRM_STATE_AF_UNSPEC);
    // Unlimited lifetime: all-ones byte/packet limits, zero time limits (as iproute2).
    expect(p.readBigUInt64LE(SA.lft[0])).toBe(0xffffffffffffffffn);
    expect(p.readBigUInt64LE(SA.lft[0] + 32)).toBe(0n);

    const attrs = attrsOf(msg, LAYOUT.xfrm_usersa_info.size);
    const aead = attrs.get(K.XFRMA_ALG_AEAD)!;
    expect(aead.toString('latin1', 0, 17)).toBe('rfc4106(gcm(aes))');
    expect(aead[17]).toBe(0);
    expect(getU32(aead, 64)).toBe(160); // key bits include the 32-bit salt
    expect(getU32(aead, 68)).toBe(128);
    expect([...aead.subarray(72)]).toEqual([...key20]);
    const esn = attrs.get(K.XFRMA_REPLAY_ESN_VAL)!;
    expect(getU32(esn, 0)).toBe(32); // bmp_len: 1024 bits in 32-bit words
    expect(getU32(esn, 20)).toBe(1024);
    expect(esn.length).toBe(24 + 32 * 4);
    expect(getU32(attrs.get(K.XFRMA_SET_MARK)!, 0)).toBe(0x5188);
    expect(getU32(attrs.get(K.XFRMA_SET_MARK_MASK)!, 0)).toBe(0xffffffff);
    expect(getU32(attrs.get(K.XFRMA_SA_EXTRA_FLAGS)!, 0)).toBe(2);
    expect(attrs.has(K.XFRMA_MARK)).toBe(false);
  });

  it('round-trips through the decoder (IPv4 and IPv6, 128 and 256 bit, marks)', () => {
    const key36 = Uint8Array.from({ length: 36 }, (_, i) => 255 - i);
    for (const spec of [
      state({ mark: { value: 7, mask: 0xff } }),
      state({
        src: '2001:db8::1',
        dst: '2001:db8::2',
        aead: { name: 'rfc4106(gcm(aes))', keyBits: 256, icvBits: 128, key: key36 },
        outputMark: { value: 1, mask: 3 },
      }),
    ]) {
      const s = decodeState(encodeNewState(spec, { seq: 1 }));
      expect(s).toMatchObject({
        src: spec.src,
        dst: spec.dst,
        spi: spec.spi,
        proto: 50,
        mode: 'tunnel',
        reqid: spec.reqid,
        esn: true,
        replayWindow: 1024,
        mark: spec.mark,
        outputMark: spec.outputMark,
        lifetime: {},
        sequence: { outbound: 0n, inbound: 0n },
      });
      expect(s.aead?.name).toBe('rfc4106(gcm(aes))');
      expect([...(s.aead?.key ?? [])]).toEqual([...spec.aead.key]);
      expect(s.selector).toEqual(
        spec.dst.includes(':') ? { src: '::/0', dst: '::/0' } : { src: '0.0.0.0/0', dst: '0.0.0.0/0' },
      );
    }
  });

  it('gives a tunnel-mode state without a selector the AF_UNSPEC one (either inner family), a transport-mode state its outer family', () => {
    const SEL = LAYOUT.xfrm_selector.fields;
    for (const [spec, family] of [
      [state(), 0],
      [state({ src: 'fd00:5ea1::1', dst: 'fd00:5ea1::2' }), 0],
      [state({ mode: 'transport' }), 2],
      [state({ selector: { src: '100.64.1.0/24', dst: '100.64.2.0/24' } }), 2],
    ] as const) {
      const p = encodeNewState(spec, { seq: 1 }).subarray(HDR);
      // An IPv4 pod packet through an IPv6 tunnel needs sel.family 0: the kernel (xfrm_state_look_at)
      // skips a state whose selector family differs from the packet's.
      expect([spec.src, spec.mode, getU16(p, SA.sel[0] + SEL.family[0])]).toEqual([spec.src, spec.mode, family]);
      // Without XFRM_STATE_AF_UNSPEC the kernel (copy_from_user_state) sets sel.family to the outer one.
      expect([spec.src, spec.mode, (p[SA.flags[0]]! & K.XFRM_STATE_AF_UNSPEC) !== 0]).toEqual([
        spec.src,
        spec.mode,
        family === 0,
      ]);
    }
  });

  it('uses the u8 replay window without ESN up to 32 packets, the ESN attribute beyond', () => {
    const small = encodeNewState(state({ esn: false, replayWindow: 32 }), { seq: 1 });
    expect(small[HDR + SA.replay_window[0]]).toBe(32);
    expect(small[HDR + SA.flags[0]]).toBe(K.XFRM_STATE_AF_UNSPEC);
    expect(attrsOf(small, LAYOUT.xfrm_usersa_info.size).has(K.XFRMA_REPLAY_ESN_VAL)).toBe(false);
    const big = encodeNewState(state({ esn: false, replayWindow: 64 }), { seq: 1 });
    expect(big[HDR + SA.replay_window[0]]).toBe(0);
    expect(decodeState(big)).toMatchObject({ esn: false, replayWindow: 64 });
    expect(parseHeader(encodeNewState(state(), { seq: 1, update: true })).type).toBe(K.XFRM_MSG_UPDSA);
  });

  it.each([
    [
      'a 16-byte key for AES-128 (salt missing)',
      {
        aead: {
          name: 'rfc4106(gcm(aes))' as const,
          keyBits: 128 as const,
          icvBits: 128 as const,
          key: new Uint8Array(16),
        },
      },
      /needs 20 key bytes/,
    ],
    [
      'a 192-bit key',
      {
        aead: {
          name: 'rfc4106(gcm(aes))' as const,
          keyBits: 192 as 128,
          icvBits: 128 as const,
          key: new Uint8Array(28),
        },
      },
      /not 128 or 256/,
    ],
    [
      'another AEAD',
      {
        aead: {
          name: 'rfc7539esp(chacha20,poly1305)' as 'rfc4106(gcm(aes))',
          keyBits: 256 as const,
          icvBits: 128 as const,
          key: new Uint8Array(36),
        },
      },
      /not supported/,
    ],
    [
      'a 64-bit ICV',
      { aead: { name: 'rfc4106(gcm(aes))' as const, keyBits: 128 as const, icvBits: 64 as 128, key: key20 } },
      /ICV/,
    ],
    ['ESN without a replay window', { replayWindow: 0 }, /ESN needs a replay window/],
    ['a replay window beyond 4096', { replayWindow: 4097 }, /replay window/],
    ['SPI 0', { spi: 0 }, /SPI 0/],
    ['a reserved SPI', { spi: 255 }, /SPI 255/],
    ['mixed families', { src: '2001:db8::1' }, /not an IPv4 address/],
    ['a hostname', { dst: 'node-b' }, /not an IP address/],
  ])('refuses %s with CONFIG_INVALID', (_what, over, message) => {
    expect(() => encodeNewState(state(over), { seq: 1 })).toThrow(
      expect.objectContaining({ code: 'CONFIG_INVALID', message: expect.stringMatching(message) }),
    );
  });
});

describe('state ids and dumps', () => {
  it('encodes GETSA/DELSA with the mark when there is one', () => {
    const del = encodeStateId(
      { dst: '198.18.0.2', spi: 0x51000002, mark: { value: 1, mask: 1 } },
      { seq: 3, op: 'delete' },
    );
    expect(parseHeader(del)).toMatchObject({ type: K.XFRM_MSG_DELSA, flags: K.NLM_F_REQUEST | K.NLM_F_ACK });
    expect(del.readUInt32BE(HDR + LAYOUT.xfrm_usersa_id.fields.spi[0])).toBe(0x51000002);
    expect(del[HDR + LAYOUT.xfrm_usersa_id.fields.proto[0]]).toBe(50);
    expect(getU32(attrsOf(del, LAYOUT.xfrm_usersa_id.size).get(K.XFRMA_MARK)!, 4)).toBe(1);
    const get = encodeStateId({ dst: '198.18.0.2', spi: 0x51000002 }, { seq: 3, op: 'get' });
    expect(parseHeader(get).type).toBe(K.XFRM_MSG_GETSA);
    expect(attrsOf(get, LAYOUT.xfrm_usersa_id.size).size).toBe(0);
  });

  it('sends dumps as a bare header with NLM_F_DUMP', () => {
    expect(parseHeader(encodeDump('states', 5))).toEqual({
      len: 16,
      type: K.XFRM_MSG_GETSA,
      flags: K.NLM_F_REQUEST | K.NLM_F_DUMP,
      seq: 5,
      pid: 0,
    });
    expect(parseHeader(encodeDump('policies', 6)).type).toBe(K.XFRM_MSG_GETPOLICY);
  });

  it('builds capability probes as UPDSA of a state at the unspecified address', () => {
    const aead = encodeEspProbe({ kind: 'aead', family: 4, spi: 0x51000000, reqid: 0x5188, seq: 1 });
    expect(parseHeader(aead).type).toBe(K.XFRM_MSG_UPDSA);
    expect(decodeState(aead)).toMatchObject({
      dst: '0.0.0.0',
      spi: 0x51000000,
      aead: expect.objectContaining({ name: 'rfc4106(gcm(aes))' }),
    });
    const cbc = encodeEspProbe({ kind: 'cbc', family: 6, spi: 0x51000000, reqid: 0x5188, seq: 1 });
    const s = decodeState(cbc);
    expect(s).toMatchObject({ dst: '::', family: 6, aead: undefined, otherAlgorithms: ['cbc(aes)'] });
  });
});

describe('XFRM_MSG_NEWPOLICY', () => {
  it('places selector, direction, action, priority and the template', () => {
    const msg = encodeNewPolicy(
      policy({ selector: { src: '100.64.1.0/24', dst: '100.64.2.0/24', proto: 6, dport: 443 } }),
      { seq: 1 },
    );
    const p = msg.subarray(HDR);
    const sel = LAYOUT.xfrm_selector.fields;
    expect(p.subarray(sel.daddr[0], sel.daddr[0] + 4)).toEqual(Buffer.from([100, 64, 2, 0]));
    expect(p.subarray(sel.saddr[0], sel.saddr[0] + 4)).toEqual(Buffer.from([100, 64, 1, 0]));
    expect(p.readUInt16BE(sel.dport[0])).toBe(443);
    expect(p.readUInt16BE(sel.dport_mask[0])).toBe(0xffff);
    expect(p.readUInt16BE(sel.sport_mask[0])).toBe(0);
    expect([p[sel.prefixlen_d[0]], p[sel.prefixlen_s[0]], p[sel.proto[0]]]).toEqual([24, 24, 6]);
    const f = LAYOUT.xfrm_userpolicy_info.fields;
    expect([p[f.dir[0]], p[f.action[0]], getU32(p, f.priority[0])]).toEqual([1, 0, 2]);
    const tmpl = attrsOf(msg, LAYOUT.xfrm_userpolicy_info.size).get(K.XFRMA_TMPL)!;
    expect(tmpl.length).toBe(64);
    expect(tmpl.readUInt32BE(16)).toBe(0x51000001);
    expect(getU32(tmpl, LAYOUT.xfrm_user_tmpl.fields.aalgos[0])).toBe(0xffffffff);
  });

  it('round-trips IPv6 selectors, marks, block policies and lifetimes', () => {
    const v6 = policy({
      selector: { src: 'fd00:64:1::/64', dst: 'fd00:64:2::/64' },
      dir: 'fwd',
      templates: [{ src: '198.18.0.2', dst: '198.18.0.1', spi: 0, reqid: 0x5188, mode: 'tunnel' }],
      mark: { value: 0x100, mask: 0xf00 },
    });
    expect(decodePolicy(Buffer.from(encodeNewPolicy(v6, { seq: 1 })))).toMatchObject({
      ...v6,
      lifetime: {},
      templateProtos: [50],
      type: 0,
      ifId: 0,
    });
    const guard = policy({
      action: 'block',
      priority: 1,
      templates: [],
      lifetime: { hardAddSeconds: 60n },
      mark: { value: 1, mask: 1 },
    });
    expect(decodePolicy(encodeNewPolicy(guard, { seq: 1, update: true }))).toMatchObject({
      ...guard,
      lifetime: { hardAddSeconds: 60n },
    });
    expect(parseHeader(encodeNewPolicy(guard, { seq: 1, update: true })).type).toBe(K.XFRM_MSG_UPDPOLICY);
  });

  it('refuses policies that would exempt traffic or mix families', () => {
    expect(() => encodeNewPolicy(policy({ templates: [] }), { seq: 1 })).toThrow(/exempt/);
    expect(() => encodeNewPolicy(policy({ action: 'block' }), { seq: 1 })).toThrow(/no templates/);
    expect(() => encodeNewPolicy(policy({ selector: { src: '100.64.1.0/24', dst: 'fd00::/64' } }), { seq: 1 })).toThrow(
      /mixes/,
    );
    expect(() =>
      encodeNewPolicy(policy({ selector: { src: '100.64.1.0/24', dst: '100.64.2.0/24', dport: 70000 } }), { seq: 1 }),
    ).toThrow(/port/);
  });

  it('encodes policy ids for get and delete', () => {
    const msg = encodePolicyId(
      { selector: { src: '100.64.1.0/24', dst: '100.64.2.0/24' }, dir: 'in', mark: { value: 2, mask: 2 } },
      { seq: 1, op: 'delete' },
    );
    expect(parseHeader(msg).type).toBe(K.XFRM_MSG_DELPOLICY);
    expect(msg[HDR + LAYOUT.xfrm_userpolicy_id.fields.dir[0]]).toBe(0);
    expect(attrsOf(msg, LAYOUT.xfrm_userpolicy_id.size).has(K.XFRMA_MARK)).toBe(true);
  });
});

describe('replies', () => {
  function errorMessage(errno: number, opts: { capped: boolean; text?: string }): Buffer {
    const echoed = buildMessage({ type: 16, flags: 5, seq: 1, payload: Buffer.alloc(opts.capped ? 0 : 24) });
    const payload = Buffer.alloc(4 + (opts.capped ? 16 : echoed.length));
    payload.writeInt32LE(-errno, 0);
    echoed.copy(payload, 4, 0, opts.capped ? 16 : echoed.length);
    const attrs = opts.text === undefined ? [] : [{ type: K.NLMSGERR_ATTR_MSG, data: Buffer.from(`${opts.text}\0`) }];
    const flags = (opts.capped ? K.NLM_F_CAPPED : 0) | (attrs.length > 0 ? K.NLM_F_ACK_TLVS : 0);
    return buildMessage({ type: K.NLMSG_ERROR, flags, seq: 1, payload, attrs });
  }

  it('decodes ACKs, errors and extended-ACK sentences (capped or not)', () => {
    expect(decodeError(errorMessage(0, { capped: true }))).toEqual({ errno: 0, message: undefined });
    expect(decodeError(errorMessage(38, { capped: true, text: 'Requested AEAD algorithm not found' }))).toEqual({
      errno: 38,
      message: 'Requested AEAD algorithm not found',
    });
    expect(decodeError(errorMessage(17, { capped: false, text: 'exists' }))).toEqual({ errno: 17, message: 'exists' });
  });

  it('decodes the error of NLMSG_DONE', () => {
    const done = buildMessage({ type: K.NLMSG_DONE, flags: 2, seq: 1, payload: Buffer.from([0xf0, 0xff, 0xff, 0xff]) });
    expect(decodeDone(done)).toBe(16);
    expect(decodeDone(buildMessage({ type: K.NLMSG_DONE, flags: 2, seq: 1, payload: Buffer.alloc(4) }))).toBe(0);
  });

  it('refuses a NEWSA shorter than xfrm_usersa_info and a message of another type', () => {
    const short = buildMessage({ type: K.XFRM_MSG_NEWSA, flags: 0, seq: 1, payload: Buffer.alloc(100) });
    expect(() => decodeState(short)).toThrow(/shorter than struct xfrm_usersa_info/);
    expect(() => decodePolicy(short)).toThrow(/expected XFRM_MSG_NEWPOLICY/);
  });
});
