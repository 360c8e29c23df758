import { silentLogger, type Logger } from '../../common/logger.js';
import type { OverlayVerdict } from '../../routing/overlay.js';
import { validateConfig } from './config.js';
import { overlayGate } from './overlay.js';

const base = { nodeName: 'n1', steering: { clusterCidrs: ['100.64.0.0/16'] } };
const flannel = { name: 'flannel.1', kind: 'vxlan', port: 8472, up: true };
const other = { name: 'flannel.1', kind: 'vxlan', port: 4790, up: true };
const verdict = (v: Partial<OverlayVerdict>): (() => Promise<OverlayVerdict>) => {
  return () => Promise.resolve({ guarded: [], unguarded: [], ...v });
};

function recorder(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const rec = (level: string) => (_o: object, msg: string) => lines.push(`${level}: ${msg}`);
  return { log: { debug: rec('debug'), info: rec('info'), warn: rec('warn'), error: rec('error') }, lines };
}

describe('overlay gate at agent start', () => {
  it('runs beside a guarded overlay (flannel VXLAN 8472) and says so', async () => {
    const { log, lines } = recorder();
    expect(await overlayGate(validateConfig(base), { check: verdict({ guarded: [flannel] }), log })).toBeUndefined();
    expect(lines.join('\n')).toMatch(/overlay devices found/);
  });

  it('refuses with fail-closed steering (the default) beside an overlay it cannot read', async () => {
    const err = await overlayGate(validateConfig(base), {
      check: verdict({ unguarded: [{ link: other, why: 'vxlan on UDP port 4790' }] }),
      log: silentLogger,
    });
    expect(err?.message).toMatch(/refusing to run fail-open.*flannel\.1: vxlan on UDP port 4790/);
  });

  it('refuses when it cannot look (never assumes there is no overlay)', async () => {
    const err = await overlayGate(validateConfig(base), {
      check: () => Promise.reject(new Error('ip: not found')),
      log: silentLogger,
    });
    expect(err?.message).toMatch(/cannot list the node's links/);
  });

  it('only warns when the configuration already runs fail-open (failClosed false)', async () => {
    const { log, lines } = recorder();
    const cfg = validateConfig({ ...base, steering: { ...base.steering, failClosed: false } });
    const err = await overlayGate(cfg, {
      check: verdict({ unguarded: [{ link: other, why: 'vxlan on UDP port 4790' }] }),
      log,
    });
    expect(err).toBeUndefined();
    expect(lines).toEqual([
      expect.stringMatching(/^warn: pod traffic could leave .*running anyway, fail-open by configuration/),
    ]);
  });
});
