// Lint is a guard-rail for the trust zones (see ../shared/style.md): protocol is pure, proxy never reaches the
// host side, cli never imports proxy code (it only knows the bundled proxy file), action only calls cli.
import tseslint from 'typescript-eslint';
import importX, { createNodeResolver } from 'eslint-plugin-import-x';

const zone = (target, from, message) => ({ target, from, message });

// The CLI's rooms, top to bottom: a room imports only rooms below it (commands drive sessions, sessions drive the
// engine, everything may use host facilities and the error classes). An arrow upward is a layering mistake.
const CLI_LAYERS = [
  ['./src/cli/commands', './src/cli/main.ts', './src/cli/bin.ts'],
  ['./src/cli/images', './src/cli/kube', './src/cli/workflow'],
  ['./src/cli/session'],
  ['./src/cli/secrets'],
  ['./src/cli/config', './src/cli/engine'],
  ['./src/cli/host'],
  ['./src/cli/errors.ts'],
];
const cliLayerZones = CLI_LAYERS.flatMap((layer, depth) =>
  layer.flatMap((target) =>
    CLI_LAYERS.slice(0, depth)
      .flat()
      .map((from) => zone(target, from, `${target} sits below ${from}: move the shared piece down instead`)),
  ),
);

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', '**/*.js', '**/*.mjs', 'test/fixtures/**'] },
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    plugins: { 'import-x': importX },
    // Sources import `./x.js` and the file is `./x.ts` (NodeNext): without the alias no import resolves, and every
    // rule below that follows imports (zones, cycles) silently checks nothing.
    settings: {
      'import-x/extensions': ['.ts', '.js'],
      'import-x/parsers': { '@typescript-eslint/parser': ['.ts'] },
      'import-x/resolver-next': [
        createNodeResolver({ extensions: ['.ts', '.js', '.json'], extensionAlias: { '.js': ['.ts', '.js'] } }),
      ],
    },
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
            ...cliLayerZones,
          ],
        },
      ],
      // Type-only imports count too: a circle of types is still a circle for the next reader.
      'import-x/no-cycle': ['error', { ignoreExternal: true }],
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
