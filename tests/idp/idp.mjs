// The local identity provider of airlock's OAuth end-to-end tests
// (host/tests/e2e/idp.rs starts it). The protocol is the npm package
// oauth2-mock-server's (pinned in package-lock.json): authorization code with
// PKCE (S256 checked), refresh_token, signed JWT access tokens. This file only
// starts it and configures its documented hooks:
//
// - the authorisation response carries `iss` (RFC 9207), the package's
//   issuer (http://localhost:PORT for a loopback bind);
// - stdin lines change later token responses:
//     `expires_in N`           their `expires_in`
//     `refresh invalid_grant`  refresh requests are answered 400 invalid_grant
//     `refresh ok`             back to the package's answer
// - stdout has one JSON line per event: `ready` (url, issuer), `authorize`,
//   `token` (grant type, whether a PKCE verifier and client authentication
//   came, the status, the access token issued). Ends when stdin closes.
import readline from 'node:readline';
import { OAuth2Server } from 'oauth2-mock-server';

const emit = (event) => process.stdout.write(`${JSON.stringify(event)}\n`);

const server = new OAuth2Server();
await server.issuer.keys.generate('RS256');
await server.start(0, '127.0.0.1');

let expiresIn = null;
let refreshAnswer = 'ok';

server.service.on('beforeAuthorizeRedirect', (redirect, req) => {
  const query = new URL(req.url, 'http://idp').searchParams;
  redirect.url.searchParams.set('iss', server.issuer.url);
  emit({
    event: 'authorize',
    client_id: query.get('client_id'),
    code_challenge_method: query.get('code_challenge_method'),
    has_code_challenge: query.has('code_challenge'),
  });
});

server.service.on('beforeResponse', (response, req) => {
  const grant = req.body.grant_type;
  if (grant === 'refresh_token' && refreshAnswer === 'invalid_grant') {
    response.statusCode = 400;
    response.body = { error: 'invalid_grant', error_description: 'the refresh token is revoked' };
  } else if (expiresIn !== null && response.statusCode === 200) {
    response.body.expires_in = expiresIn;
  }
  emit({
    event: 'token',
    grant_type: grant,
    has_code_verifier: typeof req.body.code_verifier === 'string',
    client_authenticated: (req.headers.authorization ?? '').startsWith('Basic '),
    status: response.statusCode,
    access_token: response.body.access_token ?? null,
  });
});

const input = readline.createInterface({ input: process.stdin });
input.on('line', (line) => {
  const [what, value] = line.trim().split(/\s+/);
  if (what === 'expires_in') expiresIn = Number(value);
  if (what === 'refresh') refreshAnswer = value;
  emit({ event: 'configured', line: line.trim() });
});
input.on('close', async () => {
  await server.stop();
  process.exit(0);
});

emit({ event: 'ready', url: `http://127.0.0.1:${server.address().port}`, issuer: server.issuer.url });
