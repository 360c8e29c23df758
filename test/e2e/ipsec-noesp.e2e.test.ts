/**
 * Mode ipsec on a kernel without ESP (this host's: it has XFRM netlink but no esp4), end to end
 * in the namespace cluster: `sealnet-agent --mode ipsec` refuses to start with the sentence that
 * names the missing kernel feature, exits with status 2, and leaves nothing behind — no XFRM
 * state or policy, no link, route, rule, tc classifier or BPF pin, no key file, no annotation.
 *
 * The same snapshot then sees what a WireGuard agent leaves on the same node (proof that the
 * snapshot can tell). The ESP datapath itself is proven in the qemu guest (test/vm/).
 */
import { jest } from '@jest/globals';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ANNOTATION_PREFIX } from '../../common/constants.js';
import { NsCluster } from '../harness/cluster.js';
import { run, sleep } from '../harness/exec.js';
import { repoRoot } from '../harness/paths.js';

const isRoot = process.getuid?.() === 0;
if (!isRoot) throw new Error('ipsec-noesp.e2e needs root (network namespaces); run the suite as root');

jest.setTimeout(120_000);

/**
 * Asks the kernel, in a throwaway network namespace (`unshare --net`), whether ESP with AES-GCM
 * works: the refusal can only be shown on a kernel without it (this host's).
 */
async function kernelHasEsp(): Promise<boolean> {
  const xfrm = pathToFileURL(join(repoRoot(), 'dist', 'ipsec', 'xfrm.js')).href;
  const script = `const { XfrmClient } = await import(${JSON.stringify(xfrm)});
try { await new XfrmClient().checkEsp(4); console.log('esp'); } catch (e) { console.log(e.code === 'KERNEL_FEATURE_MISSING' ? 'no-esp' : 'error: ' + e.message); }`;
  const out = (
    await run(['unshare', '--net', process.execPath, '--input-type=module', '-e', script], { timeoutMs: 30_000 })
  ).stdout.trim();
  if (out !== 'esp' && out !== 'no-esp') throw new Error(`cannot tell whether this kernel has ESP: ${out}`);
  return out === 'esp';
}

const hasEsp = await kernelHasEsp();
const suite = hasEsp ? describe.skip : describe;

/** Everything sealnet could leave in a node: kernel objects of its namespaces, pins, key files, annotations. */
async function snapshot(c: NsCluster, node: string): Promise<Record<string, string>> {
  const sh = async (argv: string[]): Promise<string> => {
    const r = await c.execNode(node, argv, { check: false });
    return `${r.stdout}${r.stderr}`.trim();
  };
  const doc = await c.nodeDoc(node);
  return {
    xfrmStates: await sh(['ip', 'xfrm', 'state', 'list']),
    xfrmPolicies: await sh(['ip', 'xfrm', 'policy', 'list']),
    // Names, kinds and MTUs (operational states settle on their own: a bridge goes UNKNOWN → UP).
    links: await sh(['sh', '-c', "ip -o -d link show | sed -E 's/ state [A-Z]+ / /; s/ link\\/.*$//'"]),
    routes: await sh(['ip', 'route', 'show', 'table', 'all']),
    rules: await sh(['ip', 'rule', 'show']),
    tcEgress: await sh(['tc', 'filter', 'show', 'dev', 'eth0', 'egress']),
    tcIngress: await sh(['tc', 'filter', 'show', 'dev', 'eth0', 'ingress']),
    bpffs: await sh(['find', '/sys/fs/bpf']),
    stateDir: (await readdir(join(c.runDir, node, 'state'), { recursive: true })).sort().join('\n'),
    annotations: Object.keys(doc?.metadata.annotations ?? {})
      .filter((k) => k.startsWith(ANNOTATION_PREFIX))
      .sort()
      .join('\n'),
  };
}

suite(
  `mode ipsec on a kernel without ESP${hasEsp ? ' [skipped: this kernel has ESP; the datapath is proven in test/vm/]' : ''}`,
  () => {
    let c: NsCluster;
    beforeAll(async () => {
      c = await NsCluster.create({ nodes: 2, podsPerNode: 1, startAgents: false });
    });
    afterAll(async () => {
      await c?.destroy();
    });

    it('sealnet-agent --mode ipsec exits 2 with the "no ESP" sentence and leaves no kernel state, no key and no annotation', async () => {
      const before = await snapshot(c, 'n1');
      expect(before.xfrmStates).toBe('');
      expect(before.annotations).toBe('');
      // The harness's own agent config (mode wireguard), with the mode chosen by the flag.
      const cfg = join(c.runDir, 'n1', 'agent-ipsec.json');
      await writeFile(cfg, `${JSON.stringify(c.agentConfig('n1'))}\n`, { mode: 0o600 });
      const t0 = Date.now();
      const r = await c.execNode(
        'n1',
        [process.execPath, join(repoRoot(), 'bin', 'sealnet-agent.js'), '--config', cfg, '--mode', 'ipsec'],
        { check: false, timeoutMs: 30_000 },
      );
      process.stderr.write(`ipsec-noesp: agent exited ${r.code} after ${Date.now() - t0} ms\n`);
      expect(r.code).toBe(2);
      const lines = r.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { level: number; msg: string; code?: string });
      const fatal = lines.find((l) => l.level >= 50);
      expect(fatal?.msg).toBe(
        'the kernel has no ESP support (CONFIG_INET_ESP / esp4 module); mode ipsec cannot run on this node — use mode wireguard or load esp4',
      );
      expect(fatal?.code).toBe('KERNEL_FEATURE_MISSING');
      // Nothing was published, changed or created: the check is the agent's first act.
      expect(lines.map((l) => l.msg)).not.toContain('published own IPsec public key and endpoint');
      expect(await snapshot(c, 'n1')).toEqual(before);
    });

    it('sanity: the same snapshot sees what a running agent leaves (a WireGuard agent on the same node)', async () => {
      const before = await snapshot(c, 'n1');
      await c.startAgent('n1');
      let after = before;
      for (
        let i = 0;
        i < 100 && (after.annotations === '' || after.tcEgress === '') && c.agentStatus('n1').running;
        i++
      ) {
        await sleep(200);
        after = await snapshot(c, 'n1');
      }
      const running = c.agentStatus('n1').running;
      await c.stopAgent('n1');
      expect({ running, log: running ? '' : (await readFile(c.agentLogPath('n1'), 'utf8')).slice(-2000) }).toEqual({
        running: true,
        log: '',
      });
      expect(after.annotations).toContain('sealnet.io/wireguard-public-key');
      expect(after.stateDir).toContain('wireguard.key');
      expect(after.tcEgress).toContain('sealnet_egress');
      expect(after.bpffs).toContain('/sys/fs/bpf/sealnet');
      expect(after.links).toContain('sealwg0');
    });
  },
);
