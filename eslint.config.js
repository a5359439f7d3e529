import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/', '.stack/', 'dist/', 'scratch/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      // Modules receive config from their composition root; only config loaders read the environment.
      'no-restricted-properties': [
        'error',
        {
          object: 'process',
          property: 'env',
          message: 'Read configuration in a config loader, not in modules.',
        },
      ],
    },
  },
  {
    files: [
      '**/config.ts',
      '**/load-config.ts',
      'services/main.ts',
      'services/api/worker.ts',
      'scripts/**',
      'test/**',
      'bin/**',
      '**/*.mjs',
    ],
    rules: { 'no-restricted-properties': 'off' },
  },
  {
    // Tests assert on parsed JSON field by field; typing every response adds nothing.
    files: ['test/**'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
  {
    files: ['**/*.mjs', 'bin/**'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly' } },
  },
);
