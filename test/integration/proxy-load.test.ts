import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runProxyLoad } from '../../bench/proxy-load.js';

/**
 * 1,000 concurrent keep-alive TLS connections and 100,000 requests through the real proxy program (bundled, in its
 * own process, as in the container) to a loopback upstream: every request answered 200, every one logged, and the
 * proxy's memory flat once the connections are up (the second half of the run costs no more RSS than the first).
 * Timings go to the diagnostics, not the assertions: they depend on the machine.
 */

const CONNECTIONS = 1000;
const REQUESTS = 100_000;
/** Slack for GC timing between the two halves; a per-request leak at 50,000 requests would exceed it. */
const RSS_MARGIN_MB = 64;

void test(`${CONNECTIONS} concurrent connections and ${REQUESTS} requests: no errors, RSS stable`, async (t) => {
  const f = await runProxyLoad({
    connections: CONNECTIONS,
    requests: REQUESTS,
    progress: (line) => t.diagnostic(line),
  });
  t.diagnostic(
    `${f.completed} requests in ${f.seconds.toFixed(1)} s = ${f.requestsPerSecond.toFixed(0)} req/s; ` +
      `peak client sockets ${f.peakClientSockets}; upstream TLS connections ${f.upstreamConnections}`,
  );
  const mb = (n: number) => n.toFixed(0);
  t.diagnostic(
    `proxy RSS MB start ${mb(f.rssMB.start)}, half ${mb(f.rssMB.half)}, end ${mb(f.rssMB.end)}; ` +
      `peak first half ${mb(f.rssMB.peakFirstHalf)}, second half ${mb(f.rssMB.peakSecondHalf)}`,
  );

  assert.equal(f.errors, 0, `connection errors, e.g. ${f.failureSamples.join('; ')}`);
  assert.equal(f.failures, 0, `non-200 answers, e.g. ${f.failureSamples.join('; ')}`);
  assert.equal(f.completed, REQUESTS);
  assert.equal(f.peakClientSockets, CONNECTIONS, 'the client never had all its connections open at once');
  assert.equal(f.upstreamRequests, REQUESTS, 'the upstream saw a different number of requests');
  assert.equal(f.allowedEvents, REQUESTS, 'the network log missed requests');
  assert.ok(
    f.rssMB.end <= f.rssMB.half + RSS_MARGIN_MB,
    `RSS grew from ${mb(f.rssMB.half)} MB at half way to ${mb(f.rssMB.end)} MB`,
  );
  assert.ok(
    f.rssMB.peakSecondHalf <= f.rssMB.peakFirstHalf + RSS_MARGIN_MB,
    `peak RSS ${mb(f.rssMB.peakFirstHalf)} MB in the first half, ${mb(f.rssMB.peakSecondHalf)} MB in the second`,
  );
  assert.equal(f.proxyExitCode, 0, 'the proxy did not exit cleanly at stdin EOF');
});
