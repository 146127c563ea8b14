import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as x509 from '@peculiar/x509';
import type { BindMount } from '../engine/run-args.js';

/**
 * The per-run CA the proxy signs its interception leaves with, and how the sandbox comes to trust it. A fresh one
 * per run means a leaked CA key is worth one run's traffic at most, and nothing is left in the user's home
 * directory (Airut keeps one CA in ~/.airut-mitmproxy for every run, airut-behaviour.md item 86). The sandbox
 * receives only `certPem`; `keyPem` goes to the proxy over its config channel and nowhere else.
 */

const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const HOUR = 3_600_000;
/** Backdated so a sandbox clock a little behind the host's still accepts the chain. */
const CLOCK_SKEW_MS = HOUR;
const LIFETIME_MS = 48 * HOUR;

export interface RunCa {
  certPem: string;
  /** PKCS#8 PEM. */
  keyPem: string;
}

export interface RunCaOptions {
  commonName?: string;
  now?: Date;
}

function randomHex(bytes: number): string {
  return Buffer.from(globalThis.crypto.getRandomValues(new Uint8Array(bytes))).toString('hex');
}

export async function generateRunCa(opts: RunCaOptions = {}): Promise<RunCa> {
  const crypto = globalThis.crypto;
  x509.cryptoProvider.set(crypto);
  const now = (opts.now ?? new Date()).getTime();
  const commonName = opts.commonName ?? `airlock per-run CA ${randomHex(4)}`;
  const name = new x509.Name([{ CN: [commonName] }]);

  const keys = await crypto.subtle.generateKey(EC_P256, true, ['sign', 'verify']);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomHex(16),
    name,
    notBefore: new Date(now - CLOCK_SKEW_MS),
    notAfter: new Date(now + LIFETIME_MS),
    signingAlgorithm: EC_P256,
    keys,
    extensions: [
      // pathLen 0: the CA may sign leaves only, never another CA.
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const pkcs8 = await crypto.subtle.exportKey('pkcs8', keys.privateKey);
  return { certPem: cert.toString('pem'), keyPem: x509.PemConverter.encode(pkcs8, 'PRIVATE KEY') };
}

/** Where the per-run CA certificate appears in the sandbox. */
export const SANDBOX_CA_PATH = '/etc/airlock/ca.pem';

/**
 * System bundle locations (Debian/Ubuntu, RHEL/Fedora, Alpine, SUSE): each is overlaid with the CA so clients that
 * ignore the variables below still trust the proxy, without root and without the image's cooperation. Inside the
 * sandbox every TLS peer is the proxy, so a bundle holding only the per-run CA loses nothing.
 */
export const SYSTEM_CA_BUNDLES = [
  '/etc/ssl/certs/ca-certificates.crt',
  '/etc/pki/tls/certs/ca-bundle.crt',
  '/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem',
  '/etc/ssl/cert.pem',
  '/etc/ssl/ca-bundle.pem',
];

export const CA_ENV_VARIABLES = [
  'NODE_EXTRA_CA_CERTS',
  'SSL_CERT_FILE',
  'REQUESTS_CA_BUNDLE',
  'CURL_CA_BUNDLE',
  'GIT_SSL_CAINFO',
  'PIP_CERT',
  'AWS_CA_BUNDLE',
  'CARGO_HTTP_CAINFO',
  'DENO_CERT',
];

/** What the sandbox container gets so that its clients trust the proxy: read-only mounts and variables. */
export interface SandboxTrust {
  mounts: BindMount[];
  env: Record<string, string>;
}

/**
 * Writes the CA certificate into `runDir` and returns the mounts and variables that make the sandbox trust it.
 * The certificate only: the key goes to the proxy over stdin and is never written anywhere.
 */
export async function writeSandboxTrust(runDir: string, ca: RunCa): Promise<SandboxTrust> {
  const caFile = path.join(runDir, 'ca.pem');
  await writeFile(caFile, ca.certPem, { mode: 0o644 });
  return {
    mounts: [SANDBOX_CA_PATH, ...SYSTEM_CA_BUNDLES].map((target) => ({ source: caFile, target, readOnly: true })),
    env: Object.fromEntries(CA_ENV_VARIABLES.map((name) => [name, SANDBOX_CA_PATH])),
  };
}
