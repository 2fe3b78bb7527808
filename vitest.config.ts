import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/support/runtime-directory.ts'],
    benchmark: { include: ['test/bench/**/*.bench.ts'] },
    // Integration tests build network namespaces and run the real daemon: give them room,
    // and keep the two cores from being oversubscribed by too many at once.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    maxWorkers: 2,
    minWorkers: 1,
  },
});
