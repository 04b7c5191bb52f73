// `npm run build`: installs the pinned tools on the first run, turns
// src/plugin.js into a WebAssembly component with jco componentize, then
// embeds and checks the manifest with `airlock plugin pack`.
// The airlock binary is $AIRLOCK, else `airlock` on PATH.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';

function run(program, args) {
  console.log(`> ${program} ${args.join(' ')}`);
  const done = spawnSync(program, args, { stdio: 'inherit', shell: process.platform === 'win32' });
  if (done.error) {
    const hint = program === airlock ? ' (set AIRLOCK=/path/to/airlock or put airlock on PATH)' : '';
    console.error(`cannot run ${program}: ${done.error.message}${hint}`);
    process.exit(1);
  }
  if (done.status !== 0) process.exit(done.status ?? 1);
}

const airlock = process.env.AIRLOCK || 'airlock';

// Exactly the versions package-lock.json pins: installed on the first
// build, and again after package-lock.json changed.
const installed = 'node_modules/.package-lock.json';
if (!existsSync(installed) || statSync(installed).mtimeMs < statSync('package-lock.json').mtimeMs) {
  run('npm', ['ci', '--no-audit', '--no-fund']);
}

mkdirSync('dist', { recursive: true });
run('jco', [
  'componentize', 'src/plugin.js',
  '--bundle', '--bundle-config', 'bundle.config.mjs',
  '--wit', 'wit', '--world-name', '{{world}}',
  '--out', 'dist/component.wasm',
]);
run(airlock, ['plugin', 'pack', 'dist/component.wasm', '--manifest', 'airlock.toml', '-o', 'dist/{{id}}.wasm']);
console.log('built dist/{{id}}.wasm: install it with `airlock plugin install dist/{{id}}.wasm`');
