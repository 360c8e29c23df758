/** Locations inside the repository, found from this file so they work from `test/` and `dist/test/`. */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root: the nearest ancestor with the `sealnet` package.json. */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'sealnet') return dir;
      } catch {
        // keep looking
      }
    }
    const up = dirname(dir);
    if (up === dir) throw new Error('cannot find the sealnet repository root above ' + fileURLToPath(import.meta.url));
    dir = up;
  }
}

/** A traffic tool under `test/tools/`. */
export function toolPath(name: string): string {
  return join(repoRoot(), 'test', 'tools', name);
}

/** The wireguard-go the agents should use: the pinned build if present, else the one on PATH. */
export function wireguardGoPath(): string {
  const built = join(repoRoot(), '.cache', 'bin', 'wireguard-go');
  return existsSync(built) ? built : 'wireguard-go';
}
