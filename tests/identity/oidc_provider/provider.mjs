// A real OpenID Provider (panva/oidc-provider 9.x, OpenID-certified) for Kizuna's identity tests.
//
// Configured from the environment by tests/identity/oidc_fixture.py:
//   PORT                   where to listen (loopback only)
//   ISSUER                 the issuer it names in discovery and in every ID token; by default its own URL.
//                          A second instance may claim another instance's issuer: that is how the tests get an
//                          ID token with the right issuer signed by a key the relying party has never seen.
//   OIDC_CLIENTS           JSON list of client metadata ({client_id, client_secret, redirect_uris, ...}); extra
//                          members (token_endpoint_auth_method, id_token_signed_response_alg) are passed through.
//   JWKS                   JSON {"keys": [private JWKs]} it signs with; two instances given the same keys sign
//                          alike (the "another issuer" test needs a token the relying party's keys verify).
//   CLOCK_OFFSET_SECONDS   shifts this process's clock: -7200 issues ID tokens that expired an hour ago.
//   CONTROL_TOKEN          enables the test-control endpoints below, behind this bearer token.
//
// Accounts: any login name signs in (dev interactions: a login form and a consent form, no password check);
// its subject is the login name, its email <login>@example.test, verified.
//
// Test control (only with CONTROL_TOKEN): the tests make the provider misbehave the way an attacker on the
// network or a compromised provider would, with ID tokens that real providers issued:
//   POST /__test__/substitute-id-token  {"id_token": "..."}  the next successful token response carries this
//                                                            ID token instead of the one it issued
//   GET  /__test__/counts                                     requests served per path (JWKS caching checks)

import { createServer } from 'node:http';

import Provider from 'oidc-provider';

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`provider.mjs: ${name} is required`);
    process.exit(2);
  }
  return value;
}

const port = Number(required('PORT'));
const issuer = process.env.ISSUER || `http://127.0.0.1:${port}`;
const clients = JSON.parse(required('OIDC_CLIENTS')).map((client) => ({
  grant_types: ['authorization_code'],
  response_types: ['code'],
  ...client,
}));
const jwks = JSON.parse(required('JWKS'));
const controlToken = process.env.CONTROL_TOKEN || '';

const clockOffsetMs = Number(process.env.CLOCK_OFFSET_SECONDS || '0') * 1000;
if (clockOffsetMs !== 0) {
  // oidc-provider reads the time through Date.now() (iat, exp, auth_time): a provider whose clock is wrong.
  const realNow = Date.now;
  Date.now = () => realNow() + clockOffsetMs;
}

const provider = new Provider(issuer, {
  clients,
  jwks,
  findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          email: `${id}@example.test`,
          email_verified: true,
          name: `Test person ${id}`,
        };
      },
    };
  },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
  },
  // Put the scope's claims (email, name) in the ID token itself, as Google and LINE do, not only at userinfo.
  conformIdTokenClaims: false,
  features: {
    devInteractions: { enabled: true },
  },
  // HS256 too: LINE's web login signs ID tokens with the channel secret, and the tests prove Kizuna verifies
  // those only when the operator allowed HS256.
  enabledJWA: { idTokenSigningAlgValues: ['RS256', 'PS256', 'ES256', 'EdDSA', 'HS256'] },
  // Every client proves possession of its code with S256 PKCE, as Kizuna always sends it.
  pkce: { required: () => true },
  ttl: {
    // Long enough that the skewed-clock instance's cookies are not born expired.
    Interaction: 24 * 60 * 60,
    Session: 14 * 24 * 60 * 60,
    Grant: 14 * 24 * 60 * 60,
    AuthorizationCode: 60,
    AccessToken: 60 * 60,
    IdToken: 60 * 60,
  },
  cookies: { keys: ['kizuna-test-provider-cookie-key'] },
  // Plain-text errors are easier to read in a failing test than the default HTML page.
  async renderError(ctx, out) {
    ctx.type = 'text';
    ctx.body = JSON.stringify(out);
  },
});

const postOnlyClients = Object.fromEntries(clients
  .filter((client) => client.token_endpoint_auth_method === 'client_secret_post')
  .map((client) => [client.client_id, true]));

function basicAuthClientId(ctx) {
  const [scheme, value] = (ctx.get('authorization') || '').split(' ');
  if (scheme?.toLowerCase() !== 'basic' || !value) return undefined;
  const decoded = Buffer.from(value, 'base64').toString('utf8');
  return decodeURIComponent(decoded.slice(0, decoded.indexOf(':')).replaceAll('+', ' '));
}

const counts = {};
let substituteIdToken = null;

provider.use(async (ctx, next) => {
  counts[ctx.path] = (counts[ctx.path] || 0) + 1;
  if (ctx.path.startsWith('/__test__/')) {
    if (!controlToken || ctx.get('authorization') !== `Bearer ${controlToken}`) {
      ctx.status = 404;
      return;
    }
    if (ctx.method === 'POST' && ctx.path === '/__test__/substitute-id-token') {
      const chunks = [];
      for await (const chunk of ctx.req) chunks.push(chunk);
      substituteIdToken = JSON.parse(Buffer.concat(chunks).toString('utf8')).id_token;
      ctx.status = 204;
      return;
    }
    if (ctx.method === 'GET' && ctx.path === '/__test__/counts') {
      ctx.body = counts;
      return;
    }
    ctx.status = 404;
    return;
  }
  if (ctx.path === '/token' && ctx.method === 'POST' && basicAuthClientId(ctx) in postOnlyClients) {
    // oidc-provider takes a secret either way; LINE's token endpoint reads it from the form only. A client
    // registered with client_secret_post is held to it here, so the tests show Kizuna can be configured for it.
    ctx.status = 401;
    ctx.body = { error: 'invalid_client', error_description: 'this client authenticates with client_secret_post' };
    return;
  }
  await next();
  if (ctx.path === '/token' && ctx.status === 200 && substituteIdToken && ctx.body?.id_token) {
    ctx.body = { ...ctx.body, id_token: substituteIdToken };
    substituteIdToken = null;
  }
});

const server = createServer(provider.callback());
server.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on 127.0.0.1:${port}, issuer ${issuer}`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
