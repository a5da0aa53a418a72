import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    hookTimeout: 60_000,
    testTimeout: 30_000,
    pool: 'forks',
    // Each file holds one database (PGlite costs ~200–700 MB); two workers fit this 2-core machine.
    maxWorkers: 2,
  },
});
