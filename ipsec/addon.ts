/**
 * Loads the NETLINK_XFRM transport addon (`ipsec/addon`, built by `scripts/build-addons.sh`)
 * and gives it a typed face. The addon sends one request and returns every reply message; all
 * layout lives in `xfrm-msg.ts` / `xfrm-decode.ts`.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SealnetError } from '../common/errors.js';

/** Sends one netlink request and resolves with its reply messages (the terminating one included). */
export interface XfrmTransport {
  transact(request: Buffer, opts: { timeoutMs: number }): Promise<Buffer[]>;
}

/** A failed system call inside the addon (not a netlink error, which is a reply message). */
export interface AddonSyscallError extends Error {
  readonly errno: number;
  readonly code: string;
  readonly syscall: string;
}

interface NativeXfrm {
  transact(request: Buffer, timeoutMs: number): Promise<Buffer[]>;
}

/** Environment variable naming the `.node` file to load instead of the built one. */
export const XFRM_ADDON_ENV = 'SEALNET_XFRM_ADDON';

const ADDON_RELATIVE = path.join('ipsec', 'addon', 'build', 'Release', 'sealnet_xfrm.node');

/**
 * Where the addon is: `$SEALNET_XFRM_ADDON`, else `ipsec/addon/build/Release/sealnet_xfrm.node`
 * under the first ancestor of this module that has one (the repository root, both for the
 * TypeScript sources and for the build in `dist/`).
 */
export function xfrmAddonPath(env: Readonly<Record<string, string | undefined>> = process.env): string {
  const override = env[XFRM_ADDON_ENV];
  if (override !== undefined && override !== '') return path.resolve(override);
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = path.join(dir, ADDON_RELATIVE);
    if (existsSync(candidate)) return candidate;
    const parent = path.dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  throw new SealnetError(
    'KERNEL_FEATURE_MISSING',
    `the XFRM addon (${ADDON_RELATIVE}) is not built; run scripts/build-addons.sh (mode ipsec needs it)`,
  );
}

/** Loads the addon. @throws SealnetError when it is missing or cannot be loaded. */
export function loadXfrmAddon(env: Readonly<Record<string, string | undefined>> = process.env): XfrmTransport {
  const file = xfrmAddonPath(env);
  let native: NativeXfrm;
  try {
    native = createRequire(import.meta.url)(file) as NativeXfrm;
  } catch (err) {
    throw new SealnetError(
      'KERNEL_FEATURE_MISSING',
      `cannot load the XFRM addon ${file}; rebuild it with scripts/build-addons.sh`,
      { cause: err },
    );
  }
  if (typeof native.transact !== 'function')
    throw new SealnetError('INTERNAL', `${file} is not the sealnet XFRM addon`);
  return { transact: (request, opts) => native.transact(request, opts.timeoutMs) };
}

/** True if `err` is a failed system call reported by the addon. */
export function isAddonSyscallError(err: unknown): err is AddonSyscallError {
  return (
    err instanceof Error &&
    typeof (err as Partial<AddonSyscallError>).errno === 'number' &&
    typeof (err as Partial<AddonSyscallError>).syscall === 'string'
  );
}
