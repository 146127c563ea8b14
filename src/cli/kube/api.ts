/**
 * A small Kubernetes API client over node:https: the dozen calls airlock makes (create, get, delete, watch a pod,
 * follow its log), with the in-cluster service account or a kubeconfig. Why not @kubernetes/client-node: its
 * current major needs Node ≥ 22.19, the previous one adds 54 MB of dependencies (OpenID, tar, SOCKS, JSONPath) and
 * 5 MB to the Action bundle, for a surface of plain JSON requests and two line-oriented streams (docs/kubernetes.md).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { homedir } from 'node:os';
import path from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { parse as parseYaml } from 'yaml';
import { EngineError } from '../errors.js';

export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export interface KubeConnection {
  /** `https://host:port` (or `http://` for a local test server). */
  server: string;
  /** PEM of the CA that signs the API server's certificate; absent: the system roots. */
  ca?: string;
  /** Read on every request: projected service-account tokens are rotated while a long run goes on. */
  token?: () => string;
  clientCert?: string;
  clientKey?: string;
  insecureSkipTlsVerify?: boolean;
  /** The namespace of the in-cluster service account or the kubeconfig context, if any. */
  namespace?: string;
}

export class KubeApiError extends EngineError {
  constructor(
    message: string,
    readonly status: number,
    readonly reason: string,
  ) {
    super(message);
  }
}

/** In a pod: `KUBERNETES_SERVICE_HOST` plus the mounted service-account token. */
export function inClusterConnection(env: NodeJS.ProcessEnv, dir: string = SERVICE_ACCOUNT_DIR): KubeConnection | null {
  const host = env.KUBERNETES_SERVICE_HOST;
  const tokenFile = path.join(dir, 'token');
  if (!host || !existsSync(tokenFile)) return null;
  const port = env.KUBERNETES_SERVICE_PORT || '443';
  const namespaceFile = path.join(dir, 'namespace');
  return {
    server: `https://${host.includes(':') ? `[${host}]` : host}:${port}`,
    ca: readFileSync(path.join(dir, 'ca.crt'), 'utf8'),
    token: () => readFileSync(tokenFile, 'utf8').trim(),
    ...(existsSync(namespaceFile) ? { namespace: readFileSync(namespaceFile, 'utf8').trim() } : {}),
  };
}

interface KubeconfigFile {
  'current-context'?: string;
  contexts?: Array<{ name: string; context: { cluster: string; user?: string; namespace?: string } }>;
  clusters?: Array<{
    name: string;
    cluster: {
      server: string;
      'certificate-authority'?: string;
      'certificate-authority-data'?: string;
      'insecure-skip-tls-verify'?: boolean;
    };
  }>;
  users?: Array<{
    name: string;
    user: {
      token?: string;
      tokenFile?: string;
      'client-certificate'?: string;
      'client-certificate-data'?: string;
      'client-key'?: string;
      'client-key-data'?: string;
      exec?: { command: string; args?: string[]; env?: Array<{ name: string; value: string }> | null };
    };
  }>;
}

/**
 * The current context of `$KUBECONFIG` (its first file) or `~/.kube/config`: server, CA, and a token, client
 * certificate or `exec` credential plugin (the form EKS and GKE use).
 */
export function kubeconfigConnection(env: NodeJS.ProcessEnv): KubeConnection | null {
  const file = (env.KUBECONFIG ?? '').split(path.delimiter).find(Boolean) ?? path.join(homedir(), '.kube', 'config');
  if (!existsSync(file)) return null;
  const config = parseYaml(readFileSync(file, 'utf8')) as KubeconfigFile;
  const where = path.dirname(file);
  const ctx = config.contexts?.find((c) => c.name === config['current-context'])?.context;
  const cluster = config.clusters?.find((c) => c.name === ctx?.cluster)?.cluster;
  if (!ctx || !cluster) throw new EngineError(`${file}: the current context names no cluster`);
  const user = config.users?.find((u) => u.name === ctx.user)?.user ?? {};
  const fromData = (data: string | undefined, file: string | undefined): string | undefined =>
    data
      ? Buffer.from(data, 'base64').toString('utf8')
      : file
        ? readFileSync(path.resolve(where, file), 'utf8')
        : undefined;
  const connection: KubeConnection = { server: cluster.server.replace(/\/+$/, '') };
  const ca = fromData(cluster['certificate-authority-data'], cluster['certificate-authority']);
  if (ca) connection.ca = ca;
  if (cluster['insecure-skip-tls-verify']) connection.insecureSkipTlsVerify = true;
  const cert = fromData(user['client-certificate-data'], user['client-certificate']);
  const key = fromData(user['client-key-data'], user['client-key']);
  if (cert && key) {
    connection.clientCert = cert;
    connection.clientKey = key;
  }
  if (user.token) {
    const token = user.token;
    connection.token = () => token;
  } else if (user.tokenFile) {
    const tokenFile = path.resolve(where, user.tokenFile);
    connection.token = () => readFileSync(tokenFile, 'utf8').trim();
  } else if (user.exec) {
    connection.token = execCredential(user.exec, env);
  }
  if (ctx.namespace) connection.namespace = ctx.namespace;
  return connection;
}

/** A client.authentication.k8s.io ExecCredential plugin, asked again only once its token expires. */
function execCredential(
  exec: NonNullable<NonNullable<KubeconfigFile['users']>[number]['user']['exec']>,
  env: NodeJS.ProcessEnv,
): () => string {
  let cached: { token: string; expires: number } | null = null;
  return () => {
    if (cached && cached.expires > Date.now() + 60_000) return cached.token;
    const extra = Object.fromEntries((exec.env ?? []).map((e) => [e.name, e.value]));
    const run = spawnSync(exec.command, exec.args ?? [], { env: { ...env, ...extra }, encoding: 'utf8' });
    if (run.status !== 0) {
      throw new EngineError(`the kubeconfig credential plugin ${exec.command} failed: ${(run.stderr ?? '').trim()}`);
    }
    const status = (JSON.parse(run.stdout) as { status?: { token?: string; expirationTimestamp?: string } }).status;
    if (!status?.token) throw new EngineError(`the kubeconfig credential plugin ${exec.command} returned no token`);
    const expires = status.expirationTimestamp ? Date.parse(status.expirationTimestamp) : Date.now() + 5 * 60_000;
    cached = { token: status.token, expires };
    return status.token;
  };
}

/** A watch event: the object after the change. */
export interface WatchEvent<T> {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'ERROR' | 'BOOKMARK';
  object: T;
}

export interface KubeApi {
  readonly server: string;
  request<T>(method: string, apiPath: string, body?: unknown): Promise<T>;
  /** 404 counts as done: deleting what is already gone is not a failure. */
  delete(apiPath: string, options?: { gracePeriodSeconds?: number }): Promise<void>;
  /**
   * Streams a response body (a watch, a followed log) to `onData` until the server ends it or `signal` aborts.
   * Resolves when the stream ends; rejects on a non-2xx answer.
   */
  stream(apiPath: string, onData: (chunk: Buffer) => void, signal: AbortSignal): Promise<void>;
}

export function createKubeApi(connection: KubeConnection): KubeApi {
  const url = new URL(connection.server);
  const secure = url.protocol === 'https:';
  const agent = secure
    ? new https.Agent({
        keepAlive: true,
        ...(connection.ca ? { ca: connection.ca } : {}),
        ...(connection.clientCert ? { cert: connection.clientCert, key: connection.clientKey } : {}),
        rejectUnauthorized: !connection.insecureSkipTlsVerify,
      })
    : new http.Agent({ keepAlive: true });

  const open = (method: string, apiPath: string, body: string | undefined, signal?: AbortSignal) =>
    new Promise<http.IncomingMessage>((resolve, reject) => {
      const headers: http.OutgoingHttpHeaders = { accept: 'application/json' };
      const token = connection.token?.();
      if (token) headers.authorization = `Bearer ${token}`;
      if (body !== undefined) {
        headers['content-type'] = 'application/json';
        headers['content-length'] = Buffer.byteLength(body);
      }
      const req = (secure ? https : http).request(
        {
          protocol: url.protocol,
          hostname: url.hostname.replace(/^\[|\]$/g, ''),
          port: url.port || (secure ? 443 : 80),
          method,
          path: `${url.pathname.replace(/\/$/, '')}${apiPath}`,
          headers,
          agent,
          ...(signal ? { signal } : {}),
        },
        resolve,
      );
      req.on('error', reject);
      req.end(body);
    });

  const failure = async (method: string, apiPath: string, res: http.IncomingMessage): Promise<KubeApiError> => {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of res as AsyncIterable<Buffer>) {
      if (size < 65_536) chunks.push(chunk);
      size += chunk.length;
    }
    let message = Buffer.concat(chunks).toString('utf8').slice(0, 2000);
    let reason = '';
    try {
      const status = JSON.parse(message) as { message?: string; reason?: string };
      message = status.message ?? message;
      reason = status.reason ?? '';
    } catch {
      // not a Status object; keep the text
    }
    const status = res.statusCode ?? 0;
    const hint = status === 401 || status === 403 ? ' (see docs/kubernetes.md#rbac for the Role the runner needs)' : '';
    return new KubeApiError(`Kubernetes API ${method} ${apiPath}: ${status} ${message}${hint}`, status, reason);
  };

  const readJson = async <T>(res: http.IncomingMessage): Promise<T> => {
    const chunks: Buffer[] = [];
    for await (const chunk of res as AsyncIterable<Buffer>) chunks.push(chunk);
    const text = Buffer.concat(chunks).toString('utf8');
    return (text ? JSON.parse(text) : {}) as T;
  };

  return {
    server: connection.server,
    async request<T>(method: string, apiPath: string, body?: unknown): Promise<T> {
      const res = await open(method, apiPath, body === undefined ? undefined : JSON.stringify(body));
      if ((res.statusCode ?? 0) >= 300) throw await failure(method, apiPath, res);
      return readJson<T>(res);
    },
    async delete(apiPath, options = {}) {
      const body = { kind: 'DeleteOptions', apiVersion: 'v1', propagationPolicy: 'Background', ...options };
      const res = await open('DELETE', apiPath, JSON.stringify(body));
      if (res.statusCode === 404) {
        res.resume();
        return;
      }
      if ((res.statusCode ?? 0) >= 300) throw await failure('DELETE', apiPath, res);
      res.resume();
    },
    async stream(apiPath, onData, signal) {
      let res: http.IncomingMessage;
      try {
        res = await open('GET', apiPath, undefined, signal);
      } catch (err) {
        if (signal.aborted) return;
        throw err;
      }
      if ((res.statusCode ?? 0) >= 300) throw await failure('GET', apiPath, res);
      await new Promise<void>((resolve) => {
        res.on('data', onData);
        res.on('end', resolve);
        res.on('close', resolve);
        res.on('error', () => resolve());
      });
    },
  };
}

/** Splits a byte stream into lines (newline-delimited JSON of a watch, a log's lines); bounded per line. */
export function lineSplitter(onLine: (line: string) => void, maxLine = 4 << 20): (chunk: Buffer) => void {
  // A multi-byte character split across chunks stays whole.
  const decoder = new StringDecoder('utf8');
  let pending = '';
  return (chunk) => {
    pending += decoder.write(chunk);
    let at: number;
    while ((at = pending.indexOf('\n')) >= 0) {
      onLine(pending.slice(0, at));
      pending = pending.slice(at + 1);
    }
    if (pending.length > maxLine) pending = '';
  };
}
