import type { SteeringEntry } from './index.js';
import { FakeSteering } from './steering.fake.js';

const settings = {
  failClosed: true,
  wireguardPort: 51880,
  espUdpPort: 0,
  esp: false,
  tunnelFwmark: 0x5188,
  markMask: 0,
};
const ready: SteeringEntry = {
  cidr: '100.64.2.0/24',
  state: 'ready',
  action: 'redirect',
  kind: 'pod',
  ifindex: 9,
  mark: 0,
  peerId: 2,
};

async function started(): Promise<FakeSteering> {
  const f = new FakeSteering();
  await f.ensure({
    settings,
    exempt: ['198.18.9.1/32', '100.64.9.1/32'],
    clusterCidrs: ['100.64.0.0/10'],
    attachments: [{ dev: 'eth0', hook: 'egress' }],
  });
  return f;
}

describe('FakeSteering', () => {
  it('refuses map calls before ensure', async () => {
    await expect(new FakeSteering().applyEntries([ready], { prune: false })).rejects.toThrow(/before ensure/);
  });

  it('drops the cluster range at start, redirects ready prefixes, passes exempt and other', async () => {
    const f = await started();
    expect(f.egress('eth0', '100.64.2.5')).toEqual({ verdict: 'drop', reason: 'no_peer' });
    await f.applyEntries([ready, { ...ready, cidr: '100.64.3.0/24', state: 'not-ready', ifindex: 0 }], {
      prune: false,
    });
    expect(f.egress('eth0', '100.64.2.5')).toEqual({ verdict: 'redirect', reason: 'redirected', ifindex: 9 });
    expect(f.egress('eth0', '100.64.3.5')).toEqual({ verdict: 'drop', reason: 'not_ready' });
    expect(f.egress('eth0', '198.18.9.1')).toEqual({ verdict: 'pass', reason: 'exempt' });
    // An exemption inside a remote pod range opens nothing: the pod prefix decides.
    expect(f.egress('eth0', '100.64.9.1')).toEqual({ verdict: 'drop', reason: 'no_peer' });
    expect(f.egress('eth0', '198.18.0.2')).toEqual({ verdict: 'pass', reason: 'other' });
    expect(f.egress('eth1', '100.64.3.5')).toEqual({ verdict: 'pass', reason: 'other' });
  });

  it('keeps entries across a restart and prunes only when asked', async () => {
    const f = await started();
    await f.applyEntries([ready], { prune: false });
    f.restart();
    await expect(f.listEntries()).rejects.toThrow(/before ensure/);
    const r = await f.ensure({
      settings,
      exempt: [],
      clusterCidrs: ['100.64.0.0/10'],
      attachments: [{ dev: 'eth0', hook: 'egress' }],
    });
    expect(r).toMatchObject({ mapsCreated: false, attached: [{ change: 'unchanged' }] });
    expect((await f.listEntries()).map((e) => e.cidr)).toEqual(['100.64.0.0/10', '100.64.2.0/24']);
    expect(await f.applyEntries([ready], { prune: true })).toEqual({ written: 0, deleted: 1 });
  });

  it('passes and counts what it would drop when fail-closed is off', async () => {
    const f = await started();
    await f.ensure({
      settings: { ...settings, failClosed: false },
      exempt: [],
      clusterCidrs: [],
      attachments: [{ dev: 'eth0', hook: 'egress' }],
    });
    expect(f.egress('eth0', '100.64.2.5')).toEqual({ verdict: 'pass', reason: 'fail_open' });
    expect(await f.counters()).toEqual(
      expect.arrayContaining([expect.objectContaining({ reason: 'fail_open', packets: 1n })]),
    );
  });
});
