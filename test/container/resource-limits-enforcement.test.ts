/**
 * "Limits are never silently dropped", per world: a bounded probe inside `airlock run` measures which cgroup limits
 * the kernel really applied (64 forks under pids_limit 32, a 128 MiB allocation under memory 64m, the CPU quota
 * under cpus 0.5), and airlock's warning must name exactly the limits the probe found unenforced — none as root
 * here, all three as a rootless Podman user on this cgroup v1 machine. With --require-limits (or
 * resource_limits.require) a world that cannot enforce them refuses to run (125, no container), and `doctor`
 * says the same up front. A lane's declared world (AIRLOCK_TEST_UNENFORCED_LIMITS) must match the probe.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { LIMIT_PROBE, PROBE_LIMITS, readLimitProbe } from '../helpers/limit-probe.js';
import { declaredUnenforced, LIMIT_NAMES, notEnforcedWarning } from '../helpers/world.js';
import type { CgroupLimitName } from '../../src/cli/engine/limit-enforcement.js';
import {
  airlock,
  airlockContainers,
  ENGINE_SUITES,
  prepareEngine,
  runOn,
  sandboxYaml,
  workspace,
  type AirlockResult,
} from './harness.js';

const LIMITS_YAML = [
  'resource_limits:',
  `  pids_limit: ${PROBE_LIMITS.pidsLimit}`,
  `  memory: ${PROBE_LIMITS.memory}`,
  `  cpus: ${PROBE_LIMITS.cpus}`,
  '',
].join('\n');
const VALUE: Record<CgroupLimitName, string | number> = {
  pids_limit: PROBE_LIMITS.pidsLimit,
  memory: PROBE_LIMITS.memory,
  cpus: PROBE_LIMITS.cpus,
};

for (const { engine, skip } of ENGINE_SUITES) {
  describe(
    `resource limits are enforced or reported, never silently dropped (${engine})`,
    { skip, timeout: 300_000 },
    () => {
      let probeRun: AirlockResult;
      let unenforced: CgroupLimitName[];

      before(async () => {
        await prepareEngine(engine);
        const cwd = await workspace(sandboxYaml(LIMITS_YAML));
        probeRun = await airlock([...runOn(engine), '--', 'python3', '-c', LIMIT_PROBE], { cwd });
        const outcome = readLimitProbe(probeRun.stdout.toString());
        assert.ok(outcome, `the probe ran to its end: ${probeRun.stderr}`);
        unenforced = LIMIT_NAMES.filter((n) => outcome.observed[n] === 'not enforced');
      });

      it('the run goes ahead (exit 0) and its warning names exactly the limits the kernel did not apply', () => {
        assert.equal(probeRun.code, 0, probeRun.stderr);
        for (const name of LIMIT_NAMES) {
          if (unenforced.includes(name)) assert.match(probeRun.stderr, notEnforcedWarning(name, VALUE[name]), name);
          else assert.doesNotMatch(probeRun.stderr, new RegExp(`NOT enforced[^\\n]*\\b${name}=`), name);
        }
        if (unenforced.length > 0) assert.match(probeRun.stderr, /Fix: .*--require-limits/);
        else assert.doesNotMatch(probeRun.stderr, /NOT enforced/);
      });

      it("the lane's declared world is the one the probe found", (t) => {
        const declared = declaredUnenforced();
        if (!declared) {
          t.skip('no AIRLOCK_TEST_UNENFORCED_LIMITS declared (a lane declares its world; a manual run need not)');
          return;
        }
        assert.deepEqual([...declared].sort(), [...unenforced].sort());
      });

      it('--require-limits: exit 125 with the reason and no container where a limit is not enforced, else the run', async () => {
        const cwd = await workspace(sandboxYaml(LIMITS_YAML));
        const r = await airlock([...runOn(engine), '--require-limits', '--', 'echo', 'ran'], { cwd });
        if (unenforced.length === 0) {
          assert.equal(r.code, 0, r.stderr);
          assert.equal(r.stdout.toString(), 'ran\n');
          return;
        }
        assert.equal(r.code, 125, r.stderr);
        assert.equal(r.stdout.toString(), '', 'the command never ran');
        assert.match(r.stderr, /--require-limits requires every resource limit to be enforced/);
        for (const name of unenforced) assert.match(r.stderr, new RegExp(`\\b${name}=`), name);
        assert.match(r.stderr, /Nothing was run/);
        assert.deepEqual(await airlockContainers(engine), []);
      });

      it('resource_limits.require: true in sandbox.yaml does the same', async () => {
        const cwd = await workspace(sandboxYaml(`${LIMITS_YAML}  require: true\n`));
        const r = await airlock([...runOn(engine), '--', 'echo', 'ran'], { cwd });
        assert.equal(r.code, unenforced.length === 0 ? 0 : 125, r.stderr);
        if (unenforced.length > 0) assert.match(r.stderr, /resource_limits\.require requires every resource limit/);
      });

      it('airlock doctor reports it up front, and fails with --require-limits where limits are not enforced', async () => {
        const cwd = await workspace(sandboxYaml());
        const plain = await airlock(['doctor', '--engine', engine], { cwd });
        const line = /^(\S+)\s+limits: (.*)$/m.exec(plain.stdout.toString());
        assert.ok(line, plain.stdout.toString());
        if (unenforced.length === 0) {
          assert.equal(line[1], 'ok', line[0]);
          assert.equal(plain.code, 0, plain.stdout.toString() + plain.stderr);
        } else {
          assert.equal(line[1], 'warn', line[0]);
          for (const name of unenforced) assert.match(line[2]!, new RegExp(`\\b${name}\\b`), name);
        }
        const strict = await airlock(['doctor', '--engine', engine, '--require-limits'], { cwd });
        assert.equal(strict.code, unenforced.length === 0 ? 0 : 125, strict.stdout.toString() + strict.stderr);
      });
    },
  );
}
