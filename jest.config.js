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
    { ...common, displayName: 'unit', testMatch: ['<rootDir>/**/*.test.ts'], testPathIgnorePatterns: ['/node_modules/', '/dist/', '\\.kernel\\.test\\.ts$', '\\.e2e\\.test\\.ts$'] },
    { ...common, displayName: 'kernel', testMatch: ['<rootDir>/**/*.kernel.test.ts'], testPathIgnorePatterns: ['/node_modules/', '/dist/'] },
    { ...common, displayName: 'e2e', testMatch: ['<rootDir>/**/*.e2e.test.ts'], testPathIgnorePatterns: ['/node_modules/', '/dist/'] },
  ],
};
