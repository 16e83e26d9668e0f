// A real third-party OpenID provider for Propylon's integration tests: panva/oidc-provider (an
// OpenID Certified implementation), configured for the DCR flow Propylon drives.
//
//   node server.mjs [PORT]            (or PORT / OIDC_PORT in the environment; 0 = any free port)
//
// Environment:
//   OIDC_INITIAL_ACCESS_TOKEN   the RFC 7591 initial access token registration requires (required;
//                               valid for a day)
//   OIDC_EXPIRING_INITIAL_ACCESS_TOKEN, OIDC_EXPIRING_IAT_TTL
//                               optional: a second initial access token that expires after
//                               OIDC_EXPIRING_IAT_TTL seconds (default 1), as Keycloak's do
//   OIDC_ROTATE_RAT             "1" (default): a new registration access token on every RFC 7592
//                               update (as Keycloak does); "0": never rotated (as Gluu does)
//   OIDC_RESOURCE               the resource indicator / `aud` of client_credentials access tokens
//                               (default "urn:propylon:test-api"); tokens are RFC 9068 JWTs (RS256)
//   OIDC_SCOPES                 scopes of that resource (default "read write")
//
// Issuer: http://127.0.0.1:PORT. When listening, prints one line to stdout:
//   {"ready":true,"issuer":"http://127.0.0.1:PORT","port":PORT}
// State is in memory only; SIGTERM/SIGINT stop the process.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import http from 'node:http';
import Provider from 'oidc-provider';

const requestedPort = Number(process.argv[2] ?? process.env.OIDC_PORT ?? process.env.PORT ?? 0);
const initialAccessToken = process.env.OIDC_INITIAL_ACCESS_TOKEN;
if (!initialAccessToken) {
  console.error('OIDC_INITIAL_ACCESS_TOKEN must be set');
  process.exit(2);
}
const rotate = (process.env.OIDC_ROTATE_RAT ?? '1') !== '0';
const resource = process.env.OIDC_RESOURCE ?? 'urn:propylon:test-api';
const resourceScopes = process.env.OIDC_SCOPES ?? 'read write';

// A fresh signing key per run, so no key material lives in the repository.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: `test-${randomBytes(4).toString('hex')}`, alg: 'RS256', use: 'sig' };

// Bind first, so that PORT=0 yields the real port before the issuer is fixed.
const server = http.createServer();
await new Promise((resolve) => server.listen(requestedPort, '127.0.0.1', resolve));
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  scopes: ['openid', 'offline_access'],
  // Expiry is exact (the default tolerates 15 s of skew), so an expiring IAT can be tested quickly.
  clockTolerance: 0,
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    registration: {
      enabled: true,
      // true: initial access tokens are provider-stored InitialAccessToken models (see below),
      // so that one can expire; oidc-provider answers 401 invalid_token for an unknown or expired
      // one and 400 invalid_request for none.
      initialAccessToken: true,
      // Secrets on every client that authenticates with one (client_secret_basic by default).
      secretFactory: () => randomBytes(32).toString('base64url'),
    },
    registrationManagement: {
      enabled: true,
      rotateRegistrationAccessToken: rotate,
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, indicator) => {
        if (indicator !== resource) {
          // oidc-provider turns this into an invalid_target error.
          throw new Provider.errors.InvalidTarget();
        }
        return {
          scope: resourceScopes,
          audience: resource,
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  // What a registration that leaves these out gets (oidc-provider's defaults, spelled out so the
  // tests do not depend on them changing).
  clientDefaults: {
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'RS256',
  },
});
provider.proxy = false;
provider.on('server_error', (_ctx, error) => console.error('server_error', error));

// Stored initial access tokens whose values are the configured strings (the value of an opaque
// oidc-provider token is its jti).
async function storeInitialAccessToken(value, expiresIn) {
  const token = new provider.InitialAccessToken({ expiresIn });
  token.jti = value;
  await token.save();
}
await storeInitialAccessToken(initialAccessToken, 24 * 3600);
if (process.env.OIDC_EXPIRING_INITIAL_ACCESS_TOKEN) {
  await storeInitialAccessToken(process.env.OIDC_EXPIRING_INITIAL_ACCESS_TOKEN,
    Number(process.env.OIDC_EXPIRING_IAT_TTL ?? 1));
}

server.on('request', provider.callback());

const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

process.stdout.write(`${JSON.stringify({ ready: true, issuer, port })}\n`);
