import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseRequestsLeniently } from '../helpers/lenient-http.js';

/** The judged-equals-delivered harness's second parser reads what lenient servers read (test/helpers). */

const parse = (s: string) =>
  parseRequestsLeniently(Buffer.from(s, 'latin1')).map((r) => ({
    line: `${r.method} ${r.target}`,
    host: r.headers.find(([n]) => n.toLowerCase() === 'host')?.[1],
    body: r.body.toString('latin1'),
    complete: r.complete,
  }));

void test('pipelined requests with Content-Length and chunked bodies', () => {
  assert.deepEqual(
    parse(
      'POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc' +
        'POST /b HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked\r\n\r\n2;x=y\r\nde\r\n1\r\nf\r\n0\r\nT: 1\r\n\r\n' +
        'GET /c HTTP/1.1\r\nHost: c\r\n\r\n',
    ),
    [
      { line: 'POST /a', host: 'a', body: 'abc', complete: true },
      { line: 'POST /b', host: 'b', body: 'def', complete: true },
      { line: 'GET /c', host: 'c', body: '', complete: true },
    ],
  );
});

void test('bare LF, whitespace before the colon and obs-fold are accepted', () => {
  assert.deepEqual(parse('GET /a HTTP/1.1\nHost : a\nX: 1\n  more\n\nGET  /b   HTTP/1.1\r\nHost:b\r\n\r\n'), [
    { line: 'GET /a', host: 'a', body: '', complete: true },
    { line: 'GET /b', host: 'b', body: '', complete: true },
  ]);
});

void test('Transfer-Encoding naming chunked wins over Content-Length; the first of several lengths counts', () => {
  assert.deepEqual(
    parse('POST /a HTTP/1.1\r\nContent-Length: 30\r\nTransfer-Encoding: gzip, chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n'),
    [{ line: 'POST /a', host: undefined, body: 'x', complete: true }],
  );
  assert.deepEqual(
    parse('POST /a HTTP/1.1\r\nContent-Length: +2\r\nContent-Length: 9\r\n\r\nxyGET /b HTTP/1.1\r\n\r\n'),
    [
      { line: 'POST /a', host: undefined, body: 'xy', complete: true },
      { line: 'GET /b', host: undefined, body: '', complete: true },
    ],
  );
});

void test('a head cut off is no request; a body cut off is an incomplete one', () => {
  assert.deepEqual(parse('GET /a HTTP/1.1\r\nHost: a\r\n'), []);
  assert.deepEqual(parse('POST /a HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc'), [
    { line: 'POST /a', host: undefined, body: 'abc', complete: false },
  ]);
});
