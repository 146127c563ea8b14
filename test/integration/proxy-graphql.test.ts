import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { request as httpsRequest } from 'node:https';
import { gzipSync } from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import { formatTextLine } from '../../src/proxy/log/network-log.js';
import { makeTestPki } from '../helpers/tls-fixtures.js';
import {
  rawExchange,
  startHttpUpstream,
  startHttpsUpstream,
  startProxyFixture,
  type EchoReport,
  type FakeUpstream,
  type ProxyFixture,
  type Reply,
} from '../helpers/upstream.js';

/**
 * The GraphQL operation filter on the real proxy over real sockets: an entry with a `graphql` block forwards only
 * the operations it lists, byte for byte, and refuses everything else before the upstream hears of it — whatever
 * alias, fragment, batch, encoding, framing or upgrade the sandbox tries.
 */

let fx: ProxyFixture;
let secure: FakeUpstream;
let plain: FakeUpstream;

const GRAPHQL = { queries: ['viewer', 'repository'], mutations: ['addComment'] };

before(async () => {
  const pki = await makeTestPki(['gh.test']);
  secure = await startHttpsUpstream(pki);
  plain = await startHttpUpstream();
  fx = await startProxyFixture({
    allowlist: {
      url_prefixes: [
        { host: 'gh.test', path: '/graphql', graphql: GRAPHQL },
        { host: 'gh.test', path: '/open', methods: ['POST'] },
        { host: 'gh.test', path: '/api/graphql*', graphql: GRAPHQL },
        { host: 'plain.test', path: '/graphql', graphql: GRAPHQL },
      ],
    },
    upstream: {
      caPem: pki.caPem,
      hosts: { 'gh.test': `127.0.0.1:${secure.port}`, 'plain.test': `127.0.0.1:${plain.port}` },
    },
  });
});

after(async () => {
  await fx.close();
  await secure.close();
  await plain.close();
});

const gql = (query: string, extra: Record<string, unknown> = {}) => JSON.stringify({ query, ...extra });
const sha = (b: string | Buffer) => createHash('sha256').update(b).digest('hex');
const MUTATION = gql('mutation { deleteRepository(input: {repositoryId: "R"}) { clientMutationId } }');

async function post(body: string | Buffer, headers: Record<string, string> = {}, path = '/graphql') {
  const seenBefore = secure.received.length;
  const reply = await fx.https('gh.test', {
    method: 'POST',
    path,
    headers: { Host: 'gh.test', 'Content-Type': 'application/json', ...headers },
    body,
  });
  return { reply, seen: secure.received.length - seenBefore };
}

function assertBlocked(r: { reply: Reply; seen: number }, detail: string) {
  assert.equal(r.reply.status, 403, r.reply.body);
  assert.equal(r.reply.headers['x-airlock-deny'], 'graphql_operation_blocked');
  const body = JSON.parse(r.reply.body) as { code: string; reason: string; hint: string | null; fix: string };
  assert.equal(body.code, 'graphql_operation_blocked');
  assert.ok(body.reason.includes(`'${detail}'`), body.reason);
  assert.equal(typeof body.fix, 'string');
  assert.equal(r.seen, 0, 'a refused operation must not reach the upstream');
  return body;
}

void describe('graphql filter: allowed operations', () => {
  void test('a listed query is forwarded byte for byte and logged with its operation', async () => {
    const body = gql('query Me { viewer { login } }', { operationName: 'Me', variables: {} });
    const r = await post(body);
    assert.equal(r.reply.status, 200, r.reply.body);
    const echo = JSON.parse(r.reply.body) as EchoReport;
    assert.equal(echo.bodySha256, sha(body));
    assert.equal(echo.bodyBytes, Buffer.byteLength(body));
    const line = fx.log.events.map(formatTextLine).find((l) => l.startsWith('ALLOWED POST https://gh.test/graphql'));
    assert.equal(line, 'ALLOWED POST https://gh.test/graphql -> 200 [graphql-op: query/viewer]');
  });

  void test('a listed mutation passes; a gzip body is judged decoded and forwarded still encoded', async () => {
    assert.equal((await post(gql('mutation { addComment(input: {}) { id } }'))).reply.status, 200);
    const zipped = gzipSync(gql('{ repository(owner: "a", name: "b") { id } }'));
    const r = await post(zipped, { 'Content-Encoding': 'gzip' });
    assert.equal(r.reply.status, 200, r.reply.body);
    const echo = JSON.parse(r.reply.body) as EchoReport;
    assert.equal(echo.bodySha256, sha(zipped));
    assert.ok(echo.rawHeaders.includes('gzip'));
  });

  void test('chunked framing and Expect: 100-continue still deliver the inspected body', async () => {
    const body = gql('{ viewer { login } }');
    const reply = await new Promise<Reply>((resolve, reject) => {
      const req = httpsRequest({
        host: '127.0.0.1',
        port: fx.proxy.addresses.https,
        servername: 'gh.test',
        ca: fx.runCa.certPem,
        method: 'POST',
        path: '/graphql',
        agent: false,
        headers: { Host: 'gh.test', Expect: '100-continue', 'Transfer-Encoding': 'chunked' },
      });
      req.on('continue', () => {
        req.write(body.slice(0, 5));
        setTimeout(() => req.end(body.slice(5)), 50);
      });
      req.on('response', (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
      });
      req.on('error', reject);
    });
    assert.equal(reply.status, 200, reply.body);
    assert.equal((JSON.parse(reply.body) as EchoReport).bodySha256, sha(body));
  });

  void test('an entry without a graphql block is not filtered', async () => {
    assert.equal((await post(MUTATION, {}, '/open')).reply.status, 200);
  });
});

void describe('graphql filter: what it refuses', () => {
  void test('an unlisted mutation, with a hint naming the list to change', async () => {
    const body = assertBlocked(await post(MUTATION), 'deleteRepository');
    assert.match(body.fix, /add "deleteRepository" to graphql\.mutations of url_prefixes\[0\]/);
    // The hint is the entry itself with the field added: YAML to paste in its place.
    assert.match(
      body.hint ?? '',
      /^- \{host: "gh\.test", .*graphql: \{.*mutations: \["addComment", "deleteRepository"\]\}\}$/,
    );
    const line = fx.log.events.map(formatTextLine).find((l) => l.startsWith('BLOCKED POST https://gh.test/graphql'));
    assert.match(line ?? '', /-> 403 \(graphql_operation_blocked\)/);
  });

  void test('the tricks: alias, fragments, batching, operationName, subscription, introspection', async () => {
    const cases: Array<[string, string]> = [
      [gql('{ viewer: deleteRepository(input: {}) { id } }'), 'deleteRepository'],
      [gql('mutation { addComment: deleteRepository(input: {}) { id } }'), 'deleteRepository'],
      [gql('mutation { ... on Mutation { deleteRepository(input: {}) { id } } }'), 'deleteRepository'],
      [gql('mutation { ...M } fragment M on Mutation { deleteRepository(input: {}) { id } }'), '<fragment-spread>'],
      [
        JSON.stringify([{ query: '{ viewer { login } }' }, { query: 'mutation { deleteRepository { id } }' }]),
        '<batched>',
      ],
      [gql('query A { viewer { login } } mutation B { deleteRepository { id } }'), '<operation-name-invalid>'],
      [
        gql('query A { viewer { login } } mutation B { deleteRepository { id } }', { operationName: 'B' }),
        'deleteRepository',
      ],
      [gql('subscription { issueEvents { id } }'), 'subscription:<blocked>'],
      [gql('{ __schema { types { name } } }'), '__schema'],
      ['query=mutation{deleteRepository{id}}', '<unparseable>'],
    ];
    for (const [body, detail] of cases) assertBlocked(await post(body), detail);
  });

  void test('an encoding it cannot read, and a body over 1 MiB, are refused unread', async () => {
    assertBlocked(await post(gzipSync(MUTATION), { 'Content-Encoding': 'zstd' }), '<unparseable>');
    assertBlocked(await post(MUTATION, { 'Content-Encoding': 'gzip' }), '<unparseable>');
    const padded = gql('{ viewer { login } }' + ' '.repeat(1024 * 1024));
    assertBlocked(await post(padded), '<too-large>');
    assertBlocked(
      await post(gzipSync(Buffer.alloc(8 * 1024 * 1024, 0x20)), { 'Content-Encoding': 'gzip' }),
      '<too-large>',
    );
  });

  void test('a GET has no body to judge; with the operation in the query string it matches no path at all', async () => {
    let seenBefore = secure.received.length;
    const reply = await fx.https('gh.test', { path: '/graphql' });
    assertBlocked({ reply, seen: secure.received.length - seenBefore }, '<unparseable>');
    seenBefore = secure.received.length;
    const withQuery = await fx.https('gh.test', { path: '/graphql?query=%7Bviewer%7Blogin%7D%7D' });
    assert.equal(withQuery.status, 403);
    assert.equal(withQuery.headers['x-airlock-deny'], 'path_not_allowed');
    assert.equal(secure.received.length, seenBefore);
  });

  void test('an operation in the URL is refused even beside an allowed body; other parameters pass', async () => {
    const allowed = gql('{ viewer { login } }');
    assertBlocked(
      await post(allowed, {}, '/api/graphql?query=mutation%7BdeleteRepository%7Bid%7D%7D'),
      '<query-string>',
    );
    assertBlocked(await post(allowed, {}, '/api/graphql?operationName=Other'), '<query-string>');
    assert.equal((await post(allowed, {}, '/api/graphql?trace=1')).reply.status, 200);
  });

  void test('a WebSocket upgrade to a filtered entry is refused: its frames cannot be judged', async () => {
    const before = plain.received.length;
    const out = await rawExchange(
      fx.proxy.addresses.http,
      'GET /graphql HTTP/1.1\r\nHost: plain.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n' +
        'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
    );
    assert.match(out, /^HTTP\/1\.1 403 /);
    assert.match(out, /X-Airlock-Deny: graphql_operation_blocked/);
    assert.equal(plain.received.length, before);
  });
});
