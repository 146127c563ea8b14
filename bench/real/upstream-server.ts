/**
 * The HTTPS upstream of the real-topology benchmarks, run in a container on the bench bridge (bundled by esbuild,
 * started with the host's node binary mounted in). `/small` answers 64 bytes, `/bytes/N` streams N bytes, and every
 * other path is a file under the served directory (the generated npm registry and Python index; a path ending in
 * `/` serves its `index.html`). Certificate and key come from /certs.
 */
import { createReadStream, readFileSync, statSync } from 'node:fs';
import https from 'node:https';
import { join, normalize } from 'node:path';
import { Readable } from 'node:stream';

const SMALL_BODY = Buffer.alloc(64, 'x');
const [certDir = '/certs', served = '/srv', port = '443'] = process.argv.slice(2);

function pattern(total: number): Readable {
  const chunk = Buffer.alloc(64 * 1024);
  for (let i = 0; i < chunk.length; i++) chunk[i] = i % 251;
  let sent = 0;
  return new Readable({
    read() {
      if (sent >= total) return void this.push(null);
      const n = Math.min(chunk.length, total - sent);
      sent += n;
      this.push(n === chunk.length ? chunk : chunk.subarray(0, n));
    },
  });
}

const TYPES: Record<string, string> = {
  '.tgz': 'application/octet-stream',
  '.whl': 'application/octet-stream',
  '.html': 'text/html',
  '.json': 'application/json',
};

const server = https.createServer(
  {
    cert: readFileSync(join(certDir, 'cert.pem')),
    key: readFileSync(join(certDir, 'key.pem')),
    keepAliveTimeout: 120_000,
  },
  (req, res) => {
    req.resume();
    const url = (req.url ?? '/').split('?')[0]!;
    const bytes = /^\/bytes\/(\d+)$/.exec(url);
    if (url === '/small') {
      res.writeHead(200, { 'Content-Length': SMALL_BODY.length, 'Content-Type': 'text/plain' });
      res.end(SMALL_BODY);
      return;
    }
    if (bytes) {
      res.writeHead(200, { 'Content-Length': bytes[1], 'Content-Type': 'application/octet-stream' });
      pattern(Number(bytes[1])).pipe(res);
      return;
    }
    const relative = normalize(decodeURIComponent(url)).replace(/^(\.\.(\/|$))+/, '');
    const file = join(served, relative.endsWith('/') ? join(relative, 'index.html') : relative);
    let size: number;
    try {
      const s = statSync(file);
      if (!s.isFile()) throw new Error('not a file');
      size = s.size;
    } catch {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('not found\n');
      return;
    }
    const ext = /\.[a-z]+$/.exec(file)?.[0] ?? '';
    res.writeHead(200, { 'Content-Length': size, 'Content-Type': TYPES[ext] ?? 'application/octet-stream' });
    createReadStream(file).pipe(res);
  },
);
server.listen({ host: '0.0.0.0', port: Number(port), backlog: 4096 }, () => process.stdout.write('READY\n'));
