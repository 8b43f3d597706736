#!/usr/bin/env node
// The CLI runs from the bundle that `npm run build` makes (dist/bundle/, see scripts/bundle.js): oclif and
// lcsync's commands in a few files, where loading them module by module opened about 200 files.
await import('../dist/bundle/cli/main.js');
