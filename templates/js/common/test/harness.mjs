// A loopback stand-in of the service and the airlock binary on a temporary
// data directory, for test/plugin.test.mjs. The airlock binary is
// $AIRLOCK, else `airlock` on PATH.

import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const exec = promisify(execFile);

export const PLUGIN = 'dist/{{id}}.wasm';
export const TOKEN = 'smoke-test-token-0123456789';

/**
 * An HTTP server on 127.0.0.1 answering each request with
 * `answer(method, path, body) -> [status, json]`; `seen` lists what came in.
 */
export async function upstream(answer) {
  const seen = [];
  const server = createServer((request, response) => {
    let body = '';
    request.on('data', (chunk) => (body += chunk));
    request.on('end', () => {
      const { method, url: path, headers } = request;
      seen.push({ method, path, authorization: headers.authorization, body });
      const [status, json] = answer(method, path, body);
      response.writeHead(status, { 'content-type': 'application/json' });
      response.end(JSON.stringify(json));
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${server.address().port}`;
  return { url, seen, close: () => server.close() };
}

/** The airlock binary on a fresh data directory. */
export class Airlock {
  constructor() {
    this.bin = process.env.AIRLOCK || 'airlock';
    this.dir = mkdtempSync(join(tmpdir(), '{{id}}-'));
  }

  /** `airlock ARGS`; its stdout, or an error with what it said. */
  async run(args, env = {}) {
    const all = ['--data-dir', this.dir, '--quiet', ...args];
    // A test upstream on this machine: loopback allowed for this run only.
    const options = { env: { ...process.env, AIRLOCK_EGRESS_ALLOW_PRIVATE: '127.0.0.0/8', ...env } };
    try {
      return (await exec(this.bin, all, options)).stdout;
    } catch (e) {
      const hint = e.code === 'ENOENT' ? ' (set AIRLOCK=/path/to/airlock)' : '';
      throw new Error(`airlock ${args.join(' ')} failed${hint}:\n${e.stdout ?? ''}${e.stderr ?? e.message}`);
    }
  }

  /** Run `operation` on connection `smoke`; its JSON result. */
  async call(operation, input = {}) {
    return JSON.parse(await this.run(['call', 'smoke', operation, '--input', JSON.stringify(input)]));
  }

  remove() {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Install the built plugin and add connection `smoke` to `service` with a bearer token. */
export async function connect(airlock, service) {
  if (!existsSync(PLUGIN)) throw new Error(`${PLUGIN} is missing: build it first with \`npm run build\``);
  await airlock.run(['plugin', 'install', PLUGIN, '--approve']);
  await airlock.run(
    [
      'connection', 'add', 'smoke', '--plugin', '{{id}}', '--auth', 'bearer', '--secret-env', 'SMOKE_TOKEN',
      '--setting', `base-url=${service.url}`, '--global',
    ],
    { SMOKE_TOKEN: TOKEN },
  );
}
