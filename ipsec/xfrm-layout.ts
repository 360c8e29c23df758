/**
 * The kernel ABI sealnet speaks on NETLINK_XFRM, as data: the size and the offset/width of
 * every field of every structure `xfrm-msg.ts` encodes or decodes, and the numeric constants
 * it uses. Names are exactly the kernel's (`<linux/xfrm.h>`, `<linux/netlink.h>`), so the unit
 * test `xfrm-layout.test.ts` can compile a C program from this table against the installed
 * headers and compare every number. Nothing here is computed: a mistake cannot hide behind
 * arithmetic that the encoder shares with the check.
 */

/** One field: byte offset and width; width `'flex'` for a trailing flexible array. */
export type FieldLayout = readonly [offset: number, width: number | 'flex'];

/** One C structure (or union) as the kernel lays it out on this ABI (x86_64 / arm64). */
export interface StructLayout {
  /** The C type expression (`struct xfrm_id`, `xfrm_address_t`). */
  readonly cType: string;
  readonly size: number;
  readonly fields: Readonly<Record<string, FieldLayout>>;
}

/** Every structure sealnet puts on the wire or reads from it. */
export const LAYOUT = {
  nlmsghdr: {
    cType: 'struct nlmsghdr',
    size: 16,
    fields: { nlmsg_len: [0, 4], nlmsg_type: [4, 2], nlmsg_flags: [6, 2], nlmsg_seq: [8, 4], nlmsg_pid: [12, 4] },
  },
  nlattr: { cType: 'struct nlattr', size: 4, fields: { nla_len: [0, 2], nla_type: [2, 2] } },
  nlmsgerr: { cType: 'struct nlmsgerr', size: 20, fields: { error: [0, 4], msg: [4, 16] } },
  xfrm_address_t: { cType: 'xfrm_address_t', size: 16, fields: { a4: [0, 4], a6: [0, 16] } },
  xfrm_selector: {
    cType: 'struct xfrm_selector',
    size: 56,
    fields: {
      daddr: [0, 16],
      saddr: [16, 16],
      dport: [32, 2],
      dport_mask: [34, 2],
      sport: [36, 2],
      sport_mask: [38, 2],
      family: [40, 2],
      prefixlen_d: [42, 1],
      prefixlen_s: [43, 1],
      proto: [44, 1],
      ifindex: [48, 4],
      user: [52, 4],
    },
  },
  xfrm_id: { cType: 'struct xfrm_id', size: 24, fields: { daddr: [0, 16], spi: [16, 4], proto: [20, 1] } },
  xfrm_lifetime_cfg: {
    cType: 'struct xfrm_lifetime_cfg',
    size: 64,
    fields: {
      soft_byte_limit: [0, 8],
      hard_byte_limit: [8, 8],
      soft_packet_limit: [16, 8],
      hard_packet_limit: [24, 8],
      soft_add_expires_seconds: [32, 8],
      hard_add_expires_seconds: [40, 8],
      soft_use_expires_seconds: [48, 8],
      hard_use_expires_seconds: [56, 8],
    },
  },
  xfrm_lifetime_cur: {
    cType: 'struct xfrm_lifetime_cur',
    size: 32,
    fields: { bytes: [0, 8], packets: [8, 8], add_time: [16, 8], use_time: [24, 8] },
  },
  xfrm_replay_state: {
    cType: 'struct xfrm_replay_state',
    size: 12,
    fields: { oseq: [0, 4], seq: [4, 4], bitmap: [8, 4] },
  },
  xfrm_replay_state_esn: {
    cType: 'struct xfrm_replay_state_esn',
    size: 24,
    fields: {
      bmp_len: [0, 4],
      oseq: [4, 4],
      seq: [8, 4],
      oseq_hi: [12, 4],
      seq_hi: [16, 4],
      replay_window: [20, 4],
      bmp: [24, 'flex'],
    },
  },
  xfrm_algo: {
    cType: 'struct xfrm_algo',
    size: 68,
    fields: { alg_name: [0, 64], alg_key_len: [64, 4], alg_key: [68, 'flex'] },
  },
  xfrm_algo_aead: {
    cType: 'struct xfrm_algo_aead',
    size: 72,
    fields: { alg_name: [0, 64], alg_key_len: [64, 4], alg_icv_len: [68, 4], alg_key: [72, 'flex'] },
  },
  xfrm_stats: {
    cType: 'struct xfrm_stats',
    size: 12,
    fields: { replay_window: [0, 4], replay: [4, 4], integrity_failed: [8, 4] },
  },
  xfrm_usersa_info: {
    cType: 'struct xfrm_usersa_info',
    size: 224,
    fields: {
      sel: [0, 56],
      id: [56, 24],
      saddr: [80, 16],
      lft: [96, 64],
      curlft: [160, 32],
      stats: [192, 12],
      seq: [204, 4],
      reqid: [208, 4],
      family: [212, 2],
      mode: [214, 1],
      replay_window: [215, 1],
      flags: [216, 1],
    },
  },
  xfrm_usersa_id: {
    cType: 'struct xfrm_usersa_id',
    size: 24,
    fields: { daddr: [0, 16], spi: [16, 4], family: [20, 2], proto: [22, 1] },
  },
  xfrm_userpolicy_info: {
    cType: 'struct xfrm_userpolicy_info',
    size: 168,
    fields: {
      sel: [0, 56],
      lft: [56, 64],
      curlft: [120, 32],
      priority: [152, 4],
      index: [156, 4],
      dir: [160, 1],
      action: [161, 1],
      flags: [162, 1],
      share: [163, 1],
    },
  },
  xfrm_userpolicy_id: {
    cType: 'struct xfrm_userpolicy_id',
    size: 64,
    fields: { sel: [0, 56], index: [56, 4], dir: [60, 1] },
  },
  xfrm_user_tmpl: {
    cType: 'struct xfrm_user_tmpl',
    size: 64,
    fields: {
      id: [0, 24],
      family: [24, 2],
      saddr: [28, 16],
      reqid: [44, 4],
      mode: [48, 1],
      share: [49, 1],
      optional: [50, 1],
      aalgos: [52, 4],
      ealgos: [56, 4],
      calgos: [60, 4],
    },
  },
  xfrm_userpolicy_type: {
    cType: 'struct xfrm_userpolicy_type',
    size: 6,
    fields: { type: [0, 1], reserved1: [2, 2], reserved2: [4, 1] },
  },
  xfrm_mark: { cType: 'struct xfrm_mark', size: 8, fields: { v: [0, 4], m: [4, 4] } },
} as const satisfies Record<string, StructLayout>;

/**
 * Numeric constants, named exactly as in the kernel headers. Values above 2^53 do not occur
 * (XFRM_INF is written as all-ones bytes by the encoder, not taken from here).
 */
export const K = {
  // <linux/netlink.h>
  NETLINK_XFRM: 6,
  NLMSG_ERROR: 2,
  NLMSG_DONE: 3,
  NLM_F_REQUEST: 0x1,
  NLM_F_MULTI: 0x2,
  NLM_F_ACK: 0x4,
  NLM_F_DUMP: 0x300,
  NLM_F_CAPPED: 0x100,
  NLM_F_ACK_TLVS: 0x200,
  NLMSGERR_ATTR_MSG: 1,
  // <linux/socket.h>, <linux/in.h>
  AF_UNSPEC: 0,
  AF_INET: 2,
  AF_INET6: 10,
  IPPROTO_ESP: 50,
  // <linux/xfrm.h> message types
  XFRM_MSG_NEWSA: 16,
  XFRM_MSG_DELSA: 17,
  XFRM_MSG_GETSA: 18,
  XFRM_MSG_NEWPOLICY: 19,
  XFRM_MSG_DELPOLICY: 20,
  XFRM_MSG_GETPOLICY: 21,
  XFRM_MSG_UPDPOLICY: 25,
  XFRM_MSG_UPDSA: 26,
  // attributes
  XFRMA_ALG_AUTH: 1,
  XFRMA_ALG_CRYPT: 2,
  XFRMA_ALG_COMP: 3,
  XFRMA_TMPL: 5,
  XFRMA_LTIME_VAL: 9,
  XFRMA_REPLAY_VAL: 10,
  XFRMA_LASTUSED: 15,
  XFRMA_POLICY_TYPE: 16,
  XFRMA_ALG_AEAD: 18,
  XFRMA_ALG_AUTH_TRUNC: 20,
  XFRMA_MARK: 21,
  XFRMA_REPLAY_ESN_VAL: 23,
  XFRMA_SA_EXTRA_FLAGS: 24,
  XFRMA_PROTO: 25,
  XFRMA_OUTPUT_MARK: 29,
  XFRMA_SET_MARK: 29,
  XFRMA_SET_MARK_MASK: 30,
  XFRMA_IF_ID: 31,
  XFRMA_REPLAY_ESN_MAX: 4096,
  // state flags and modes
  XFRM_STATE_ESN: 128,
  XFRM_STATE_AF_UNSPEC: 32,
  XFRM_SA_XFLAG_DONT_ENCAP_DSCP: 1,
  XFRM_SA_XFLAG_OSEQ_MAY_WRAP: 2,
  XFRM_MODE_TRANSPORT: 0,
  XFRM_MODE_TUNNEL: 1,
  // policies
  XFRM_POLICY_IN: 0,
  XFRM_POLICY_OUT: 1,
  XFRM_POLICY_FWD: 2,
  XFRM_POLICY_ALLOW: 0,
  XFRM_POLICY_BLOCK: 1,
  XFRM_POLICY_TYPE_MAIN: 0,
  XFRM_SHARE_ANY: 0,
} as const;

/** Netlink aligns messages and attributes to 4 bytes. */
export const NL_ALIGNTO = 4;
