import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import v8 from 'node:v8';
import vm from 'node:vm';
import fc from 'fast-check';
import type { MaskedCredential, SigningCredential } from '../../src/protocol/proxy-wire.js';
import { createCredentialProcessor } from '../../src/proxy/credentials/index.js';
import { applyMaskedSecrets } from '../../src/proxy/credentials/masked.js';
import {
  acceptingIdentity,
  injectedForms,
  responseScrubber,
  type InjectedValue,
  type ResponseScrubber,
} from '../../src/proxy/credentials/response-scrubber.js';
import type { CredentialResult, RequestHead } from '../../src/proxy/credentials/types.js';
import { scrubResponse } from '../../src/proxy/http/scrubbed-response.js';
import { clientSign, s3GetInput } from '../helpers/aws-client-signer.js';

/**
 * The response scrubber (issue 13, finding 4): every real value a request carried maps back to what the sandbox
 * sent, in a streamed body whatever the chunking, in headers and the status line. A non-streaming reference
 * (leftmost match, longest at one position) is the oracle; the streaming transform must agree with it for every way
 * of cutting the body into chunks.
 */

/** The oracle: the whole input at once, leftmost first, longest first at one position. */
function reference(input: Buffer, values: readonly InjectedValue[]): { output: Buffer; count: number } {
  const needles = values
    .map((v) => ({ bytes: Buffer.from(v.sent), replacement: Buffer.from(v.sandbox) }))
    // A pair that maps a value to itself replaces nothing, so it never hides a later pair for the same value
    // (which does map it back): identity pairs go first, then the first remaining pair per value wins.
    .filter((n) => !n.bytes.equals(n.replacement))
    .filter((n, i, all) => n.bytes.length > 0 && all.findIndex((m) => m.bytes.equals(n.bytes)) === i);
  const out: Buffer[] = [];
  let count = 0;
  let i = 0;
  while (i < input.length) {
    let best: (typeof needles)[number] | undefined;
    for (const n of needles) {
      const fits = i + n.bytes.length <= input.length;
      if (
        fits &&
        input.subarray(i, i + n.bytes.length).equals(n.bytes) &&
        (!best || n.bytes.length > best.bytes.length)
      )
        best = n;
    }
    if (best) {
      out.push(best.replacement);
      i += best.bytes.length;
      count++;
    } else {
      out.push(input.subarray(i, i + 1));
      i++;
    }
  }
  return { output: Buffer.concat(out), count };
}

/** Runs `chunks` through a fresh body transform; returns the output and the replacement count. */
async function streamed(
  scrubber: ResponseScrubber,
  chunks: readonly Buffer[],
): Promise<{ output: Buffer; count: number }> {
  const transform = scrubber.body();
  const out: Buffer[] = [];
  await pipeline(
    Readable.from(chunks, { objectMode: false }),
    transform,
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        out.push(chunk);
        cb();
      },
    }),
  );
  return { output: Buffer.concat(out), count: transform.replacements };
}

function split(input: Buffer, cuts: readonly number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (input.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let from = 0;
  for (const p of points) {
    if (p > from) chunks.push(input.subarray(from, p));
    from = Math.max(from, p);
  }
  if (from < input.length) chunks.push(input.subarray(from));
  return chunks;
}

const REAL = 'ghp_R3alR3alR3alR3alR3alR3alR3alR3alR3al';
const SURROGATE = 'ghp_Surr0gateSurr0gateSurr0gateSurr0gate';

void describe('the body transform agrees with the oracle however the body is cut', { timeout: 60_000 }, () => {
  // A small alphabet makes overlaps, shared prefixes and needles inside needles common.
  const text = fc.string({ unit: fc.constantFrom('a', 'b', 'c', 'x'), maxLength: 60 });
  const needle = fc.string({ unit: fc.constantFrom('a', 'b', 'c'), minLength: 1, maxLength: 8 });
  const values = fc.array(
    fc.record({ sent: needle, sandbox: fc.string({ unit: fc.constantFrom('S', 'T', 'a'), maxLength: 9 }) }),
    { minLength: 1, maxLength: 4 },
  );
  // Found by a random seed: [{a→a}, {a→''}] over the body 'a' — the identity pair must not shadow the second.
  void it('an identity pair does not shadow a later pair for the same value', async () => {
    const vals: InjectedValue[] = [
      { sent: 'a', sandbox: 'a' },
      { sent: 'a', sandbox: '' },
    ];
    const got = await streamed(responseScrubber(vals)!, [Buffer.from('xax')]);
    assert.deepEqual([got.output.toString(), got.count], ['xx', 1]);
  });

  void it('random needles (overlapping, prefixes of one another), random text, random chunk boundaries', async () => {
    await fc.assert(
      fc.asyncProperty(values, text, fc.array(fc.nat(), { maxLength: 12 }), async (vals, body, cuts) => {
        const input = Buffer.from(body);
        const scrubber = responseScrubber(vals);
        const expected = reference(input, vals);
        if (!scrubber) return assert.deepEqual(expected.output, input);
        const got = await streamed(scrubber, split(input, cuts));
        assert.equal(got.output.toString(), expected.output.toString());
        assert.equal(got.count, expected.count);
      }),
      { numRuns: 400 },
    );
  });

  void it('every single split point of a body with several secrets, and one byte at a time', async () => {
    const vals: InjectedValue[] = [
      { sent: REAL, sandbox: SURROGATE },
      { sent: 'abcab', sandbox: 'XY' },
      { sent: 'abc', sandbox: 'Q' },
      { sent: 'cabd', sandbox: 'LONGER-REPLACEMENT' },
    ];
    const scrubber = responseScrubber(vals)!;
    const input = Buffer.from(`{"a":"Bearer ${REAL}","b":"abcabd cabd abc","c":"${REAL}${REAL}ghp_R3al"}`);
    const expected = reference(input, vals);
    assert.ok(!expected.output.includes(REAL));
    for (let at = 0; at <= input.length; at++) {
      const got = await streamed(scrubber, [input.subarray(0, at), input.subarray(at)]);
      assert.equal(got.output.toString(), expected.output.toString(), `split at ${at}`);
      assert.equal(got.count, expected.count);
    }
    const bytewise = [...input].map((b) => Buffer.from([b]));
    assert.equal((await streamed(scrubber, bytewise)).output.toString(), expected.output.toString());
  });

  void it('the output holds no needle when replacements cannot form one (disjoint alphabets)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            sent: needle,
            sandbox: fc.string({ unit: fc.constantFrom('X', 'Y'), minLength: 1, maxLength: 5 }),
          }),
          {
            minLength: 1,
            maxLength: 4,
          },
        ),
        text,
        fc.array(fc.nat(), { maxLength: 8 }),
        async (vals, body, cuts) => {
          const input = Buffer.from(body);
          const scrubber = responseScrubber(vals)!;
          const { output } = await streamed(scrubber, split(input, cuts));
          for (const v of vals) assert.ok(!output.includes(v.sent), `${v.sent} survived in ${output.toString()}`);
        },
      ),
      { numRuns: 300 },
    );
  });

  void it('overlapping needles: the leftmost wins, then the longest at that position', () => {
    const scrubber = responseScrubber([
      { sent: 'abc', sandbox: '1' },
      { sent: 'abcdef', sandbox: '2' },
      { sent: 'cdefg', sandbox: '3' },
    ])!;
    assert.deepEqual(scrubber.text('abcdefg abcdx xcdefg'), { text: '2g 1dx x3', replacements: 3 });
  });

  void it('an empty body stays empty; a body without a needle passes unchanged', async () => {
    const scrubber = responseScrubber([{ sent: REAL, sandbox: SURROGATE }])!;
    assert.deepEqual(await streamed(scrubber, []), { output: Buffer.alloc(0), count: 0 });
    const plain = Buffer.from('nothing to see here, not even ghp_R3a');
    assert.deepEqual(await streamed(scrubber, [plain]), { output: plain, count: 0 });
  });

  void it('only a genuine needle prefix is held back at a chunk boundary: a streamed event is not delayed', async () => {
    const transform = responseScrubber([{ sent: REAL, sandbox: SURROGATE }])!.body();
    const pushed: string[] = [];
    transform.on('data', (c: Buffer) => pushed.push(c.toString()));
    transform.write('data: {"delta":"hi"}\n\n');
    transform.write('data: ghp_R3');
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(pushed, ['data: {"delta":"hi"}\n\n', 'data: ']);
    transform.end('alR3alR3alR3alR3alR3alR3alR3alR3al\n\n');
    await new Promise((resolve) => transform.on('end', resolve));
    assert.equal(pushed.join(''), `data: {"delta":"hi"}\n\ndata: ${SURROGATE}\n\n`);
  });

  void it('a huge body streams through in bounded memory', async () => {
    const forms = injectedForms(REAL, SURROGATE);
    const scrubber = responseScrubber(forms)!;
    const longest = Math.max(...forms.map((f) => Buffer.byteLength(f.sent)));
    const chunk = Buffer.alloc(64 * 1024, 'y');
    // The secret cut across every chunk boundary: the transform must hold back a tail each time.
    chunk.write(REAL.slice(0, 20), chunk.length - 20);
    chunk.write(REAL.slice(20), 0);
    const total = 4096; // 256 MiB
    let sent = 0;
    const source = new Readable({
      read() {
        this.push(sent++ < total ? chunk : null);
      },
    });
    const transform = scrubber.body();
    let bytes = 0;
    let held = 0;
    let buffered = 0;
    // Live external memory, measured after a full collection so garbage awaiting GC does not count.
    v8.setFlagsFromString('--expose-gc');
    const collect = vm.runInNewContext('gc') as () => void;
    collect();
    const baseline = process.memoryUsage().arrayBuffers;
    const retained: number[] = [];
    let writes = 0;
    await pipeline(
      source,
      transform,
      new Writable({
        write(c: Buffer, _enc, cb) {
          bytes += c.length;
          held = Math.max(held, transform.heldBytes);
          buffered = Math.max(buffered, transform.writableLength + transform.readableLength);
          if (++writes % 256 === 0) {
            collect();
            retained.push(process.memoryUsage().arrayBuffers - baseline);
          }
          // A slow reader: the transform must wait (backpressure), not pile the body up.
          setImmediate(cb);
        },
      }),
    );
    assert.equal(bytes, total * chunk.length);
    assert.equal(transform.replacements, total - 1);
    // What the transform itself holds: the tail (a needle prefix), and what its stream buffers allow — a few
    // chunks, whatever the body's size.
    assert.ok(held > 0 && held < longest, `held back ${held} bytes`);
    assert.ok(buffered <= 4 * chunk.length, `buffered ${buffered} bytes`);
    // Freed buffers are released by a background sweeper, so one sample may still count a batch of them. The least
    // alive over the second half of the stream is what is truly kept: a transform that held the body would keep
    // over 128 MiB there.
    const kept = Math.min(...retained.slice(retained.length / 2));
    assert.ok(kept < 16 * 1024 * 1024, `${kept} bytes alive throughout the second half of 256 MiB`);
  });
});

void describe('headers, forms and encodings', { timeout: 10_000 }, () => {
  void it('a header value, a header name and a reason phrase are scrubbed as Latin-1 text', () => {
    const scrubber = responseScrubber([{ sent: REAL, sandbox: SURROGATE }])!;
    assert.deepEqual(scrubber.text(`Bearer ${REAL}`), { text: `Bearer ${SURROGATE}`, replacements: 1 });
    assert.deepEqual(scrubber.text('no secret'), { text: 'no secret', replacements: 0 });
  });

  void it('a non-ASCII real value is found as UTF-8 (bodies, Basic) and as Latin-1 (how Node writes headers)', () => {
    const scrubber = responseScrubber([{ sent: 'pässwört-1234', sandbox: 'surrogate-xyz' }])!;
    const utf8 = Buffer.from('x pässwört-1234 y').toString('latin1');
    const latin1 = Buffer.from('x pässwört-1234 y', 'latin1').toString('latin1');
    assert.equal(scrubber.text(utf8).text, 'x surrogate-xyz y');
    assert.equal(scrubber.text(latin1).text, 'x surrogate-xyz y');
    assert.equal(scrubber.lengthPreserving, false);
  });

  void it('percent-encoded and JSON-escaped forms map to the same forms of the sandbox value', () => {
    const real = 'FwoG/ab+cd==';
    const forms = injectedForms(real, 'SURROGATESURROGATE');
    assert.deepEqual(forms, [
      { sent: real, sandbox: 'SURROGATESURROGATE' },
      { sent: 'FwoG%2Fab%2Bcd%3D%3D', sandbox: 'SURROGATESURROGATE' },
      { sent: 'FwoG\\/ab+cd==', sandbox: 'SURROGATESURROGATE' },
    ]);
    const scrubber = responseScrubber(forms)!;
    assert.equal(
      scrubber.text(`{"t":"FwoG\\/ab+cd==","q":"?t=FwoG%2Fab%2Bcd%3D%3D","r":"${real}"}`).text,
      '{"t":"SURROGATESURROGATE","q":"?t=SURROGATESURROGATE","r":"SURROGATESURROGATE"}',
    );
  });

  void it('nothing to map back (no values, or every value equal to what the sandbox sent): no scrubber at all', () => {
    assert.equal(responseScrubber([]), null);
    assert.equal(
      responseScrubber([
        { sent: 'same', sandbox: 'same' },
        { sent: '', sandbox: 'x' },
      ]),
      null,
    );
  });

  void it('one Accept-Encoding: identity replaces every case variant, in the first one’s place', () => {
    assert.deepEqual(
      acceptingIdentity([
        ['Host', 'h'],
        ['accept-encoding', 'gzip'],
        ['X', '1'],
        ['ACCEPT-ENCODING', 'br'],
      ]),
      [
        ['Host', 'h'],
        ['Accept-Encoding', 'identity'],
        ['X', '1'],
      ],
    );
    assert.deepEqual(acceptingIdentity([['Host', 'h']]), [
      ['Host', 'h'],
      ['Accept-Encoding', 'identity'],
    ]);
  });
});

void describe('the response plan', { timeout: 10_000 }, () => {
  const injected = [{ sent: REAL, sandbox: SURROGATE }];
  const head = (over: Partial<Parameters<typeof scrubResponse>[1]> = {}) => ({
    method: 'GET',
    status: 200,
    statusMessage: 'OK',
    headers: [
      ['Content-Length', '10'],
      ['X-Echo', `Bearer ${REAL}`],
    ] as Array<[string, string]>,
    ...over,
  });

  void it('same-length replacements keep Content-Length; the head is scrubbed', () => {
    const plan = scrubResponse(injected, head());
    assert.equal(plan?.kind, 'relay');
    if (plan?.kind !== 'relay') return;
    assert.deepEqual(plan.headers, [
      ['Content-Length', '10'],
      ['X-Echo', `Bearer ${SURROGATE}`],
    ]);
    assert.deepEqual(plan.annotations(), ['scrubbed: 1']);
  });

  void it('a length-changing replacement, or a compressed body, drops Content-Length (re-framed)', () => {
    for (const plan of [
      scrubResponse([{ sent: REAL, sandbox: 'short' }], head()),
      scrubResponse(
        injected,
        head({
          headers: [
            ['Content-Length', '10'],
            ['Content-Encoding', 'gzip'],
          ],
        }),
      ),
    ]) {
      assert.equal(plan?.kind, 'relay');
      if (plan?.kind === 'relay')
        assert.equal(
          plan.headers.find(([n]) => n === 'Content-Length'),
          undefined,
        );
    }
  });

  void it('a coding the proxy cannot undo, or stacked codings, are refused', () => {
    for (const coding of ['zstd', 'compress', 'gzip, br', 'x-custom']) {
      const plan = scrubResponse(injected, head({ headers: [['Content-Encoding', coding]] }));
      assert.equal(plan?.kind, 'refuse', coding);
    }
    const identity = scrubResponse(injected, head({ headers: [['Content-Encoding', 'identity']] }));
    assert.equal(identity?.kind, 'relay');
  });

  void it('a response that has no body (HEAD, 204, 304, 1xx) keeps its headers’ framing and is never refused', () => {
    const compressed = {
      headers: [
        ['Content-Length', '10'],
        ['Content-Encoding', 'zstd'],
      ] as Array<[string, string]>,
    };
    for (const over of [{ method: 'HEAD' }, { status: 204 }, { status: 304 }, { status: 101 }]) {
      const plan = scrubResponse([{ sent: REAL, sandbox: 'short' }], head({ ...compressed, ...over }));
      assert.equal(plan?.kind, 'relay', JSON.stringify(over));
      if (plan?.kind === 'relay') assert.deepEqual(plan.headers, compressed.headers);
    }
  });
});

const GH: MaskedCredential = {
  name: 'GH_TOKEN',
  surrogate: SURROGATE,
  value: REAL,
  scopes: ['api.github.com'],
  headers: ['Authorization'],
  allowForeignCredentials: false,
};

function request(headers: Array<[string, string]>, over: Partial<RequestHead> = {}): RequestHead {
  return {
    method: 'GET',
    host: 'api.github.com',
    hostHeader: 'api.github.com',
    port: 443,
    target: '/user',
    headers,
    ...over,
  };
}

void describe('what the credential passes tell the scrubber', { timeout: 10_000 }, () => {
  void it('a swapped Bearer token: the real value and its encoded forms', () => {
    const out = applyMaskedSecrets(request([['Authorization', `Bearer ${SURROGATE}`]]), [GH]);
    assert.deepEqual(out.injected, injectedForms(REAL, SURROGATE));
  });

  void it('Basic credentials: also the whole blob as the sandbox wrote it, and unpadded', () => {
    const sent = Buffer.from(`oauth2:${SURROGATE}`).toString('base64').replace(/=+$/, '');
    const real = Buffer.from(`oauth2:${REAL}`).toString('base64');
    const out = applyMaskedSecrets(request([['Authorization', `Basic ${sent}`]]), [GH]);
    assert.ok(real.endsWith('='), 'the fixture exercises padding');
    assert.deepEqual(out.injected?.slice(-2), [
      { sent: real, sandbox: sent },
      { sent: real.replace(/=+$/, ''), sandbox: sent },
    ]);
  });

  void it('nothing injected (clear text, stripped, out of scope): nothing to scrub, Accept-Encoding untouched', () => {
    const process = createCredentialProcessor({ masked: [GH], signing: [] });
    const cases: RequestHead[] = [
      request([['Authorization', `Bearer ${SURROGATE}`]], { scheme: 'http' }),
      request([['Authorization', 'Bearer attacker']]),
      request([['Authorization', `Bearer ${SURROGATE}`]], { host: 'elsewhere.test' }),
    ];
    for (const head of cases) {
      const outcome = process({ ...head, headers: [...head.headers, ['Accept-Encoding', 'gzip']] });
      assert.equal(outcome.kind, 'ready');
      const result = (outcome as { result: CredentialResult }).result;
      assert.equal(result.injected, undefined);
      assert.ok(result.headers.some(([n, v]) => n === 'Accept-Encoding' && v === 'gzip'));
    }
  });

  const aws: SigningCredential = {
    name: 'AWS',
    type: 'aws-sigv4',
    surrogateAccessKeyId: 'AKIASURROGATE0000003',
    surrogateSecretAccessKey: 'SurrogateSecretKeyThatIsFortyCharsLong02',
    accessKeyId: 'AKIAREALREALREAL0001',
    secretAccessKey: 'RealSecretAccessKeyRealSecretAccessKey00',
    surrogateSessionToken: 'S'.repeat(512),
    sessionToken: 'REAL-session-token/+=',
    scopes: ['*.amazonaws.com'],
  };
  const signed = (extra: Array<[string, string]>) =>
    clientSign(
      s3GetInput({
        mode: 'header',
        path: '/bucket/key',
        headers: [['Host', 'b.s3.amazonaws.com'], ...extra],
        accessKeyId: aws.surrogateAccessKeyId,
        secretAccessKey: aws.surrogateSecretAccessKey!,
        sessionToken: aws.surrogateSessionToken,
        amzDate: '20261127T000000Z',
      }),
    );
  const resigned = (extra: Array<[string, string]>) => {
    const client = signed(extra);
    const outcome = createCredentialProcessor(
      { masked: [], signing: [aws] },
      { now: () => new Date('2026-11-27Z') },
    )({
      method: 'GET',
      host: 'b.s3.amazonaws.com',
      hostHeader: 'b.s3.amazonaws.com',
      port: 443,
      target: client.target,
      headers: client.headers,
    });
    assert.equal(outcome.kind, 'ready');
    return { client, result: (outcome as { result: CredentialResult }).result };
  };

  void it('AWS re-signing: the real key id, the session token (raw and encoded) and the real signature', () => {
    const { client, result } = resigned([]);
    const realSignature = /Signature=([0-9a-f]+)/.exec(result.headers.find(([n]) => n === 'Authorization')![1])![1]!;
    assert.deepEqual(result.injected, [
      ...injectedForms(aws.accessKeyId, aws.surrogateAccessKeyId),
      ...injectedForms(aws.sessionToken!, aws.surrogateSessionToken!),
      { sent: realSignature, sandbox: client.signature },
    ]);
    assert.ok(result.headers.some(([n, v]) => n === 'Accept-Encoding' && v === 'identity'));
  });

  void it('an Accept-Encoding the client signed is left as signed', () => {
    const { result } = resigned([['Accept-Encoding', 'gzip']]);
    assert.deepEqual(
      result.headers.filter(([n]) => n.toLowerCase() === 'accept-encoding'),
      [['Accept-Encoding', 'gzip']],
    );
  });
});
