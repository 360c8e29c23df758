// Three tiers (DESIGN.md "Test tiers"): unit tests run anywhere; kernel tests need root and
// build scratch network namespaces; e2e tests build a namespace cluster with real agents.
const common = {
  extensionsToTreatAsEsm: ['.ts'],
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  transform: { '^.+\\.ts$': ['ts-jest', { useESM: true }] },
  testEnvironment: 'node',
};
export default {
  projects: [
    {
      ...common,
      displayName: 'unit',
      testMatch: ['<rootDir>/**/*.test.ts'],
      testPathIgnorePatterns: [
        '/node_modules/',
        '/dist/',
        '\\.kernel\\.test\\.ts$',
        '\\.e2e\\.test\\.ts$',
        '\\.k8s\\.test\\.ts$',
        '\\.image\\.test\\.ts$',
        '\\.cluster\\.test\\.ts$',
      ],
    },
    // test/vm/ holds the guest-only kernel tests (kernel WireGuard, XFRM ESP): they run inside the
    // qemu guest (`npm run test:kernel`, which sets SEALNET_VM_GUEST=1), not on this host.
    {
      ...common,
      displayName: 'kernel',
      testMatch: ['<rootDir>/**/*.kernel.test.ts'],
      testPathIgnorePatterns: [
        '/node_modules/',
        '/dist/',
        ...(process.env.SEALNET_VM_GUEST === '1' ? [] : ['/test/vm/']),
      ],
    },
    {
      ...common,
      displayName: 'e2e',
      testMatch: ['<rootDir>/**/*.e2e.test.ts'],
      testPathIgnorePatterns: ['/node_modules/', '/dist/'],
    },
    // The agent image (test/image/): builds it with scripts/image.sh, unpacks and runs it (root).
    {
      ...common,
      displayName: 'image',
      testMatch: ['<rootDir>/**/*.image.test.ts'],
      testPathIgnorePatterns: ['/node_modules/', '/dist/'],
    },
    // Tier 4: a real kube-apiserver + etcd (test/k8s/); binaries from scripts/k8s-binaries.sh.
    {
      ...common,
      displayName: 'k8s',
      testMatch: ['<rootDir>/**/*.k8s.test.ts'],
      testPathIgnorePatterns: ['/node_modules/', '/dist/'],
    },
    // Tier 5 (issue 15): real kubelets, containerd, runc and CNI in namespaces (test/cluster/);
    // binaries from scripts/cluster-binaries.sh, the agent image from `npm run image`.
    {
      ...common,
      displayName: 'cluster',
      testMatch: ['<rootDir>/**/*.cluster.test.ts'],
      testPathIgnorePatterns: ['/node_modules/', '/dist/'],
    },
  ],
};
