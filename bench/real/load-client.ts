/**
 * The load generator of the real-topology benchmark. It runs inside a container (the airlock sandbox, or a plain
 * container on the bench bridge), bundled by esbuild and started with the host's node binary mounted in, so every
 * target is driven by the same program with the same trust store mechanism (NODE_EXTRA_CA_CERTS).
 *
 * Its job comes as one JSON argument; it prints `BENCH-MARK <phase> <start|end>` lines around the phases the host
 * samples (proxy CPU and RSS) and one `BENCH-RESULT <json>` line at the end. Every loop is bounded by time or count.
 */
import https from 'node:https';
import { performance } from 'node:perf_hooks';

export interface LoadJob {
  /** Port every request goes to (443 for the sandbox and direct). */
  port: number;
  /** Names to spread the keep-alive workers over; they resolve to the target in the container. */
  hosts: string[];
  phaseMs: number;
  keepAliveConnections: number;
  newConnectionConcurrency: number;
  downloadBytes: number;
  downloads: number;
  rssConnections: number;
  rssMs: number;
  /** Only these phases (default: all); the warm-up always runs. */
  phases?: Array<'keepalive' | 'newconn' | 'download' | 'rss'>;
}

export interface LoadResult {
  keepAliveRps: number;
  p50: number;
  p99: number;
  newConnPerSec: number;
  downloadMBps: number;
  errors: number;
  firstError?: string;
}

const MB = 1024 * 1024;
const mark = (phase: string, edge: 'start' | 'end') => process.stdout.write(`BENCH-MARK ${phase} ${edge}\n`);

function once(job: LoadJob, host: string, path: string, agent: https.Agent | false): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = https.request({ host, port: job.port, path, agent }, (res) => {
      let bytes = 0;
      res.on('data', (c: Buffer) => (bytes += c.length));
      res.on('end', () => (res.statusCode === 200 ? resolve(bytes) : reject(new Error(`status ${res.statusCode}`))));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

async function closedLoop(
  job: LoadJob,
  concurrency: number,
  durationMs: number,
  keepAlive: boolean,
  errors: { count: number; first?: string },
): Promise<number[]> {
  const agent = keepAlive ? new https.Agent({ keepAlive: true, maxSockets: concurrency }) : false;
  const latencies: number[] = [];
  const deadline = performance.now() + durationMs;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, worker) => {
      const host = job.hosts[worker % job.hosts.length]!;
      while (performance.now() < deadline) {
        const t0 = performance.now();
        try {
          await once(job, host, '/small', agent);
          latencies.push(performance.now() - t0);
        } catch (err) {
          errors.count++;
          errors.first ??= (err as Error).message;
          // A refused or reset target must not spin this loop: back off a little.
          await new Promise((r) => setTimeout(r, 10));
        }
      }
    }),
  );
  if (agent) agent.destroy();
  return latencies;
}

const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;

export async function runLoad(job: LoadJob): Promise<LoadResult> {
  const errors: { count: number; first?: string } = { count: 0 };
  const wanted = (phase: NonNullable<LoadJob['phases']>[number]) => !job.phases || job.phases.includes(phase);
  await closedLoop(job, 8, 1000, true, errors);

  let ka: number[] = [];
  if (wanted('keepalive')) {
    mark('keepalive', 'start');
    ka = await closedLoop(job, job.keepAliveConnections, job.phaseMs, true, errors);
    mark('keepalive', 'end');
  }
  const sorted = [...ka].sort((a, b) => a - b);

  let nc: number[] = [];
  if (wanted('newconn')) {
    mark('newconn', 'start');
    nc = await closedLoop(job, job.newConnectionConcurrency, job.phaseMs, false, errors);
    mark('newconn', 'end');
  }

  let downloadMBps = NaN;
  if (wanted('download')) {
    mark('download', 'start');
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
    const t0 = performance.now();
    let bytes = 0;
    for (let i = 0; i < job.downloads; i++) {
      try {
        bytes += await once(job, job.hosts[0]!, `/bytes/${job.downloadBytes}`, agent);
      } catch (err) {
        errors.count++;
        errors.first ??= (err as Error).message;
      }
    }
    downloadMBps = bytes / MB / ((performance.now() - t0) / 1000);
    agent.destroy();
    mark('download', 'end');
  }

  if (wanted('rss')) {
    mark('rss', 'start');
    await closedLoop(job, job.rssConnections, job.rssMs, true, errors);
    mark('rss', 'end');
  }

  return {
    keepAliveRps: ka.length / (job.phaseMs / 1000),
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    newConnPerSec: nc.length / (job.phaseMs / 1000),
    downloadMBps,
    errors: errors.count,
    ...(errors.first !== undefined ? { firstError: errors.first } : {}),
  };
}

const job = JSON.parse(process.argv[2] ?? '{}') as LoadJob;
const result = await runLoad(job);
process.stdout.write(`BENCH-RESULT ${JSON.stringify(result)}\n`);
