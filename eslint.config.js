// The linter of `npm test` (npm run lint): a small set of rules that catch real bugs, not style.
// Type-aware for TypeScript (no-floating-promises needs types), through tsconfig.test.json, which covers
// src/, test/ and scripts/lab.js; the other plain-JS scripts get the same rules that need no types.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const bugs = {
  ...js.configs.recommended.rules,
  eqeqeq: ['error', 'always', { null: 'ignore' }],
  'no-self-compare': 'error',
  'no-template-curly-in-string': 'error',
  'no-unused-vars': 'off',
  '@typescript-eslint/no-unused-vars': ['error', { args: 'none', caughtErrors: 'none', ignoreRestSiblings: true }],
};

export default tseslint.config(
  { ignores: ['dist/**', 'build/**', 'prebuilds/**', 'node_modules/**', 'native/**', 'coverage/**', 'tmp/**'] },
  {
    files: ['**/*.ts', 'scripts/lab.js'],
    languageOptions: {
      parser: tseslint.parser,
      parserOptions: { project: './tsconfig.test.json', tsconfigRootDir: import.meta.dirname },
    },
    plugins: { '@typescript-eslint': tseslint.plugin },
    rules: {
      ...bugs,
      // TypeScript checks these itself (and knows the globals).
      'no-undef': 'off',
      'no-redeclare': 'off',
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: false }],
    },
  },
  {
    files: ['**/*.js', '**/*.mjs', '**/*.cjs'],
    ignores: ['scripts/lab.js'],
    plugins: { '@typescript-eslint': tseslint.plugin },
    languageOptions: {
      ecmaVersion: 2023,
      sourceType: 'module',
      globals: { process: 'readonly', Buffer: 'readonly', console: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', setImmediate: 'readonly', URL: 'readonly', require: 'readonly', module: 'writable', __dirname: 'readonly', performance: 'readonly', AbortController: 'readonly', TextEncoder: 'readonly', TextDecoder: 'readonly', queueMicrotask: 'readonly', structuredClone: 'readonly', WebAssembly: 'readonly', globalThis: 'readonly' },
    },
    rules: bugs,
  },
);
