import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['./test/global-setup.ts'],
    disableConsoleIntercept: true,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Network-namespace tests create their own labs with unique prefixes, but two
    // CPU-heavy transfers at once on a 2-core machine only make timings noisy.
    fileParallelism: false,
    // The last line of a run counts the skipped tests and says why they were skipped (test/skip.ts).
    reporters: ['default', './test/skip-reporter.ts'],
  },
});
