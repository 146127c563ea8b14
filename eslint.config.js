// Lint is a guard-rail for the trust zones (see ../shared/style.md): protocol is pure, proxy never reaches the
// host side, cli never imports proxy code (it only knows the bundled proxy file), action only calls cli.
import tseslint from 'typescript-eslint';
import importX from 'eslint-plugin-import-x';

const zone = (target, from, message) => ({ target, from, message });

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', '**/*.js', '**/*.mjs', 'test/fixtures/**'] },
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    plugins: { 'import-x': importX },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/switch-exhaustiveness-check': ['error', { considerDefaultExhaustiveForUnions: true }],
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true, allowBoolean: true }],
      'import-x/no-restricted-paths': [
        'error',
        {
          zones: [
            zone('./src/protocol', './src/proxy', 'protocol is pure and imports no other zone'),
            zone('./src/protocol', './src/cli', 'protocol is pure and imports no other zone'),
            zone('./src/protocol', './src/action', 'protocol is pure and imports no other zone'),
            zone('./src/proxy', './src/cli', 'the proxy never imports the host side'),
            zone('./src/proxy', './src/action', 'the proxy never imports the host side'),
            zone('./src/cli', './src/proxy', 'the CLI only knows the bundled proxy file, never its code'),
            zone('./src/cli', './src/action', 'the CLI does not depend on the Action'),
            zone('./src/action', './src/proxy', 'the Action calls the CLI, never the proxy'),
          ],
        },
      ],
      'no-restricted-imports': 'off',
    },
  },
  {
    files: ['src/protocol/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['node:*', 'fs', 'net', 'child_process', 'os', 'dgram', 'tls', 'http', 'https', 'crypto'],
              message: 'protocol is pure: no I/O modules',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['src/proxy/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        { patterns: [{ group: ['node:child_process', 'child_process'], message: 'the proxy never spawns processes' }] },
      ],
    },
  },
  {
    files: ['test/**/*.ts', 'bench/**/*.ts', 'scripts/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/require-await': 'off',
      // node:test's describe/it/before/after return promises the runner itself awaits.
      '@typescript-eslint/no-floating-promises': [
        'error',
        {
          allowForKnownSafeCalls: [
            {
              from: 'package',
              package: 'node:test',
              name: ['describe', 'it', 'test', 'before', 'after', 'beforeEach', 'afterEach', 'suite'],
            },
          ],
        },
      ],
      'import-x/no-restricted-paths': 'off',
    },
  },
);
