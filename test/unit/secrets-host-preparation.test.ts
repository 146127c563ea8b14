import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { LoadedPolicy } from '../../src/cli/config/types.js';
import { ConfigError } from '../../src/cli/errors.js';
import { prepareCredentials } from '../../src/cli/secrets/prepare.js';
import { SandboxConfigSchema } from '../../src/protocol/sandbox-config.js';
import { surrogateCharset } from '../../src/protocol/surrogate.js';

const GH_REAL = 'ghp_R3alR3alR3alR3alR3alR3alR3alR3alR3al';
const AWS = {
  access_key_id: 'AKIAIOSFODNN7EXAMPLE',
  secret_access_key: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY',
  session_token: 'FwoGZXIvYXdzEBYaDExampleSessionTokenValue0123456789',
};

function policy(sandbox: unknown, envRefs: Record<string, string> = {}): LoadedPolicy {
  return {
    configDir: null,
    layout: 'none',
    sandbox: SandboxConfigSchema.parse(sandbox),
    envRefs: new Map(Object.entries(envRefs)),
    allowlist: { domains: [], url_prefixes: [] },
    allowlistSha256: '0'.repeat(64),
    files: {},
    build: null,
    warnings: [],
  };
}

function ghPolicy(extra: Record<string, unknown> = {}): LoadedPolicy {
  return policy({
    masked_secrets: {
      GH_TOKEN: { value: GH_REAL, scopes: ['api.github.com', 'github.com'], headers: ['Authorization'] },
    },
    ...extra,
  });
}

function messageOf(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
    return error.message;
  }
  assert.fail('expected a ConfigError');
}

void describe('masked secrets: the sandbox gets a surrogate, the proxy the real value', () => {
  void it('injects a format-preserving surrogate under the secret name', () => {
    const prepared = prepareCredentials(ghPolicy(), {});
    const surrogate = prepared.containerEnv.GH_TOKEN!;
    assert.equal(surrogate.length, GH_REAL.length);
    assert.ok(surrogate.startsWith('ghp_'));
    assert.notEqual(surrogate, GH_REAL);
    for (const ch of surrogate.slice(4)) assert.ok(surrogateCharset(GH_REAL.slice(4)).includes(ch));
    assert.deepEqual(prepared.proxyCredentials, {
      masked: [
        {
          name: 'GH_TOKEN',
          surrogate,
          value: GH_REAL,
          scopes: ['api.github.com', 'github.com'],
          headers: ['Authorization'],
          allowForeignCredentials: false,
        },
      ],
      signing: [],
    });
    assert.deepEqual(prepared.secretValues, [GH_REAL]);
    assert.deepEqual(prepared.warnings, []);
  });

  void it('passes allow_foreign_credentials through', () => {
    const prepared = prepareCredentials(
      policy({
        masked_secrets: { T: { value: 'x1234567', scopes: ['h'], headers: ['X'], allow_foreign_credentials: true } },
      }),
      {},
    );
    assert.equal(prepared.proxyCredentials.masked[0]!.allowForeignCredentials, true);
  });

  void it('mints fresh surrogates on every call (per run)', () => {
    const a = prepareCredentials(ghPolicy(), {}).containerEnv.GH_TOKEN;
    const b = prepareCredentials(ghPolicy(), {}).containerEnv.GH_TOKEN;
    assert.notEqual(a, b);
  });

  void it('an empty value sets no variable and gives the proxy nothing (Airut sets NAME="", bug D1)', () => {
    const prepared = prepareCredentials(
      policy({ masked_secrets: { EMPTY: { value: '', scopes: ['h'], headers: ['Authorization'] } } }),
      {},
    );
    assert.deepEqual(prepared.containerEnv, {});
    assert.deepEqual(prepared.proxyCredentials, { masked: [], signing: [] });
    assert.deepEqual(prepared.secretValues, []);
    assert.equal('EMPTY' in prepared.containerEnv, false);
  });

  void it('no real value appears in the container environment, even a short one inside another surrogate', () => {
    for (let run = 0; run < 50; run++) {
      const prepared = prepareCredentials(
        policy({
          masked_secrets: {
            SHORT: { value: 'ab', scopes: ['h'], headers: ['X-Short'] },
            LONG: { value: 'abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz', scopes: ['h'], headers: ['X'] },
            DIGITS: { value: '42', scopes: ['h'], headers: ['X-D'] },
          },
          signing_credentials: { aws: { type: 'aws-sigv4', ...AWS, scopes: ['*.amazonaws.com'] } },
        }),
        {},
      );
      const env = Object.values(prepared.containerEnv);
      for (const real of prepared.secretValues) {
        for (const value of env) assert.ok(!value.includes(real), `a surrogate holds a real value`);
      }
      // Surrogates never contain one another: the proxy replaces substrings.
      for (const [i, a] of env.entries()) {
        for (const [j, b] of env.entries()) if (i !== j) assert.ok(!a.includes(b));
      }
    }
  });

  void it('refuses a value no HTTP header can carry, without echoing it', () => {
    const msg = messageOf(() =>
      prepareCredentials(
        policy({ masked_secrets: { T: { value: 'tok-secret-9\n', scopes: ['h'], headers: ['Authorization'] } } }),
        {},
      ),
    );
    assert.match(msg, /masked_secrets\.T\.value/);
    assert.ok(!msg.includes('tok-secret-9'));
  });
});

void describe('signing credentials', () => {
  void it('literal values: AWS_* variables, fixed-length surrogates, the real values only for the proxy', () => {
    const prepared = prepareCredentials(
      policy({ signing_credentials: { aws: { type: 'aws-sigv4', ...AWS, scopes: ['*.amazonaws.com'] } } }),
      {},
    );
    const env = prepared.containerEnv;
    assert.deepEqual(Object.keys(env).sort(), ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN']);
    assert.match(env.AWS_ACCESS_KEY_ID!, /^AKIA[A-Z0-9]{16}$/);
    assert.match(env.AWS_SECRET_ACCESS_KEY!, /^[A-Za-z0-9/+]{40}$/);
    assert.match(env.AWS_SESSION_TOKEN!, /^[A-Za-z0-9]{512}$/);
    assert.deepEqual(prepared.proxyCredentials.signing, [
      {
        name: 'aws',
        type: 'aws-sigv4',
        surrogateAccessKeyId: env.AWS_ACCESS_KEY_ID,
        surrogateSecretAccessKey: env.AWS_SECRET_ACCESS_KEY,
        accessKeyId: AWS.access_key_id,
        secretAccessKey: AWS.secret_access_key,
        surrogateSessionToken: env.AWS_SESSION_TOKEN,
        sessionToken: AWS.session_token,
        scopes: ['*.amazonaws.com'],
      },
    ]);
    assert.deepEqual([...prepared.secretValues].sort(), Object.values(AWS).sort());
  });

  void it('!env values: the container variables take the host variable names (item 17)', () => {
    const prepared = prepareCredentials(
      policy(
        { signing_credentials: { r2: { type: 'aws-sigv4', ...AWS, scopes: ['*.r2.cloudflarestorage.com'] } } },
        {
          'signing_credentials.r2.access_key_id': 'R2_KEY_ID',
          'signing_credentials.r2.secret_access_key': 'R2_SECRET',
          'signing_credentials.r2.session_token': 'R2_TOKEN',
        },
      ),
      {},
    );
    assert.deepEqual(Object.keys(prepared.containerEnv).sort(), ['R2_KEY_ID', 'R2_SECRET', 'R2_TOKEN']);
  });

  void it('no session token, or an empty one: no token variable and no token for the proxy', () => {
    for (const session_token of [undefined, null, '']) {
      const prepared = prepareCredentials(
        policy({
          signing_credentials: {
            aws: {
              type: 'aws-sigv4',
              access_key_id: AWS.access_key_id,
              secret_access_key: AWS.secret_access_key,
              session_token,
              scopes: ['*'],
            },
          },
        }),
        {},
      );
      assert.equal(prepared.containerEnv.AWS_SESSION_TOKEN, undefined);
      assert.equal(prepared.proxyCredentials.signing[0]!.sessionToken, undefined);
      assert.equal(prepared.proxyCredentials.signing[0]!.surrogateSessionToken, undefined);
    }
  });

  void it('two credentials that would both set AWS_ACCESS_KEY_ID are refused rather than one silently winning', () => {
    const msg = messageOf(() =>
      prepareCredentials(
        policy({
          signing_credentials: {
            a: { type: 'aws-sigv4', ...AWS, scopes: ['*'] },
            b: { type: 'aws-sigv4', ...AWS, scopes: ['*'] },
          },
        }),
        {},
      ),
    );
    assert.match(msg, /AWS_ACCESS_KEY_ID is already set by signing_credentials\.a\.access_key_id/);
    for (const real of Object.values(AWS)) assert.ok(!msg.includes(real));
  });

  void it('a masked secret and a signing credential naming the same variable are refused', () => {
    const msg = messageOf(() =>
      prepareCredentials(
        policy({
          masked_secrets: { AWS_SECRET_ACCESS_KEY: { value: 'masked-value-1', scopes: ['h'], headers: ['X'] } },
          signing_credentials: { aws: { type: 'aws-sigv4', ...AWS, scopes: ['*'] } },
        }),
        {},
      ),
    );
    assert.match(msg, /AWS_SECRET_ACCESS_KEY/);
    assert.ok(!msg.includes('masked-value-1'));
  });

  void it('fails closed when a secret is too short to keep out of the other surrogates', () => {
    // Every 512-character token surrogate would contain one of a, B or 7: the run must not start.
    const msg = messageOf(() =>
      prepareCredentials(
        policy({
          masked_secrets: {
            A: { value: 'a', scopes: ['h'], headers: ['X'] },
            B: { value: 'B', scopes: ['h'], headers: ['X'] },
            C: { value: '7', scopes: ['h'], headers: ['X'] },
          },
          signing_credentials: { aws: { type: 'aws-sigv4', ...AWS, scopes: ['*'] } },
        }),
        {},
      ),
    );
    assert.match(msg, /too short/);
  });
});

void describe('network_sandbox: false', () => {
  void it('still injects surrogates and warns that they will not work, naming keys, never values', () => {
    const prepared = prepareCredentials(
      ghPolicy({
        network_sandbox: false,
        signing_credentials: { aws: { type: 'aws-sigv4', ...AWS, scopes: ['*'] } },
      }),
      {},
    );
    assert.ok(prepared.containerEnv.GH_TOKEN!.startsWith('ghp_'));
    assert.equal(prepared.warnings.length, 1);
    assert.match(prepared.warnings[0]!, /network_sandbox is false/);
    assert.match(prepared.warnings[0]!, /masked_secrets\.GH_TOKEN, signing_credentials\.aws/);
    assert.match(prepared.warnings[0]!, /will not work/);
    for (const real of prepared.secretValues) assert.ok(!prepared.warnings[0]!.includes(real));
  });

  void it('says nothing when there are no credentials', () => {
    assert.deepEqual(prepareCredentials(policy({ network_sandbox: false }), {}).warnings, []);
  });
});
