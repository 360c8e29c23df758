/** Stable machine-readable error codes; the message is for people, the code for programs. */
export type SealnetErrorCode =
  | 'CONFIG_INVALID'
  | 'KEY_INVALID'
  | 'KEYSTORE_IO'
  | 'ANNOTATION_INVALID'
  | 'STORE_IO'
  | 'SPAWN_FAILED'
  | 'WG_FAILED'
  | 'NETLINK_FAILED'
  | 'KERNEL_FEATURE_MISSING'
  | 'INTERNAL';

/** An error with a code and an optional cause, thrown at protocol and I/O edges. */
export class SealnetError extends Error {
  readonly code: SealnetErrorCode;
  constructor(code: SealnetErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SealnetError';
    this.code = code;
  }
}

/** Renders an error and its cause chain as one line, for logs and CLI output. */
export function describeError(err: unknown): string {
  const parts: string[] = [];
  let cur: unknown = err;
  for (let depth = 0; cur !== undefined && depth < 5; depth++) {
    if (cur instanceof Error) {
      parts.push(cur.message);
      cur = (cur as Error & { cause?: unknown }).cause;
    } else {
      parts.push(String(cur));
      cur = undefined;
    }
  }
  return parts.join(': ');
}
