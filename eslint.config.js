// ESLint flat config: typescript-eslint's recommended rules over the TypeScript
// sources. Formatting is prettier's job (.prettierrc), not ESLint's.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  {
    ignores: ['dist/', 'node_modules/', 'test/fixtures/build/', '.bench/'],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      // `_name` marks a binding a signature or a destructuring needs but the code does not use.
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' },
      ],
      // A `let` assigned once but read first by a closure made before the assignment cannot be a const.
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
    },
  },
  {
    // Tests, the lab and scripts read the JSON a command printed; typing every such document would only restate
    // docs/CLI.md. Product code gets no such pass.
    files: ['test/**/*.ts', 'scripts/**/*.ts', 'lab/**/*.ts'],
    rules: {
      '@typescript-eslint/no-explicit-any': 'off',
    },
  },
);
