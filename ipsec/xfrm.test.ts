/**
 * XfrmClient over a scripted transport that answers like the kernel's xfrm_user (netlink
 * replies built byte by byte): error mapping, the missing-feature diagnosis, dumps, and the
 * wiping of buffers that carry keys. The real kernel is exercised in xfrm.kernel.test.ts.
 */
import { describe, expect, it } from '@jest/globals';
import type { XfrmTransport } from './addon.js';
import type { XfrmPolicySpec, XfrmStateSpec } from '../tunnels/ports/xfrm-types.js';
import { parseAttrs, parseHeader } from './xfrm-decode.js';
import { NO_GCM_SENTENCE, NO_XFRM_USER_SENTENCE, noEspSentence } from './xfrm-errors.js';
import { K, LAYOUT } from './xfrm-layout.js';
import { encodeNewPolicy } from './xfrm-msg.js';
import { buildMessage, nlAlign } from './xfrm-wire.js';
import { XfrmClient } from './xfrm.js';

const NO_ESP =
  'the kernel has no ESP support (CONFIG_INET_ESP / esp4 module); mode ipsec cannot run on this node — use mode wireguard or load esp4';

const ERR = {
  ENOENT: 2,
  ESRCH: 3,
  EPERM: 1,
  EEXIST: 17,
  EINVAL: 22,
  ENOSYS: 38,
  EPROTONOSUPPORT: 93,
  ENOPROTOOPT: 92,
} as const;

/** An NLMSG_ERROR as the kernel sends it to a socket with NETLINK_CAP_ACK and NETLINK_EXT_ACK. */
function ack(req: Buffer, errno = 0, text?: string): Buffer {
  const h = parseHeader(req);
  const payload = Buffer.alloc(20);
  payload.writeInt32LE(-errno, 0);
  req.copy(payload, 4, 0, 16);
  const attrs = text === undefined ? [] : [{ type: K.NLMSGERR_ATTR_MSG, data: Buffer.from(`${text}\0`) }];
  return buildMessage({
    type: K.NLMSG_ERROR,
    flags: K.NLM_F_CAPPED | (attrs.length > 0 ? K.NLM_F_ACK_TLVS : 0),
    seq: h.seq,
    payload,
    attrs,
  });
}

function done(req: Buffer, errno = 0): Buffer {
  const payload = Buffer.alloc(4);
  payload.writeInt32LE(-errno, 0);
  return buildMessage({ type: K.NLMSG_DONE, flags: K.NLM_F_MULTI, seq: parseHeader(req).seq, payload });
}

/** Which algorithm attribute a NEWSA/UPDSA request carries. */
function algorithmOf(req: Buffer): 'aead' | 'cbc' | 'none' {
  const attrs = parseAttrs(req, 16 + nlAlign(LAYOUT.xfrm_usersa_info.size), parseHeader(req).len);
  return attrs.has(K.XFRMA_ALG_AEAD) ? 'aead' : attrs.has(K.XFRMA_ALG_CRYPT) ? 'cbc' : 'none';
}

/** A transport answering from a function; records every request (which the client wipes afterwards). */
class Scripted implements XfrmTransport {
  /** The buffers the client passed (it wipes them after the call). */
  readonly requests: Buffer[] = [];
  /** Copies taken on arrival, for inspection. */
  readonly seen: Buffer[] = [];
  readonly replies: Buffer[] = [];
  constructor(private readonly answer: (req: Buffer) => Buffer[] | Error) {}
  async transact(request: Buffer): Promise<Buffer[]> {
    this.requests.push(request);
    this.seen.push(Buffer.from(request));
    const out = this.answer(Buffer.from(request));
    if (out instanceof Error) throw out;
    this.replies.push(...out);
    return out;
  }
}

/** A kernel whose ESP and AEAD support can be switched off, like this host's (no esp4, no gcm). */
function kernel(opts: { esp: boolean; gcm: boolean }): Scripted {
  return new Scripted((req) => {
    const type = parseHeader(req).type;
    if (type !== K.XFRM_MSG_NEWSA && type !== K.XFRM_MSG_UPDSA) return [ack(req)];
    const alg = algorithmOf(req);
    // xfrm_state_construct: algorithms are looked up before the ESP type.
    if (alg === 'aead' && !opts.gcm) return [ack(req, ERR.ENOSYS, 'Requested AEAD algorithm not found')];
    if (!opts.esp) return [ack(req, ERR.EPROTONOSUPPORT, 'Requested type not found')];
    return [type === K.XFRM_MSG_UPDSA ? ack(req, ERR.ESRCH) : ack(req)];
  });
}

const state = (over: Partial<XfrmStateSpec> = {}): XfrmStateSpec => ({
  src: '198.18.0.1',
  dst: '198.18.0.2',
  spi: 0x51000001,
  mode: 'tunnel',
  reqid: 0x5188,
  aead: { name: 'rfc4106(gcm(aes))', keyBits: 128, icvBits: 128, key: new Uint8Array(20).fill(0xaa) },
  esn: true,
  replayWindow: 1024,
  ...over,
});

const policy: XfrmPolicySpec = {
  selector: { src: '100.64.1.0/24', dst: '100.64.2.0/24' },
  dir: 'out',
  action: 'allow',
  priority: 2,
  templates: [{ src: '198.18.0.1', dst: '198.18.0.2', spi: 0x51000001, reqid: 0x5188, mode: 'tunnel' }],
};

describe('states', () => {
  it('adds a state and wipes the request that carried the key', async () => {
    const t = kernel({ esp: true, gcm: true });
    await new XfrmClient({ transport: t }).addState(state());
    expect(t.requests).toHaveLength(1);
    expect(t.requests[0]!.every((b) => b === 0)).toBe(true);
  });

  it('names the missing ESP support when the kernel lacks both ESP and GCM (this host)', async () => {
    const t = kernel({ esp: false, gcm: false });
    const err = await new XfrmClient({ transport: t }).addState(state()).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'KERNEL_FEATURE_MISSING', errno: 'ENOSYS' });
    expect((err as Error).message.startsWith(NO_ESP)).toBe(true);
    expect((err as Error).message).toContain('add XFRM state spi 0x51000001 to 198.18.0.2 failed: ENOSYS');
    expect((err as Error).message).toContain('Requested AEAD algorithm not found');
    // The diagnosis probed plain ESP with UPDSA (never installing anything).
    expect(t.seen.map((r) => parseHeader(r).type)).toEqual([K.XFRM_MSG_NEWSA, K.XFRM_MSG_UPDSA]);
  });

  it.each(['EPROTONOSUPPORT', 'ENOPROTOOPT'] as const)('names the missing ESP support on %s', async (errno) => {
    const t = new Scripted((req) => [ack(req, ERR[errno])]);
    await expect(new XfrmClient({ transport: t }).addState(state())).rejects.toMatchObject({
      code: 'KERNEL_FEATURE_MISSING',
      message: expect.stringContaining(NO_ESP),
    });
  });

  it('names esp6 for IPv6 outer addresses', async () => {
    const t = kernel({ esp: false, gcm: true });
    await expect(
      new XfrmClient({ transport: t }).addState(state({ src: '2001:db8::1', dst: '2001:db8::2' })),
    ).rejects.toMatchObject({
      code: 'KERNEL_FEATURE_MISSING',
      message: expect.stringContaining(noEspSentence(6)),
    });
  });

  it('names the missing GCM when ESP itself works', async () => {
    const t = kernel({ esp: true, gcm: false });
    await expect(new XfrmClient({ transport: t }).addState(state())).rejects.toMatchObject({
      code: 'KERNEL_FEATURE_MISSING',
      message: expect.stringContaining(NO_GCM_SENTENCE),
    });
  });

  it('reports other refusals as NETLINK_FAILED with the errno, the object and the kernel sentence', async () => {
    const t = new Scripted((req) => [ack(req, ERR.EEXIST, 'state exists')]);
    await expect(new XfrmClient({ transport: t }).addState(state())).rejects.toMatchObject({
      code: 'NETLINK_FAILED',
      errno: 'EEXIST',
      kernelMessage: 'state exists',
      message:
        'failed to add XFRM state spi 0x51000001 to 198.18.0.2: EEXIST (file already exists), kernel: "state exists"',
    });
    const perm = new Scripted((req) => [ack(req, ERR.EPERM)]);
    await expect(new XfrmClient({ transport: perm }).addPolicy(policy)).rejects.toMatchObject({
      message: expect.stringContaining('CAP_NET_ADMIN'),
    });
  });

  it('reads absent states and deletes of absent states as "absent"', async () => {
    const t = new Scripted((req) => [ack(req, ERR.ESRCH)]);
    const c = new XfrmClient({ transport: t });
    await expect(c.getState({ dst: '198.18.0.2', spi: 0x51000001 })).resolves.toBeUndefined();
    await expect(c.deleteState({ dst: '198.18.0.2', spi: 0x51000001 })).resolves.toBe(false);
    await expect(
      new XfrmClient({ transport: new Scripted((req) => [ack(req)]) }).deleteState({
        dst: '198.18.0.2',
        spi: 0x51000001,
      }),
    ).resolves.toBe(true);
  });
});

describe('capability check', () => {
  it('passes when the probe reaches the state lookup (ESRCH) and installs nothing', async () => {
    const t = kernel({ esp: true, gcm: true });
    await expect(new XfrmClient({ transport: t }).checkEsp(4)).resolves.toBeUndefined();
    expect(t.seen.map((r) => parseHeader(r).type)).toEqual([K.XFRM_MSG_UPDSA]);
  });

  it.each([
    [{ esp: false, gcm: false }, NO_ESP],
    [{ esp: false, gcm: true }, NO_ESP],
    [{ esp: true, gcm: false }, NO_GCM_SENTENCE],
  ])('fails with the missing feature (%j)', async (caps, sentence) => {
    await expect(new XfrmClient({ transport: kernel(caps) }).checkEsp(4)).rejects.toMatchObject({
      code: 'KERNEL_FEATURE_MISSING',
      message: sentence,
    });
  });

  it('does not guess on an unexpected answer', async () => {
    const t = new Scripted((req) => [ack(req, ERR.EINVAL)]);
    await expect(new XfrmClient({ transport: t }).checkEsp(4)).rejects.toMatchObject({
      code: 'NETLINK_FAILED',
      message: expect.stringContaining('cannot tell whether the kernel supports ESP'),
    });
  });
});

describe('policies and dumps', () => {
  it('decodes a multi-part dump and wipes every reply buffer', async () => {
    const t = new Scripted((req) => [
      encodeNewPolicy(policy, { seq: parseHeader(req).seq }),
      encodeNewPolicy({ ...policy, dir: 'fwd' }, { seq: parseHeader(req).seq }),
      done(req),
    ]);
    const got = await new XfrmClient({ transport: t }).dumpPolicies();
    expect(got.map((p) => p.dir)).toEqual(['out', 'fwd']);
    expect(got[0]).toMatchObject({
      selector: policy.selector,
      priority: 2,
      templates: [expect.objectContaining({ spi: 0x51000001 })],
    });
    expect(parseHeader(t.seen[0]!)).toMatchObject({
      type: K.XFRM_MSG_GETPOLICY,
      flags: K.NLM_F_REQUEST | K.NLM_F_DUMP,
    });
    expect(t.replies.every((r) => r.every((b) => b === 0))).toBe(true);
  });

  it('fails a dump that ends with an error', async () => {
    const t = new Scripted((req) => [done(req, ERR.EINVAL)]);
    await expect(new XfrmClient({ transport: t }).dumpStates()).rejects.toMatchObject({
      code: 'NETLINK_FAILED',
      errno: 'EINVAL',
      message: expect.stringMatching(/^failed to dump XFRM states: EINVAL/),
    });
  });

  it('reads absent policies as undefined / false', async () => {
    const c = new XfrmClient({ transport: new Scripted((req) => [ack(req, ERR.ENOENT)]) });
    await expect(c.getPolicy(policy)).resolves.toBeUndefined();
    await expect(c.deletePolicy(policy)).resolves.toBe(false);
  });

  it('returns the policy of a get by selector', async () => {
    const t = new Scripted((req) => [encodeNewPolicy(policy, { seq: parseHeader(req).seq }), ack(req)]);
    await expect(new XfrmClient({ transport: t }).getPolicy(policy)).resolves.toMatchObject({
      dir: 'out',
      selector: policy.selector,
    });
  });

  it('refuses a reply without its terminating message, and data where none belongs', async () => {
    await expect(new XfrmClient({ transport: new Scripted(() => []) }).addPolicy(policy)).rejects.toThrow(
      /without an ACK or NLMSG_DONE/,
    );
    const chatty = new Scripted((req) => [encodeNewPolicy(policy, { seq: 1 }), ack(req)]);
    await expect(new XfrmClient({ transport: chatty }).addPolicy(policy)).rejects.toThrow(
      /unexpected reply message type/,
    );
  });
});

describe('system call failures of the addon', () => {
  const syscallError = (syscall: string, code: string, errno: number): Error =>
    Object.assign(new Error(`NETLINK_XFRM ${syscall} failed`), { syscall, code, errno });

  it('names a kernel without XFRM netlink', async () => {
    const t = new Scripted(() => syscallError('socket', 'EPROTONOSUPPORT', 93));
    await expect(new XfrmClient({ transport: t }).dumpPolicies()).rejects.toMatchObject({
      code: 'KERNEL_FEATURE_MISSING',
      message: expect.stringContaining(NO_XFRM_USER_SENTENCE),
    });
  });

  it('reports a timeout as NETLINK_FAILED naming the operation', async () => {
    const t = new Scripted(() => syscallError('recvfrom', 'ETIMEDOUT', 110));
    await expect(new XfrmClient({ transport: t }).addPolicy(policy)).rejects.toMatchObject({
      code: 'NETLINK_FAILED',
      errno: 'ETIMEDOUT',
      message: expect.stringMatching(
        /^failed to add XFRM policy out 100\.64\.1\.0\/24 -> 100\.64\.2\.0\/24: recvfrom ETIMEDOUT/,
      ),
    });
  });
});
