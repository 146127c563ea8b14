/**
 * scripts/test-lanes.mjs: how lanes are counted, scheduled and judged. The lanes here are real child processes that
 * print what node's spec reporter or a scripts/lanes/ script prints; the real lanes are what CI runs.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import {
  LANES,
  LaneUnavailable,
  laneLineCounter,
  nodeSpecCounter,
  runLanes,
  type Lane,
} from '../../scripts/test-lanes.mjs';

const host = { root: true, cgroupV2: false };

function specBlock(c: { tests: number; pass: number; fail: number; cancelled?: number; skipped?: number }): string[] {
  return [
    `ℹ tests ${c.tests}`,
    'ℹ suites 1',
    `ℹ pass ${c.pass}`,
    `ℹ fail ${c.fail}`,
    `ℹ cancelled ${c.cancelled ?? 0}`,
    `ℹ skipped ${c.skipped ?? 0}`,
    'ℹ todo 0',
    'ℹ duration_ms 12.5',
  ];
}

/** A lane whose process runs `script` (JavaScript, with `fs` and `log(line)` in scope). */
function lane(name: string, counts: 'node-spec' | 'lane-line', script: string): Lane {
  return {
    name,
    summary: `fake ${name}`,
    prepare: () =>
      Promise.resolve({
        argv: [
          process.execPath,
          '-e',
          `const fs = require('node:fs'); const log = (l) => console.log(l); (async () => { ${script} })();`,
        ],
        cwd: process.cwd(),
        env: process.env,
        counts,
      }),
  };
}

function unavailable(name: string, why: string): Lane {
  return { name, summary: name, prepare: () => Promise.reject(new LaneUnavailable(why)) };
}

async function collect(options: { lanes: Lane[]; selected?: Lane[]; jobs?: number; onCi?: boolean }) {
  const lines: string[] = [];
  const code = await runLanes({
    lanes: options.lanes,
    selected: options.selected ?? options.lanes,
    jobs: options.jobs ?? 1,
    host,
    onCi: options.onCi ?? false,
    write: (line) => lines.push(line),
  });
  return { code, lines, verdicts: lines.filter((l) => /^lane \S+: /.test(l)) };
}

describe('test lanes', { timeout: 60_000 }, () => {
  it('sums every spec summary block, and only whole blocks', () => {
    const counter = nodeSpecCounter();
    const lines = [
      'ℹ tests 99', // what a test may print: not a block
      ...specBlock({ tests: 10, pass: 9, fail: 0, skipped: 1 }),
      'ℹ tests 5',
      'ℹ pass 5', // out of order: not a block either
      ...specBlock({ tests: 4, pass: 2, fail: 1, cancelled: 1 }),
    ];
    lines.forEach((l) => counter.line(l));
    assert.deepEqual(counter.counts(), { tests: 14, pass: 11, fail: 2, skipped: 1 });
    assert.equal(nodeSpecCounter().counts(), null);
  });

  it('reads its own lane line, the last one', () => {
    const counter = laneLineCounter('podman5');
    counter.line('lane vm-cgroupv2: 9 tests, 9 pass, 0 fail');
    counter.line('lane podman5: 1 tests, 0 pass, 1 fail');
    counter.line('lane podman5: 120 tests, 118 pass, 0 fail, 2 skipped');
    assert.deepEqual(counter.counts(), { tests: 120, pass: 118, fail: 0, skipped: 2 });
  });

  it('each lane prints its counts; a failed lane or a failed test fails the run', async () => {
    const block = (c: Parameters<typeof specBlock>[0]) => specBlock(c).map((l) => `log(${JSON.stringify(l)});`);
    const ok = lane('ok', 'node-spec', block({ tests: 3, pass: 3, fail: 0 }).join(''));
    const red = lane('red', 'node-spec', `${block({ tests: 3, pass: 2, fail: 1 }).join('')} process.exit(1);`);
    const script = lane('script', 'lane-line', "log('lane script: 7 tests, 7 pass, 0 fail');");
    const silent = lane('silent', 'lane-line', "log('all good, trust me');");
    const { code, verdicts, lines } = await collect({ lanes: [ok, red, script, silent] });
    assert.equal(code, 1);
    assert.match(verdicts[0]!, /^lane ok: 3 tests, 3 pass, 0 fail — passed in /);
    assert.match(verdicts[1]!, /^lane red: 3 tests, 2 pass, 1 fail — failed in .*: exited 1$/);
    assert.match(verdicts[2]!, /^lane script: 7 tests, 7 pass, 0 fail — passed/);
    assert.match(verdicts[3]!, /^lane silent: no counts — failed in .*: printed no counts$/);
    const table = lines.slice(lines.findIndex((l) => l.startsWith('== lanes:')) + 1);
    assert.match(table[0]!, /^lane +result +tests +pass +fail +skipped +minutes +why$/);
    assert.match(table[2]!, /^red +failed +3 +2 +1 +0 /);
    assert.match(table[4]!, /^silent +failed +- +- +- +- /);
  });

  it('a lane that cannot run says why: a warning here, a failure on CI; nothing run at all always fails', async () => {
    const ok = lane('ok', 'lane-line', "log('lane ok: 1 tests, 1 pass, 0 fail');");
    const absent = unavailable('absent', 'qemu-system-x86_64 is not installed');
    const here = await collect({ lanes: [ok, absent] });
    assert.equal(here.code, 0);
    assert.ok(here.verdicts.includes('lane absent: not run: qemu-system-x86_64 is not installed'));
    assert.ok(here.lines.includes('1 lane(s) not run here; on CI (CI=true) that fails'));

    const ci = await collect({ lanes: [ok, absent], onCi: true });
    assert.equal(ci.code, 1);
    assert.ok(ci.verdicts.includes('lane absent: not run: qemu-system-x86_64 is not installed (a failure on CI)'));

    const unselected = await collect({ lanes: [ok, absent], selected: [ok], onCi: true });
    assert.equal(unselected.code, 1);
    assert.ok(
      unselected.verdicts.includes('lane absent: not run: not selected (--lane / AIRLOCK_LANES) (a failure on CI)'),
    );

    const none = await collect({ lanes: [absent] });
    assert.equal(none.code, 1);
    assert.ok(none.lines.includes('no lane ran: nothing was tested'));
  });

  const dir = mkdtempSync(path.join(tmpdir(), 'airlock-lanes-test-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('runs `jobs` lanes at a time, in the order given', async () => {
    const mark = (name: string) => JSON.stringify(path.join(dir, name));
    // a and b each wait (at most 20 s) until the other has started: only side by side can both pass. c starts
    // only when a slot is free, so one of them has ended.
    const waitFor = (name: string) =>
      `for (let i = 0; i < 200 && !fs.existsSync(${mark(name)}); i++) await new Promise((r) => setTimeout(r, 100));`;
    const pair = (me: string, other: string) =>
      lane(
        me,
        'lane-line',
        `fs.writeFileSync(${mark(`${me}.started`)}, ''); ${waitFor(`${other}.started`)}
         const met = fs.existsSync(${mark(`${other}.started`)});
         fs.writeFileSync(${mark(`${me}.ended`)}, '');
         log(\`lane ${me}: 1 tests, \${met ? 1 : 0} pass, \${met ? 0 : 1} fail\`);`,
      );
    const third = lane(
      'c',
      'lane-line',
      `const free = fs.existsSync(${mark('a.ended')}) || fs.existsSync(${mark('b.ended')});
       log(\`lane c: 1 tests, \${free ? 1 : 0} pass, \${free ? 0 : 1} fail\`);`,
    );
    const { code, verdicts } = await collect({ lanes: [pair('a', 'b'), pair('b', 'a'), third], jobs: 2 });
    assert.deepEqual(verdicts.map((v) => v.replace(/ —.*/, '')).sort(), [
      'lane a: 1 tests, 1 pass, 0 fail',
      'lane b: 1 tests, 1 pass, 0 fail',
      'lane c: 1 tests, 1 pass, 0 fail',
    ]);
    assert.equal(code, 0);
    assert.ok(existsSync(path.join(dir, 'a.ended')));
  });

  it('the real lanes, longest first, are every world CI proves', () => {
    assert.deepEqual(
      LANES.map((l) => l.name),
      ['root', 'vm-cgroupv2', 'rootless', 'podman5'],
    );
  });
});
