/**
 * The control plane's security (DESIGN.md "Security of the control plane") on a real API server
 * with the chart's RBAC and ValidatingAdmissionPolicy applied from `helm template` output: an
 * agent's token is bound to its Node, carries the node-name claim, may patch only its own
 * Node's `sealnet.io/` annotations, and can read nothing but Nodes.
 *
 * Requests are made the way the agent makes them: the agent's own KubernetesNodeStore for the
 * annotation patches, and kubectl for everything else.
 */
import * as k8s from '@kubernetes/client-node';
import { jest } from '@jest/globals';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ANNOTATIONS, NOT_READY_TAINT } from '../../common/constants.js';
import { KubernetesNodeStore } from '../../tunnels/stores/kubernetes.js';
import { TestApiServer } from './apiserver.js';
import { applyChart, findManifest, type Manifest } from './chart.js';
import { nodeObject } from './cluster.js';
import { writeKubeconfig } from './pki.js';
import { waitFor } from './util.js';

jest.setTimeout(60_000);

const KEY = 'sealnet.io/wireguard-public-key';
const FAKE_KEY_A = 'hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=';
const FAKE_KEY_B = 'gN65BkIKy1eCE9pP1wdc8ROUtkHLF2PfAqYdyYBz6EA=';
const OPERATOR_TAINT: k8s.V1Taint = { key: 'example.com/dedicated', value: 'db', effect: 'NoSchedule' };
const SPEC_DENIED = "may not change a Node's spec, except removing the sealnet.io/not-ready:NoSchedule taint";

/** The API server's message of a failed client-node call (its body), for assertions. */
async function rejection(p: Promise<unknown>): Promise<{ code: number | undefined; message: string }> {
  try {
    await p;
  } catch (err) {
    const e = (err as { cause?: unknown }).cause ?? err;
    const code = (e as { code?: number }).code;
    const body = (e as { body?: unknown }).body;
    return {
      code,
      message: `${String((e as Error).message)} ${typeof body === 'string' ? body : JSON.stringify(body ?? '')}`,
    };
  }
  throw new Error('expected the request to be rejected');
}

describe('least privilege and node-scoped writes on a real API server', () => {
  let api: TestApiServer;
  let dir: string;
  const kubeconfig: Record<string, string> = {};
  let admin: k8s.CoreV1Api;
  let manifests: Manifest[];

  const agentApi = (who: string): k8s.CoreV1Api => {
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(kubeconfig[who] as string);
    return kc.makeApiClient(k8s.CoreV1Api);
  };
  const store = (who: string): KubernetesNodeStore => new KubernetesNodeStore({ kubeconfig: kubeconfig[who] });
  const annotationsOf = async (name: string): Promise<Record<string, string>> =>
    (await admin.readNode({ name })).metadata?.annotations ?? {};

  beforeAll(async () => {
    api = await TestApiServer.start();
    manifests = await applyChart(api);
    admin = api.adminConfig().makeApiClient(k8s.CoreV1Api);
    dir = await mkdtemp(join(tmpdir(), 'sealnet-policy-'));
    for (const [i, name] of ['node-a', 'node-b'].entries()) {
      // Registered as README "Before the guard is attached" says, plus a taint of the operator's.
      await admin.createNode({
        body: nodeObject({ name, address: `198.18.0.${i + 1}`, podCIDR: `100.64.${i + 1}.0/24` }, [
          { ...NOT_READY_TAINT },
          OPERATOR_TAINT,
        ]),
      });
      const token = await api.nodeBoundToken({ namespace: 'sealnet', serviceAccount: 'sealnet', nodeName: name });
      kubeconfig[name] = join(dir, `${name}.kubeconfig`);
      await writeKubeconfig(kubeconfig[name] as string, {
        server: api.url,
        caCert: api.pki.caCert,
        user: name,
        auth: { token },
      });
    }
    const unbound = await api.unboundToken({ namespace: 'sealnet', serviceAccount: 'sealnet' });
    kubeconfig.unbound = join(dir, 'unbound.kubeconfig');
    await writeKubeconfig(kubeconfig.unbound, {
      server: api.url,
      caCert: api.pki.caCert,
      user: 'unbound',
      auth: { token: unbound },
    });
    // The API server loads a new policy and binding through an informer: wait until it is in
    // force (a dry-run of a write it must deny is denied) before testing it.
    await waitFor(
      'the admission policy to be in force',
      async () => {
        const denied = await agentApi('node-a')
          .patchNode(
            { name: 'node-b', body: { metadata: { annotations: { [KEY]: FAKE_KEY_A } } }, dryRun: 'All' },
            k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
          )
          .then(
            () => false,
            () => true,
          );
        return denied ? true : undefined;
      },
      { timeoutMs: 30_000, pollMs: 100 },
    );
    // Annotations and labels an admin set, which the agent must not touch.
    await admin.patchNode(
      {
        name: 'node-a',
        body: { metadata: { annotations: { 'example.com/owner': 'platform' }, labels: { 'example.com/zone': 'a' } } },
      },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    );
  }, 300_000);
  afterAll(async () => {
    await api?.destroy();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it('issues the agent a token bound to its Node: the API server sees the service account and the node-name claim', async () => {
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(kubeconfig['node-a'] as string);
    const review = await kc
      .makeApiClient(k8s.AuthenticationV1Api)
      .createSelfSubjectReview({ body: { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' } });
    expect(review.status?.userInfo?.username).toBe('system:serviceaccount:sealnet:sealnet');
    expect(review.status?.userInfo?.extra?.['authentication.kubernetes.io/node-name']).toEqual(['node-a']);
  });

  it("lets the agent publish its key on its own Node (the agent's own store code)", async () => {
    await store('node-a').patchAnnotations('node-a', { [KEY]: FAKE_KEY_A, 'sealnet.io/endpoint': '198.18.0.1:51880' });
    await store('node-b').patchAnnotations('node-b', { [KEY]: FAKE_KEY_B });
    expect((await annotationsOf('node-a'))[KEY]).toBe(FAKE_KEY_A);
    // and remove one of its own sealnet.io/ annotations again (merge patch with null)
    await store('node-a').patchAnnotations('node-a', { 'sealnet.io/endpoint': undefined });
    expect(await annotationsOf('node-a')).not.toHaveProperty(['sealnet.io/endpoint']);
  });

  it("rejects the agent of node A changing node B's key", async () => {
    const err = await rejection(store('node-a').patchAnnotations('node-b', { [KEY]: FAKE_KEY_A }));
    expect(err.code).toBe(403);
    expect(err.message).toContain('ValidatingAdmissionPolicy');
    expect(err.message).toContain('sealnet agent of node node-a may not modify Node node-b');
    expect((await annotationsOf('node-b'))[KEY]).toBe(FAKE_KEY_B);
    // ... and deleting it
    const del = await rejection(store('node-a').patchAnnotations('node-b', { [KEY]: undefined }));
    expect(del.code).toBe(403);
    expect((await annotationsOf('node-b'))[KEY]).toBe(FAKE_KEY_B);
  });

  it('rejects the agent changing anything on its own Node but sealnet.io/ annotations', async () => {
    const a = agentApi('node-a');
    const merge = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch);
    const cases: [string, object, string][] = [
      [
        'add another annotation',
        { metadata: { annotations: { 'example.com/x': '1' } } },
        'may change only sealnet.io/ annotations',
      ],
      [
        'change an admin annotation',
        { metadata: { annotations: { 'example.com/owner': 'me' } } },
        'may change only sealnet.io/ annotations',
      ],
      [
        'remove an admin annotation',
        { metadata: { annotations: { 'example.com/owner': null } } },
        'may change only sealnet.io/ annotations',
      ],
      ['add a label', { metadata: { labels: { 'sealnet.io/evil': 'true' } } }, "may not change a Node's labels"],
      ['change a label', { metadata: { labels: { 'example.com/zone': 'b' } } }, "may not change a Node's labels"],
      ['cordon the node', { spec: { unschedulable: true } }, SPEC_DENIED],
      ['replace the taints', { spec: { taints: [{ key: 'x', effect: 'NoSchedule' }] } }, SPEC_DENIED],
      [
        'add a finalizer',
        { metadata: { finalizers: ['example.com/hold'] } },
        "may not change a Node's labels, finalizers",
      ],
    ];
    for (const [what, body, msg] of cases) {
      const err = await rejection(a.patchNode({ name: 'node-a', body }, merge));
      expect([what, err.code]).toEqual([what, 403]);
      expect([what, err.message]).toEqual([what, expect.stringContaining(msg)]);
    }
    const node = await admin.readNode({ name: 'node-a' });
    expect(node.metadata?.annotations?.['example.com/owner']).toBe('platform');
    expect(node.metadata?.labels?.['example.com/zone']).toBe('a');
    expect(node.spec?.unschedulable).toBeUndefined();
  });

  it('lets the agent remove the not-ready taint from its own Node, and refuses every other change to spec', async () => {
    const a = agentApi('node-a');
    const merge = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch);
    const taintsOf = async (name: string): Promise<k8s.V1Taint[]> =>
      ((await admin.readNode({ name })).spec?.taints ?? []).map((t) => ({
        key: t.key,
        effect: t.effect,
        ...(t.value === undefined ? {} : { value: t.value }),
      }));
    // As registered, plus what the API server adds itself (TaintNodesByCondition puts
    // node.kubernetes.io/not-ready on a Node without a Ready condition).
    const registered = await taintsOf('node-a');
    expect(registered.slice(0, 2)).toEqual([{ ...NOT_READY_TAINT }, OPERATOR_TAINT]);
    expect(await taintsOf('node-b')).toEqual(registered);
    const isOurs = (t: k8s.V1Taint): boolean => t.key === NOT_READY_TAINT.key && t.effect === NOT_READY_TAINT.effect;
    const withoutOurs = registered.filter((t) => !isOurs(t));
    // Refused: another node's taint (the agent's own removal code) ...
    const other = await rejection(store('node-a').removeTaint('node-b', NOT_READY_TAINT));
    expect(other.code).toBe(403);
    expect(other.message).toContain('sealnet agent of node node-a may not modify Node node-b');
    expect(await taintsOf('node-b')).toEqual(registered);
    // ... and on its own Node, anything but removing exactly that taint.
    const extra = { key: 'example.com/x', effect: 'NoSchedule' };
    const cases: [string, object][] = [
      ["remove the operator's taint", { spec: { taints: registered.filter((t) => t.key !== OPERATOR_TAINT.key) } }],
      ['remove every taint', { spec: { taints: null } }],
      ['add a taint', { spec: { taints: [...registered, extra] } }],
      ['remove the not-ready taint and add another', { spec: { taints: [...withoutOurs, extra] } }],
      [
        "remove the not-ready taint and change the operator's",
        { spec: { taints: withoutOurs.map((t) => (t.key === OPERATOR_TAINT.key ? { ...t, value: 'web' } : t)) } },
      ],
      ['reorder the taints', { spec: { taints: [...registered].reverse() } }],
      [
        'turn the not-ready taint into NoExecute',
        { spec: { taints: registered.map((t) => (isOurs(t) ? { ...t, effect: 'NoExecute' } : t)) } },
      ],
      ['remove the not-ready taint and cordon', { spec: { taints: withoutOurs, unschedulable: true } }],
      ['remove the not-ready taint and set a provider ID', { spec: { taints: withoutOurs, providerID: 'x://y' } }],
    ];
    for (const [what, body] of cases) {
      const err = await rejection(a.patchNode({ name: 'node-a', body }, merge));
      expect([what, err.code]).toEqual([what, 403]);
      expect([what, err.message]).toEqual([what, expect.stringContaining(SPEC_DENIED)]);
    }
    expect(await taintsOf('node-a')).toEqual(registered);
    // Accepted: the agent's own code removing exactly that taint, once; the operator's stays.
    expect(await store('node-a').removeTaint('node-a', NOT_READY_TAINT)).toBe('removed');
    expect(await taintsOf('node-a')).toEqual(withoutOurs);
    expect(await store('node-a').removeTaint('node-a', NOT_READY_TAINT)).toBe('absent');
    // The agent may not put it back (it never tries: re-adding is not an agent's to do).
    const readd = await rejection(a.patchNode({ name: 'node-a', body: { spec: { taints: registered } } }, merge));
    expect(readd.code).toBe(403);
    expect(await taintsOf('node-a')).toEqual(withoutOurs);
    expect(await taintsOf('node-b')).toEqual(registered);
  });

  it("names every NodeSpec field the API server has, so a new one cannot ride along with the taint's removal", async () => {
    const policy = findManifest<{ spec: { variables: { name: string; expression: string }[] } }>(
      manifests,
      'ValidatingAdmissionPolicy',
    );
    const expr = policy.spec.variables.find((v) => v.name === 'onlyNotReadyTaintRemoved')?.expression ?? '';
    const named = new Set([...expr.matchAll(/\bobject\.\?spec\.\?([A-Za-z]+)/g)].map((m) => m[1]));
    const r = await api.kubectl(['get', '--raw', '/openapi/v3/api/v1']);
    const schema = JSON.parse(r.stdout) as {
      components: { schemas: Record<string, { properties?: Record<string, unknown> }> };
    };
    const fields = Object.keys(schema.components.schemas['io.k8s.api.core.v1.NodeSpec']?.properties ?? {}).sort();
    expect(fields.length).toBeGreaterThan(3);
    expect([...named].sort()).toEqual(fields);
  });

  it('with notReadyTaint.remove=false the policy allows no spec change at all, the taint removal included', async () => {
    await applyChart(api, { set: ['notReadyTaint.remove=false'] });
    try {
      // The API server picks the changed policy up through an informer: wait until a dry run of
      // the removal is refused, then make the agent's real request.
      const b = agentApi('node-b');
      const taints = (await admin.readNode({ name: 'node-b' })).spec?.taints ?? [];
      const idx = taints.findIndex((t) => t.key === NOT_READY_TAINT.key);
      expect(idx).toBeGreaterThanOrEqual(0);
      await waitFor(
        'the changed policy to be in force',
        () =>
          b
            .patchNode(
              { name: 'node-b', body: [{ op: 'remove', path: `/spec/taints/${idx}` }], dryRun: 'All' },
              k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.JsonPatch),
            )
            .then(
              () => undefined,
              () => true,
            ),
        { timeoutMs: 30_000, pollMs: 100 },
      );
      const err = await rejection(store('node-b').removeTaint('node-b', NOT_READY_TAINT));
      expect(err.code).toBe(403);
      expect(err.message).toContain('notReadyTaint.remove is false');
      expect(
        ((await admin.readNode({ name: 'node-b' })).spec?.taints ?? []).some((t) => t.key === NOT_READY_TAINT.key),
      ).toBe(true);
    } finally {
      await applyChart(api);
    }
  });

  it('bounds the sealnet.io/ annotations the agent writes: only the keys it publishes, each up to its size', async () => {
    // The bounds as the rendered policy holds them (values.yaml admissionPolicy.maxValueBytes).
    const policy = findManifest<{ spec: { variables: { name: string; expression: string }[] } }>(
      manifests,
      'ValidatingAdmissionPolicy',
    );
    const mapText = policy.spec.variables.find((v) => v.name === 'maxValueBytes')?.expression ?? '';
    const limits = new Map(
      [...mapText.matchAll(/'(sealnet\.io\/[a-z-]+)': (\d+)/g)].map((m) => [m[1] as string, Number(m[2])]),
    );
    // The allow-list is exactly what agents publish: every key of common/constants.ts but the
    // rotate request, which only `sealctl keys rotate` writes with an operator's credentials.
    const published = Object.values(ANNOTATIONS)
      .filter((k) => k !== ANNOTATIONS.rotateRequest)
      .sort();
    expect([...limits.keys()].sort()).toEqual(published);
    const before = await annotationsOf('node-a');
    const a = store('node-a');
    try {
      // Refused: a key agents do not publish, the operator's rotate request, a value one byte over
      // its bound (small field, status), and a bound counted in bytes, not characters.
      const refused: [string, Record<string, string>, string][] = [
        [
          'an unknown key',
          { 'sealnet.io/evil': 'x' },
          'may not write annotation sealnet.io/evil: not one of the sealnet.io/ annotations an agent publishes',
        ],
        [
          'the rotate request',
          { [ANNOTATIONS.rotateRequest]: '{"id":"r-1","requestedAt":"2026-01-01T00:00:00Z"}' },
          `may not write annotation ${ANNOTATIONS.rotateRequest}`,
        ],
        [
          'an unknown key beside allowed ones',
          { [ANNOTATIONS.mode]: 'wireguard', 'sealnet.io/zz': 'x' },
          'may not write annotation sealnet.io/zz',
        ],
        [
          'an endpoint one byte over',
          { [ANNOTATIONS.endpoint]: 'x'.repeat(limits.get(ANNOTATIONS.endpoint)! + 1) },
          `may not write ${limits.get(ANNOTATIONS.endpoint)! + 1} bytes to annotation ${ANNOTATIONS.endpoint}: at most ${limits.get(ANNOTATIONS.endpoint)} bytes`,
        ],
        [
          'a status one byte over',
          { [ANNOTATIONS.status]: 'x'.repeat(limits.get(ANNOTATIONS.status)! + 1) },
          `bytes to annotation ${ANNOTATIONS.status}: at most ${limits.get(ANNOTATIONS.status)} bytes`,
        ],
        [
          'multi-byte characters over the byte bound',
          { [ANNOTATIONS.endpoint]: '€'.repeat(Math.ceil((limits.get(ANNOTATIONS.endpoint)! + 1) / 3)) },
          `bytes to annotation ${ANNOTATIONS.endpoint}`,
        ],
      ];
      for (const [what, patch, msg] of refused) {
        const err = await rejection(a.patchAnnotations('node-a', patch));
        expect([what, err.code]).toEqual([what, 403]);
        expect([what, err.message]).toEqual([what, expect.stringContaining('ValidatingAdmissionPolicy')]);
        expect([what, err.message]).toEqual([what, expect.stringContaining(msg)]);
      }
      expect(await annotationsOf('node-a')).toEqual(before);
      // Accepted: every published key with a value exactly at its bound (one request per key:
      // together they would pass the API server's 256 KiB limit on all annotations).
      for (const [key, max] of limits) {
        await a.patchAnnotations('node-a', { [key]: 'x'.repeat(max) });
        expect([key, (await annotationsOf('node-a'))[key]?.length]).toEqual([key, max]);
      }
      // An operator's value the agent may not write (a rotate request, an oversized status)
      // does not block the agent's own later writes, which leave it as it is.
      const merge = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch);
      await admin.patchNode(
        {
          name: 'node-a',
          body: {
            metadata: {
              annotations: {
                [ANNOTATIONS.rotateRequest]: '{"id":"r-2"}',
                [ANNOTATIONS.status]: 'y'.repeat(limits.get(ANNOTATIONS.status)! + 10),
              },
            },
          },
        },
        merge,
      );
      await a.patchAnnotations('node-a', { [ANNOTATIONS.endpoint]: '198.18.0.1:51880' });
      expect((await annotationsOf('node-a'))[ANNOTATIONS.endpoint]).toBe('198.18.0.1:51880');
      // ... and the agent may still remove its own keys.
      await a.patchAnnotations('node-a', { [ANNOTATIONS.status]: undefined });
      expect(await annotationsOf('node-a')).not.toHaveProperty([ANNOTATIONS.status]);
    } finally {
      // Put node-a's sealnet.io/ annotations back for the tests after this one.
      const now = await annotationsOf('node-a');
      const restore: Record<string, string | null> = {};
      for (const k of Object.keys(now)) if (k.startsWith('sealnet.io/') && !(k in before)) restore[k] = null;
      for (const [k, v] of Object.entries(before)) if (k.startsWith('sealnet.io/')) restore[k] = v;
      await admin.patchNode(
        { name: 'node-a', body: { metadata: { annotations: restore } } },
        k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
      );
    }
    expect(await annotationsOf('node-a')).toEqual(before);
  });

  it('rejects a token without a node claim, even for sealnet.io/ annotations', async () => {
    const err = await rejection(store('unbound').patchAnnotations('node-a', { [KEY]: FAKE_KEY_B }));
    expect(err.code).toBe(403);
    expect(err.message).toContain('has no node-name claim');
    expect((await annotationsOf('node-a'))[KEY]).toBe(FAKE_KEY_A);
  });

  it('denies the agent Secrets, Pods, ConfigMaps, node status, and creating or deleting Nodes (RBAC)', async () => {
    const as = (args: string[]): Promise<{ code: number | undefined; stderr: string }> =>
      api.kubectl(args, { kubeconfig: kubeconfig['node-a'], check: false });
    for (const args of [
      ['get', 'secrets', '-A'],
      ['get', 'secret', 'anything', '-n', 'kube-system'],
      ['get', 'pods', '-A'],
      ['get', 'configmaps', '-n', 'sealnet'],
      ['create', 'configmap', 'x', '-n', 'sealnet'],
      ['delete', 'node', 'node-b'],
      ['delete', 'node', 'node-a'],
    ]) {
      const r = await as(args);
      expect([args.join(' '), r.code]).toEqual([args.join(' '), 1]);
      expect([args.join(' '), r.stderr]).toEqual([args.join(' '), expect.stringMatching(/forbidden/i)]);
    }
    const status = await rejection(
      agentApi('node-a').patchNodeStatus(
        { name: 'node-a', body: { status: { addresses: [{ type: 'InternalIP', address: '203.0.113.1' }] } } },
        k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
      ),
    );
    expect(status.code).toBe(403);
    const create = await rejection(
      agentApi('node-a').createNode({
        body: nodeObject({ name: 'node-z', address: '198.18.0.9', podCIDR: '100.64.9.0/24' }),
      }),
    );
    expect(create.code).toBe(403);
    // What it may do, as the API server itself lists it: nodes, and nothing beyond the
    // discovery/self-review rules every authenticated user has.
    const rules = (await as(['auth', 'can-i', '--list'])) as unknown as { stdout: string };
    const resourceRules = rules.stdout
      .split('\n')
      .slice(1)
      .filter((l) => l.trim() !== '' && !l.trimStart().startsWith('['))
      .map((l) => l.trim().split(/\s+/)[0]);
    expect(resourceRules.sort()).toEqual([
      'nodes',
      'selfsubjectaccessreviews.authorization.k8s.io',
      'selfsubjectreviews.authentication.k8s.io',
      'selfsubjectrulesreviews.authorization.k8s.io',
    ]);
  });

  it('leaves other identities alone: an admin may still change any annotation', async () => {
    await admin.patchNode(
      { name: 'node-b', body: { metadata: { annotations: { [KEY]: FAKE_KEY_A, 'example.com/y': '1' } } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    );
    expect((await annotationsOf('node-b'))[KEY]).toBe(FAKE_KEY_A);
  });

  it("invalidates the agent's token when its Node object is deleted", async () => {
    await admin.deleteNode({ name: 'node-b' });
    // The API server caches successful token reviews for a few seconds.
    const r = await waitFor(
      'the node-b token to be refused',
      async () => {
        const res = await api.kubectl(['get', 'nodes'], { kubeconfig: kubeconfig['node-b'], check: false });
        return res.code === 0 ? undefined : res;
      },
      { timeoutMs: 30_000, pollMs: 500 },
    );
    expect(r.stderr).toMatch(/Unauthorized|must be logged in/);
    // node-a's token is unaffected.
    expect((await api.kubectl(['get', 'nodes', '-o', 'name'], { kubeconfig: kubeconfig['node-a'] })).stdout).toContain(
      'node/node-a',
    );
  });
});
