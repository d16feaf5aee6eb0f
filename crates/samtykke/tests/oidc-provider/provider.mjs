// An independent OpenID provider for Samtykke's tests (and for trying an
// upstream provider by hand): npm `oidc-provider` with a tiny interaction that
// is easy to drive over plain HTTP.
//
//   node provider.mjs CONFIG.json
//
// CONFIG.json:
//   {
//     "port": 4000,                                  // loopback port
//     "clients": [ {                                 // oidc-provider client metadata
//       "client_id": "samtykke", "client_secret": "…",
//       "redirect_uris": ["http://127.0.0.1:8080/login/callback"],
//       "post_logout_redirect_uris": ["http://127.0.0.1:8080/min-side/logget-ut"]
//     } ],                                           // or "token_endpoint_auth_method": "private_key_jwt" with "jwks"
//     "accounts": { "kari": { "pid": "01010100050", "acr": "idporten-loa-high" } }
//   }
//
// A new RSA signing key (with a new `kid`) is made at every start: restarting
// the provider on the same port is its key rotation.
//
// The interaction (the provider's "login page"), at /interaction/{uid}:
//   GET /interaction/{uid}                 a page listing the choices below
//   GET /interaction/{uid}?account=kari    logs in as account "kari" (and consents)
//   GET /interaction/{uid}?abort=1         the person cancels: error=access_denied
// It prints "listening ISSUER" on stdout once it accepts connections.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';

import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const issuer = `http://127.0.0.1:${config.port}`;
const accounts = config.accounts || {};

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = {
  ...privateKey.export({ format: 'jwk' }),
  kid: `test-${randomBytes(6).toString('hex')}`,
  alg: 'RS256',
  use: 'sig',
};

const provider = new Provider(issuer, {
  clients: config.clients,
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  // As ID-porten: the national identity number is in the ID token, with the
  // `openid` scope alone.
  claims: { openid: ['sub', 'pid'] },
  conformIdTokenClaims: false,
  acrValues: ['idporten-loa-substantial', 'idporten-loa-high'],
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: false },
    rpInitiatedLogout: { enabled: true },
  },
  interactions: {
    url: (ctx, interaction) => `/interaction/${interaction.uid}`,
  },
  async findAccount(ctx, id) {
    const account = accounts[id];
    if (!account) return undefined;
    return {
      accountId: id,
      async claims() {
        const claims = { sub: id };
        if (account.pid !== undefined) claims.pid = account.pid;
        return claims;
      },
    };
  },
});

provider.use(async (ctx, next) => {
  const match = /^\/interaction\/([^/]+)$/.exec(ctx.path);
  if (!match || ctx.method !== 'GET') {
    await next();
    return;
  }
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  if (ctx.query.abort) {
    await provider.interactionFinished(ctx.req, ctx.res, {
      error: 'access_denied',
      error_description: 'The person cancelled the login',
    }, { mergeWithLastSubmission: false });
    return;
  }
  const accountId = ctx.query.account;
  if (accountId) {
    const account = accounts[accountId];
    if (!account) {
      ctx.status = 400;
      ctx.body = 'unknown account';
      return;
    }
    const grant = new provider.Grant({ accountId, clientId: details.params.client_id });
    grant.addOIDCScope(details.params.scope);
    const grantId = await grant.save();
    await provider.interactionFinished(ctx.req, ctx.res, {
      login: { accountId, acr: account.acr || 'idporten-loa-substantial' },
      consent: { grantId },
    }, { mergeWithLastSubmission: false });
    return;
  }
  const links = Object.keys(accounts)
    .map((id) => `<li><a href="?account=${encodeURIComponent(id)}">${id}</a></li>`)
    .join('');
  ctx.type = 'html';
  ctx.body = `<!doctype html><title>Test provider</title><h1>Log in as</h1><ul>${links}</ul><p><a href="?abort=1">Cancel</a></p>`;
});

provider.listen(config.port, '127.0.0.1', () => {
  process.stdout.write(`listening ${issuer}\n`);
});
