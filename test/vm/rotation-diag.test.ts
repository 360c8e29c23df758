import { describe, expect, it } from '@jest/globals';
import { countersWhy, parseLinkStats } from './rotation-diag.js';

describe('parseLinkStats', () => {
  it('reads errors and drops of each link from ip -j -s link show', () => {
    const json = JSON.stringify([
      { ifname: 'lo', stats64: { rx: { bytes: 1, errors: 0, dropped: 0 }, tx: { errors: 0, dropped: 0 } } },
      { ifname: 'sealwg1', stats64: { rx: { errors: 3, dropped: 1 }, tx: { errors: 7, dropped: 0 } } },
      { ifname: 'odd' },
      { stats64: {} },
    ]);
    expect(parseLinkStats(json)).toEqual([
      { ifname: 'lo', counts: { rx_errors: 0, rx_dropped: 0, tx_errors: 0, tx_dropped: 0 } },
      { ifname: 'sealwg1', counts: { rx_errors: 3, rx_dropped: 1, tx_errors: 7, tx_dropped: 0 } },
      { ifname: 'odd', counts: {} },
    ]);
  });

  it('reads unparsable or non-array output as no links', () => {
    expect(parseLinkStats('')).toEqual([]);
    expect(parseLinkStats('{"ifname":"x"}')).toEqual([]);
  });
});

describe('countersWhy', () => {
  it('names each matching delta with its node', () => {
    const deltas = {
      n1: { 'link:sealwg1:tx_errors': 4, 'xfrm:XfrmInNoStates': 2, 'sealnet_kernel_operations_total{op="x"}': 9 },
      guest: { 'softnet:dropped': 12 },
    };
    expect(countersWhy(deltas, /softnet|^link:.*errors/)).toBe(
      '{"n1 link:sealwg1:tx_errors":4,"guest softnet:dropped":12}',
    );
    expect(countersWhy(deltas, /nothing/)).toBe('{}');
  });
});
