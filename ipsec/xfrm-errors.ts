/**
 * Errors of the XFRM layer: the kernel's errno with its name, the kernel's own sentence when it
 * sent one, and — for the failures a person can act on — which kernel feature is missing.
 */
import { getSystemErrorMap } from 'node:util';
import { SealnetError, type SealnetErrorCode } from '../common/errors.js';

/** An XFRM request the kernel refused (or a system call of the addon that failed). */
export class XfrmError extends SealnetError {
  /** errno name (`EEXIST`), or `E<n>` for a number Node does not know. */
  readonly errno: string;
  /** Positive errno number. */
  readonly errnoNumber: number;
  /** The kernel's extended-ACK sentence, if any ("Requested AEAD algorithm not found"). */
  readonly kernelMessage: string | undefined;

  constructor(fields: {
    code: SealnetErrorCode;
    message: string;
    errno: number;
    kernelMessage?: string | undefined;
    cause?: unknown;
  }) {
    super(fields.code, fields.message, { cause: fields.cause });
    this.name = 'XfrmError';
    this.errnoNumber = fields.errno;
    this.errno = errnoName(fields.errno);
    this.kernelMessage = fields.kernelMessage;
  }
}

/** errno name of a positive errno number (Linux numbering). */
export function errnoName(errno: number): string {
  return getSystemErrorMap().get(-errno)?.[0] ?? `E${errno}`;
}

/** Short description of an errno ("file already exists"). */
export function errnoText(errno: number): string {
  return getSystemErrorMap().get(-errno)?.[1] ?? 'unknown error';
}

/** "EEXIST (file already exists)" plus the kernel's sentence when there is one. */
export function describeErrno(errno: number, kernelMessage?: string): string {
  const base = `${errnoName(errno)} (${errnoText(errno)})`;
  return kernelMessage === undefined ? base : `${base}, kernel: "${kernelMessage}"`;
}

/** True for an {@link XfrmError} with one of the given errno names. */
export function hasErrno(err: unknown, ...names: string[]): err is XfrmError {
  return err instanceof XfrmError && names.includes(err.errno);
}

/** The sentence for a kernel without ESP (the family of the outer addresses decides the module). */
export function noEspSentence(family: 4 | 6): string {
  return family === 4
    ? 'the kernel has no ESP support (CONFIG_INET_ESP / esp4 module); mode ipsec cannot run on this node — use mode wireguard or load esp4'
    : 'the kernel has no ESP support for IPv6 (CONFIG_INET6_ESP / esp6 module); mode ipsec cannot run on this node — use mode wireguard or load esp6';
}

/** The sentence for a kernel with ESP but without AES-GCM for it. */
export const NO_GCM_SENTENCE =
  'the kernel has no rfc4106(gcm(aes)) AEAD (CONFIG_CRYPTO_GCM / gcm module); mode ipsec cannot run on this node — use mode wireguard or load gcm';

/** The sentence for a kernel without the XFRM netlink interface at all. */
export const NO_XFRM_USER_SENTENCE =
  'the kernel has no XFRM netlink interface (CONFIG_XFRM_USER / xfrm_user module); mode ipsec cannot run on this node — use mode wireguard or load xfrm_user';
