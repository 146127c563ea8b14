import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PassThrough } from 'node:stream';
import { AllowlistSchema } from '../../src/protocol/allowlist.js';
import type { CredentialProcessor, CredentialResult, RequestHead } from '../../src/proxy/credentials/types.js';
import { passThrough } from '../../src/proxy/credentials/types.js';
import { memoryLog } from '../../src/proxy/log/network-log.js';
import type { UpstreamConnector } from '../../src/proxy/upstream/connector.js';
import type { UpstreamRoute } from '../../src/proxy/upstream/route.js';
import type { Admission } from '../../src/proxy/http/admission.js';
import type {
  ExchangeFailure,
  ExchangePeer,
  ExchangeRequest,
  HttpContext,
  RequestBody,
} from '../../src/proxy/http/exchange.js';
import type { ProxyErrorBody } from '../../src/proxy/http/responses.js';
import { SocketPeer } from '../../src/proxy/http/peers.js';
import { admitStage, bodyStage, credentialStage, routeStage, runStages } from '../../src/proxy/http/stages.js';

/**
 * The request pipeline's stages one at a time, with pure inputs: a request described without a socket, a body
 * source that hands over bytes, a route and credential pass that answer what each case needs, and a peer that
 * records what it was asked to answer. The two answering paths are also run through the raw-socket peer, so the
 * bytes of the documented 403 and 502 are checked, not only the calls.
 */

const allowlist = AllowlistSchema.parse({
  domains: ['open.test'],
  url_prefixes: [
    { host: 'paths.test', path: '/v1/*', methods: ['GET'] },
    { host: 'gql.test', path: '/graphql', methods: ['POST'], graphql: { queries: ['viewer'], mutations: [] } },
  ],
});

const HTTPS = { scheme: 'https', port: 443 } as const;
const CONNECT_ROUTE: UpstreamRoute = { kind: 'connect', address: '127.0.0.1', port: 443, mapped: false };

function bodyOf(bytes: Buffer | 'aborted' | null): RequestBody & { reads: number[] } {
  const reads: number[] = [];
  return {
    reads,
    announced: bytes !== null,
    framing: () => (Buffer.isBuffer(bytes) ? { kind: 'length', bytes: bytes.length } : { kind: 'none' }),
    read(maxBytes) {
      reads.push(maxBytes);
      if (bytes === 'aborted') return Promise.resolve('aborted');
      const whole = bytes ?? Buffer.alloc(0);
      return Promise.resolve(whole.length > maxBytes ? 'too-large' : whole);
    },
  };
}

function request(over: Partial<ExchangeRequest> & { host?: string } = {}): ExchangeRequest {
  const host = over.host ?? 'open.test';
  return {
    listener: HTTPS,
    method: 'GET',
    rawTarget: '/',
    headers: [['Host', host]],
    sni: host,
    body: bodyOf(null),
    ...over,
  };
}

interface Harness {
  ctx: HttpContext;
  log: ReturnType<typeof memoryLog>;
  heads: RequestHead[];
  routed: Array<[string, number]>;
}

function harness(
  opts: { route?: UpstreamRoute; credentials?: CredentialProcessor; routeThrows?: boolean } = {},
): Harness {
  const log = memoryLog();
  const heads: RequestHead[] = [];
  const routed: Array<[string, number]> = [];
  const processor = opts.credentials ?? passThrough;
  const credentials: CredentialProcessor = Object.assign(
    (head: RequestHead) => {
      heads.push(head);
      return processor(head);
    },
    processor.usesHeader ? { usesHeader: processor.usesHeader } : {},
  );
  const ctx: HttpContext = {
    allowlist,
    credentials,
    route: (host, port) => {
      routed.push([host, port]);
      return Promise.resolve(opts.route ?? CONNECT_ROUTE);
    },
    connector: {} as UpstreamConnector,
    log,
    limits: { drainBytes: 1024, drainTimeoutMs: 100 },
    now: () => new Date(0),
    audit: false,
  };
  return { ctx, log, heads, routed };
}

function result(head: RequestHead, extra: Partial<CredentialResult> = {}): CredentialResult {
  return { headers: head.headers, target: head.target, annotations: ['masked: 1'], events: [], ...extra };
}

/** A peer that records the answers it is asked for. */
function recordingPeer() {
  const refused: Array<{ code: string; method: string }> = [];
  const failed: Array<{ failure: ExchangeFailure; body: ProxyErrorBody }> = [];
  let abandoned = 0;
  const peer: ExchangePeer = {
    refuse: (refusal, method, record) => {
      record(0);
      refused.push({ code: refusal.code, method });
    },
    fail: (failure, body) => void failed.push({ failure, body }),
    abandon: () => void abandoned++,
  };
  return { peer, refused, failed, abandoned: () => abandoned };
}

function admitted(ctx: HttpContext, req: ExchangeRequest): Admission {
  const verdict = admitStage(ctx, req);
  if (verdict.kind !== 'pass') throw new Error(`expected an admission, got ${verdict.refusal.code}`);
  return verdict.value;
}

/** Everything a raw-socket peer writes, parsed as one HTTP/1.1 answer. */
function socketCapture() {
  const socket = new PassThrough();
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  return {
    peer: new SocketPeer(socket),
    answer() {
      const text = Buffer.concat(chunks).toString('utf8');
      const [head, body] = text.split('\r\n\r\n') as [string, string];
      const [statusLine, ...headerLines] = head.split('\r\n');
      const headers = Object.fromEntries(
        headerLines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]),
      );
      return { statusLine, headers, json: JSON.parse(body) as Record<string, unknown> };
    },
  };
}

void describe('request stages', { timeout: 10_000 }, () => {
  void describe('admit', () => {
    test('an allowed request passes with what was judged', () => {
      const { ctx } = harness();
      const admission = admitted(ctx, request({ rawTarget: '/x?y=1' }));
      assert.equal(admission.host, 'open.test');
      assert.equal(admission.authority, 'open.test');
      assert.equal(admission.target, '/x?y=1');
    });

    test('a request the allowlist does not open is refused with its code', () => {
      const { ctx } = harness();
      const verdict = admitStage(ctx, request({ host: 'closed.test' }));
      assert.equal(verdict.kind, 'deny');
      assert.equal(verdict.kind === 'deny' && verdict.refusal.code, 'host_not_allowed');
    });

    test('Connection naming a header a credential pass uses is refused (the pass names its headers)', () => {
      const { ctx } = harness({
        credentials: Object.assign((head: RequestHead) => passThrough(head), {
          usesHeader: (name: string) => name === 'x-api-key',
        }),
      });
      const verdict = admitStage(
        ctx,
        request({
          headers: [
            ['Host', 'open.test'],
            ['Connection', 'x-api-key'],
          ],
        }),
      );
      assert.equal(verdict.kind === 'deny' && verdict.refusal.code, 'connection_header_not_allowed');
    });
  });

  void describe('read and filter the body', () => {
    test('without a filter the verdict comes at once and the body is left to stream', () => {
      const { ctx } = harness();
      const body = bodyOf(Buffer.from('streamed'));
      const req = request({ method: 'POST', body });
      const verdict = bodyStage(ctx, req, admitted(ctx, req));
      assert.ok(!(verdict instanceof Promise), 'no await for a request no filter reads');
      assert.deepEqual(verdict, { kind: 'pass', value: null });
      assert.deepEqual(body.reads, []);
    });

    test('a GraphQL operation the entry does not allow is refused', async () => {
      const { ctx } = harness();
      const req = request({
        host: 'gql.test',
        method: 'POST',
        rawTarget: '/graphql',
        body: bodyOf(Buffer.from(JSON.stringify({ query: 'mutation { deleteEverything }' }))),
      });
      const verdict = await bodyStage(ctx, req, admitted(ctx, req));
      assert.equal(verdict.kind === 'deny' && verdict.refusal.code, 'graphql_operation_blocked');
    });

    test('an allowed GraphQL operation passes with the body read and its annotation', async () => {
      const { ctx } = harness();
      const sent = Buffer.from(JSON.stringify({ query: 'query { viewer { login } }' }));
      const req = request({ host: 'gql.test', method: 'POST', rawTarget: '/graphql', body: bodyOf(sent) });
      const verdict = await bodyStage(ctx, req, admitted(ctx, req));
      assert.equal(verdict.kind, 'pass');
      const inspected = verdict.kind === 'pass' ? verdict.value : null;
      assert.deepEqual(inspected?.body, sent);
      assert.deepEqual(inspected?.annotations, ['graphql-op: query/viewer']);
    });

    test('a client that goes away mid-body abandons the exchange', async () => {
      const { ctx } = harness();
      const req = request({ host: 'gql.test', method: 'POST', rawTarget: '/graphql', body: bodyOf('aborted') });
      assert.deepEqual(await bodyStage(ctx, req, admitted(ctx, req)), { kind: 'abandon' });
    });
  });

  void describe('route', () => {
    test('a routable host passes with its address, asked for the judged host and port', async () => {
      const { ctx, routed } = harness();
      const verdict = await routeStage(ctx, admitted(ctx, request()));
      assert.deepEqual(verdict, { kind: 'pass', value: CONNECT_ROUTE });
      assert.deepEqual(routed, [['open.test', 443]]);
    });

    test('an address the guard forbids is a refusal', async () => {
      const { ctx } = harness({ route: { kind: 'forbidden', reason: 'open.test resolves to 10.0.0.1' } });
      const verdict = await routeStage(ctx, admitted(ctx, request()));
      assert.equal(verdict.kind, 'deny');
      assert.equal(verdict.kind === 'deny' && verdict.refusal.code, 'upstream_address_not_allowed');
    });

    test('a name that does not resolve is a 502 failure', async () => {
      const { ctx } = harness({ route: { kind: 'failed', reason: 'open.test does not resolve' } });
      const verdict = await routeStage(ctx, admitted(ctx, request()));
      assert.deepEqual(verdict, {
        kind: 'fail',
        failure: { status: 502, error: 'upstream_error', reason: 'open.test does not resolve' },
      });
    });
  });

  void describe('credentials', () => {
    test('the passes see hop-by-hop headers gone and the Host the proxy sends', async () => {
      const { ctx, heads } = harness();
      const req = request({
        headers: [
          ['host', 'OPEN.test'],
          ['Connection', 'keep-alive, x-private'],
          ['X-Private', 'hop'],
          ['Authorization', 'Bearer s'],
        ],
      });
      const verdict = await credentialStage(ctx, req, admitted(ctx, req), null);
      assert.equal(verdict.kind, 'pass');
      assert.deepEqual(heads[0]?.headers, [
        ['host', 'open.test'],
        ['Authorization', 'Bearer s'],
      ]);
      assert.equal(verdict.kind === 'pass' && verdict.value.body, null, 'a ready pass leaves the body streaming');
    });

    test('a pass that signs the body gets it read, bounded by its own limit', async () => {
      const body = bodyOf(Buffer.from('signed body'));
      const { ctx } = harness({
        credentials: (head) => ({ kind: 'needs-body', maxBytes: 64, complete: () => result(head) }),
      });
      const req = request({ method: 'PUT', body });
      const verdict = await credentialStage(ctx, req, admitted(ctx, req), null);
      assert.deepEqual(body.reads, [64]);
      assert.deepEqual(verdict.kind === 'pass' && verdict.value.body, Buffer.from('signed body'));
    });

    test('a body over the signing bound is a 413 that closes the connection', async () => {
      const { ctx } = harness({
        credentials: (head) => ({ kind: 'needs-body', maxBytes: 4, complete: () => result(head) }),
      });
      const req = request({ method: 'PUT', body: bodyOf(Buffer.from('too long')) });
      const verdict = await credentialStage(ctx, req, admitted(ctx, req), null);
      assert.deepEqual(verdict, {
        kind: 'fail',
        failure: {
          status: 413,
          error: 'request_body_too_large',
          reason: 'the body must be signed and is over 4 bytes',
          closeConnection: true,
        },
      });
    });

    test('a pass that throws is a 500 naming only the error class', async () => {
      const { ctx } = harness({
        credentials: () => {
          throw new TypeError('secret-value-in-message');
        },
      });
      const verdict = await credentialStage(ctx, request(), admitted(ctx, request()), null);
      assert.equal(verdict.kind, 'fail');
      const failure = verdict.kind === 'fail' ? verdict.failure : null;
      assert.equal(failure?.status, 500);
      assert.equal(failure?.reason, 'credential pass failed: TypeError');
    });

    test('a filtered body carries the filter annotations first, and travels decoded when rewritten', async () => {
      const { ctx } = harness({ credentials: (head) => ({ kind: 'ready', result: result(head) }) });
      const req = request({
        method: 'POST',
        headers: [
          ['Host', 'open.test'],
          ['Content-Encoding', 'gzip'],
        ],
      });
      const inspected = { body: Buffer.from('{}'), decoded: true, annotations: ['tools: 1 removed'] };
      const verdict = await credentialStage(ctx, req, admitted(ctx, req), inspected);
      assert.equal(verdict.kind, 'pass');
      const value = verdict.kind === 'pass' ? verdict.value : null;
      assert.deepEqual(value?.credentials.annotations, ['tools: 1 removed', 'masked: 1']);
      assert.deepEqual(value?.credentials.headers, [['Host', 'open.test']]);
      assert.deepEqual(value?.body, Buffer.from('{}'));
    });

    test('a streaming-signed body cannot pass a body filter', async () => {
      const { ctx } = harness({
        credentials: (head) => ({ kind: 'ready', result: result(head, { bodyTransform: () => new PassThrough() }) }),
      });
      const inspected = { body: Buffer.from('{}'), decoded: false, annotations: [] };
      const verdict = await credentialStage(ctx, request(), admitted(ctx, request()), inspected);
      assert.equal(
        verdict.kind === 'fail' && verdict.failure.reason,
        'a streaming-signed body cannot pass a body filter',
      );
    });
  });

  void describe('the sequence', () => {
    test('an allowed request passes every stage and comes out forwardable, nothing answered', async () => {
      const { ctx, log, heads } = harness({
        credentials: (head) => ({ kind: 'ready', result: { ...result(head), events: ['STRIPPED x'] } }),
      });
      const { peer, refused, failed } = recordingPeer();
      const forwardable = await runStages(ctx, request({ rawTarget: '/a' }), peer, { filtersBody: true });
      assert.ok(forwardable);
      assert.equal(forwardable.exchange.url, 'https://open.test/a');
      assert.deepEqual(forwardable.route, CONNECT_ROUTE);
      assert.equal(heads.length, 1);
      assert.deepEqual([refused, failed], [[], []]);
      // Credential events are logged once the exchange is ready to go; the request line comes with its answer.
      assert.deepEqual(
        log.events.map((e) => e.event),
        ['credential'],
      );
    });

    test('a refusal at admission is answered before runStages returns, and nothing further runs', () => {
      const { ctx, routed, heads, log } = harness();
      const { peer, refused } = recordingPeer();
      void runStages(ctx, request({ host: 'closed.test', method: 'POST' }), peer, { filtersBody: true });
      // Synchronously: Node may hand over a pipelined request next, which must see the connection closing.
      assert.deepEqual(refused, [{ code: 'host_not_allowed', method: 'POST' }]);
      assert.deepEqual([routed, heads], [[], []]);
      assert.equal(log.events.length, 1);
      assert.equal(log.events[0]?.event === 'request' && log.events[0].decision, 'blocked');
    });

    test('a protocol check refuses after admission and before the route', async () => {
      const { ctx, routed } = harness();
      const { peer, refused } = recordingPeer();
      const forwardable = await runStages(ctx, request(), peer, {
        filtersBody: false,
        check: (admission) => ({
          kind: 'deny',
          status: 403,
          code: 'upgrade_not_allowed',
          host: admission.host,
          path: admission.target,
          reason: 'not a WebSocket',
        }),
      });
      assert.equal(forwardable, null);
      assert.deepEqual(refused, [{ code: 'upgrade_not_allowed', method: 'GET' }]);
      assert.deepEqual(routed, []);
    });

    test('a refusal of the route never reaches the credential passes', async () => {
      const { ctx, heads } = harness({ route: { kind: 'forbidden', reason: 'internal' } });
      const { peer, refused } = recordingPeer();
      assert.equal(await runStages(ctx, request(), peer, { filtersBody: true }), null);
      assert.deepEqual(refused, [{ code: 'upstream_address_not_allowed', method: 'GET' }]);
      assert.deepEqual(heads, []);
    });

    test('a client gone mid-body is abandoned: no answer, no log line', async () => {
      const { ctx, log } = harness();
      const recording = recordingPeer();
      const req = request({ host: 'gql.test', method: 'POST', rawTarget: '/graphql', body: bodyOf('aborted') });
      assert.equal(await runStages(ctx, req, recording.peer, { filtersBody: true }), null);
      assert.equal(recording.abandoned(), 1);
      assert.deepEqual([recording.refused, recording.failed, log.events], [[], [], []]);
    });

    test('the deny path writes the documented 403 JSON and logs the refusal', () => {
      const { ctx, log } = harness();
      const capture = socketCapture();
      void runStages(ctx, request({ host: 'paths.test', method: 'POST', rawTarget: '/v1/items' }), capture.peer, {
        filtersBody: true,
      });
      const answer = capture.answer();
      assert.equal(answer.statusLine, 'HTTP/1.1 403 Forbidden');
      assert.equal(answer.headers['content-type'], 'application/json');
      assert.equal(answer.headers['x-airlock-deny'], 'method_not_allowed');
      assert.equal(answer.headers['connection'], 'close');
      assert.deepEqual(Object.keys(answer.json), ['error', 'code', 'method', 'host', 'path', 'reason', 'hint', 'fix']);
      assert.match(
        String(answer.json.hint),
        /^- \{host: "paths\.test", path: "\/v1\/items", methods: \[POST\]\}$/,
        'pasteable YAML',
      );
      assert.equal(answer.json.error, 'blocked_by_network_allowlist');
      assert.equal(answer.json.code, 'method_not_allowed');
      assert.equal(answer.json.method, 'POST');
      assert.equal(answer.json.host, 'paths.test');
      assert.equal(answer.json.path, '/v1/items');
      assert.match(String(answer.json.hint), /paths\.test/);
      const line = log.events[0];
      assert.equal(line?.event === 'request' && line.code, 'method_not_allowed');
      capture.peer.socket.destroy();
    });

    test('the failure path writes the documented 502 JSON and logs an error line', async () => {
      const { ctx, log, heads } = harness({ route: { kind: 'failed', reason: 'open.test does not resolve' } });
      const capture = socketCapture();
      assert.equal(await runStages(ctx, request({ rawTarget: '/p' }), capture.peer, { filtersBody: true }), null);
      const answer = capture.answer();
      assert.equal(answer.statusLine, 'HTTP/1.1 502 Bad Gateway');
      assert.deepEqual(answer.json, {
        error: 'upstream_error',
        method: 'GET',
        host: 'open.test',
        path: '/p',
        reason: 'open.test does not resolve',
      });
      assert.deepEqual(heads, [], 'the credential passes never ran');
      assert.deepEqual(
        log.events.map((e) => (e.event === 'error' ? e.reason : e.event)),
        ['open.test does not resolve'],
      );
      capture.peer.socket.destroy();
    });
  });
});
