// A real OAuth 2.1 / OpenID authorization server for Switchboard's tests: panva's `oidc-provider`
// on 127.0.0.1, set up the way an MCP authorization server is expected to behave (open dynamic
// client registration, RFC 8707 resource indicators picking the audience of JWT access tokens,
// PKCE with S256 always required, rotating refresh tokens, revocation and introspection), with the
// library's own development login and consent pages for a browser to go through.
//
//   node oidc_server.mjs [--port P] [--config JSON]
//
// `--port 0` (the default) lets the system pick the port. Once it listens, the server prints one
// line on stdout, `PEER_READY <issuer>`, with the issuer `http://127.0.0.1:PORT`. The JSON
// configuration (every field optional):
//
//   accessTokenTtl   seconds an access token lives (default 3600); short values test refreshes
//   refreshTokenTtl  seconds a refresh token lives (default 14 days)
//   resourceScopes   the scopes every resource server offers (default ["mcp"]); an authorization
//                    request must ask for at least one of them (or `openid`), or oidc-provider
//                    answers `access_denied` since nothing would be granted
//   resources        when given, the only resource indicators accepted; otherwise any http(s) URL
//   clients          pre-registered clients: oidc-provider client metadata objects
//
// Test-only controls live under /_test on the same port (they are no part of oidc-provider):
//
//   GET  /_test/token-requests    {"count": N}: POSTs to the token endpoint so far, refused or not
//   GET  /_test/token-outage      {"enabled": bool}
//   POST /_test/token-outage      body {"enabled": bool}: while enabled the token endpoint answers
//                                 503 before oidc-provider sees the request, so no grant changes
//   POST /_test/revoke-grants     forgets every grant and every token issued under one, so the next
//                                 refresh gets `invalid_grant`; answers {"revoked": number of grants}
//
// Every request is logged on stderr as `METHOD path -> status` (never the query string).
import * as crypto from 'node:crypto';
import * as http from 'node:http';
import { parseArgs } from 'node:util';

import { importPeer } from './peer_modules.mjs';

const { default: Provider, errors } = await importPeer('oidc-provider');

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    config: { type: 'string', default: '{}' },
  },
});

const settings = JSON.parse(args.config);
const accessTokenTtl = settings.accessTokenTtl ?? 3600;
const refreshTokenTtl = settings.refreshTokenTtl ?? 14 * 24 * 60 * 60;
const resourceScopes = settings.resourceScopes ?? ['mcp'];
const allowedResources = settings.resources ? new Set(settings.resources) : undefined;
const clients = settings.clients ?? [];

// ---- Storage -------------------------------------------------------------------------------------
// One in-memory map for every model, so the test control can find and drop all grants at once
// (oidc-provider's own memory adapter has no way to list what it holds).
const store = new Map();

function keyOf(model, id) {
  return `${model}:${id}`;
}

function live(entry) {
  return entry && (entry.expiresAt === undefined || entry.expiresAt > Date.now());
}

class TestAdapter {
  constructor(model) {
    this.model = model;
  }

  async upsert(id, payload, expiresIn) {
    const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : undefined;
    store.set(keyOf(this.model, id), { model: this.model, payload, expiresAt });
  }

  async find(id) {
    const entry = store.get(keyOf(this.model, id));
    return live(entry) ? entry.payload : undefined;
  }

  async findByUid(uid) {
    for (const entry of store.values()) {
      if (entry.model === this.model && entry.payload.uid === uid && live(entry)) {
        return entry.payload;
      }
    }
    return undefined;
  }

  async findByUserCode(userCode) {
    for (const entry of store.values()) {
      if (entry.model === this.model && entry.payload.userCode === userCode && live(entry)) {
        return entry.payload;
      }
    }
    return undefined;
  }

  async consume(id) {
    const entry = store.get(keyOf(this.model, id));
    if (entry) {
      entry.payload.consumed = Math.floor(Date.now() / 1000);
    }
  }

  async destroy(id) {
    store.delete(keyOf(this.model, id));
  }

  async revokeByGrantId(grantId) {
    for (const [key, entry] of store) {
      if (entry.model === this.model && entry.payload.grantId === grantId) {
        store.delete(key);
      }
    }
  }
}

function revokeAllGrants() {
  let revoked = 0;
  for (const [key, entry] of store) {
    if (entry.model === 'Grant') {
      revoked += 1;
      store.delete(key);
    } else if (entry.payload.grantId !== undefined) {
      store.delete(key);
    }
  }
  return revoked;
}

// ---- Keys ------------------------------------------------------------------------------------------
// A fresh RSA signing key per process; resource servers fetch its public half from jwks_uri.
function signingKey() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: crypto.randomBytes(8).toString('hex'), use: 'sig', alg: 'RS256' };
}

// ---- Resource servers (RFC 8707) ------------------------------------------------------------------
async function getResourceServerInfo(_ctx, resourceIndicator) {
  const url = URL.parse(resourceIndicator);
  const acceptable = allowedResources
    ? allowedResources.has(resourceIndicator)
    : url !== null && (url.protocol === 'http:' || url.protocol === 'https:');
  if (!acceptable) {
    throw new errors.InvalidTarget(`unknown resource indicator ${resourceIndicator}`);
  }
  return {
    scope: resourceScopes.join(' '),
    // The token's `aud` is the resource indicator exactly as the client sent it.
    audience: resourceIndicator,
    accessTokenTTL: accessTokenTtl,
    // A JWT (RFC 9068) so that the resource server can check it with the issuer's keys alone.
    accessTokenFormat: 'jwt',
    jwt: { sign: { alg: 'RS256' } },
  };
}

// ---- Listening first, so that the issuer can name the port the system picked ----------------------
const server = http.createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(Number(args.port), '127.0.0.1', resolve);
});
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  adapter: TestAdapter,
  clients,
  jwks: { keys: [signingKey()] },
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  // Resource-server scopes are also listed here so that a client may register with them.
  scopes: ['openid', 'offline_access', ...resourceScopes],
  // OAuth 2.1 keeps only the authorization code flow (no implicit or hybrid responses).
  responseTypes: ['code'],
  clientDefaults: {
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
  },
  features: {
    // The library's built-in login (any login and password) and consent pages.
    devInteractions: { enabled: true },
    // Open registration (RFC 7591): no initial access token.
    registration: { enabled: true, initialAccessToken: false },
    resourceIndicators: { enabled: true, getResourceServerInfo },
    revocation: { enabled: true },
    introspection: { enabled: true },
    userinfo: { enabled: true },
  },
  // OAuth 2.1: every client, confidential or public, must send an S256 code challenge.
  pkce: { required: () => true },
  // A refresh token with every authorization-code grant of a client allowed to refresh, with or
  // without `offline_access`, rotated on every use.
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: true,
  ttl: {
    AccessToken: accessTokenTtl,
    AuthorizationCode: 60,
    ClientCredentials: accessTokenTtl,
    DeviceCode: 600,
    BackchannelAuthenticationRequest: 600,
    PreAuthorizedCode: 600,
    Grant: refreshTokenTtl,
    IdToken: 3600,
    Interaction: 3600,
    RefreshToken: refreshTokenTtl,
    Session: 24 * 60 * 60,
  },
  findAccount: async (_ctx, sub) => ({
    accountId: sub,
    claims: async () => ({ sub }),
  }),
});

// Plain http on loopback needs nothing more: oidc-provider accepts an http issuer, and http
// redirect URIs for web clients unless they use the implicit flow (off here, see responseTypes);
// its cookies are only marked Secure over https. `provider.proxy` stays false, as nothing sits in
// front of it.

// ---- Test controls, in front of everything oidc-provider does ---------------------------------------
const control = { tokenRequests: 0, tokenOutage: false };
const tokenPath = new URL(`${issuer}/token`).pathname;

async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) {
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  return text ? JSON.parse(text) : {};
}

provider.use(async (ctx, next) => {
  const { path } = ctx;
  try {
    if (ctx.path === tokenPath && ctx.method === 'POST') {
      control.tokenRequests += 1;
      if (control.tokenOutage) {
        ctx.status = 503;
        ctx.set('retry-after', '1');
        ctx.body = {
          error: 'temporarily_unavailable',
          error_description: 'the token endpoint is switched off by the test',
        };
        return;
      }
    }
    if (ctx.path.startsWith('/_test/')) {
      await testControl(ctx);
      return;
    }
    await next();
  } finally {
    process.stderr.write(`${ctx.method} ${path} -> ${ctx.status}\n`);
  }
});

async function testControl(ctx) {
  ctx.set('cache-control', 'no-store');
  switch (`${ctx.method} ${ctx.path}`) {
    case 'GET /_test/token-requests':
      ctx.body = { count: control.tokenRequests };
      return;
    case 'GET /_test/token-outage':
      ctx.body = { enabled: control.tokenOutage };
      return;
    case 'POST /_test/token-outage': {
      const body = await readJson(ctx.req);
      control.tokenOutage = Boolean(body.enabled);
      ctx.body = { enabled: control.tokenOutage };
      return;
    }
    case 'POST /_test/revoke-grants':
      ctx.body = { revoked: revokeAllGrants() };
      return;
    default:
      ctx.status = 404;
      ctx.body = { error: 'no such test control' };
  }
}

// oidc-provider checks static clients on first use; a mistake in a test's client list should
// stop the server at once instead, with the reason on stderr.
for (const client of clients) {
  await provider.Client.find(String(client.client_id));
}

server.on('request', provider.callback());
process.stdout.write(`PEER_READY ${issuer}\n`);

// The test harness kills the process; a polite stop on SIGTERM or SIGINT as well.
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close();
    process.exit(0);
  });
}
