/**
 * `airlock doctor`: is this machine able to run the sandbox? Checks the engine and its version, cgroups, the OCI
 * runtime, ulimits, networking, and finally starts a real hardened container from the embedded default image —
 * and for everything wrong says how to fix it. Exit 0 when nothing failed, else 125.
 */
import { callEngine, findOnPath, resolveEngine, type Engine, type EngineResult } from '../engine/engine.js';
import {
  adviseStartFailure,
  formatFinding,
  judgeCgroups,
  judgeLimits,
  judgeRuntime,
  judgeStorage,
  judgeUlimits,
  judgeVersion,
  type Finding,
} from '../engine/diagnose.js';
import { readEngineFacts, readHostCgroupState, withHostCgroup, type EngineFacts } from '../engine/engine-info.js';
import { cgroupLimitRequests, settleLimits } from '../engine/limit-enforcement.js';
import { parseHardLimit, readHostLimits } from '../engine/host-limits.js';
import { DEFAULT_PIDS_LIMIT, buildRunArgs } from '../engine/run-args.js';
import { EXIT } from '../errors.js';
import { defaultImageTag, describeHostToolchain, importHostToolchain } from '../images/host-toolchain.js';
import { ensureImage } from '../images/image-cache.js';
import { newRunIdentity, resourceLabelArgs, resourceLabels, resourceName } from '../session/labels.js';
import { seccompFinding, writeSeccompProfile } from '../session/seccomp-file.js';
import { readFileSync } from 'node:fs';
import { engineFlag, ENGINE_OPTIONS } from './options.js';
import { parseFlags } from './parse-flags.js';
import type { Command } from './types.js';

async function checkNetworking(engine: Engine): Promise<Finding> {
  const identity = newRunIdentity();
  const name = resourceName('doctor', identity);
  const created = await callEngine(engine, ['network', 'create', '--internal', ...resourceLabelArgs(identity), name]);
  if (created.code !== 0) {
    return {
      check: 'networking',
      verdict: 'fail',
      detail: `cannot create an internal network: ${created.stderr.trim()}`,
      fix:
        engine.kind === 'podman'
          ? 'install netavark/aardvark-dns or CNI plugins (containernetworking-plugins) and check `podman network create`'
          : 'check that dockerd runs with iptables enabled',
    };
  }
  await callEngine(engine, ['network', 'rm', name]);
  return { check: 'networking', verdict: 'ok', detail: 'internal networks can be created' };
}

/**
 * Start a real container with the run's hardening flags: the definitive test of runtime, limits and init. Limits
 * this engine does not enforce here are left out, as a run leaves them out (the limits check has said so).
 */
async function checkContainer(engine: Engine, facts: EngineFacts): Promise<Finding> {
  const toolchain = await describeHostToolchain();
  const tag = defaultImageTag(toolchain.rootfs);
  await ensureImage({
    engine,
    tag,
    maxAgeHours: Infinity,
    build: () => importHostToolchain(engine, tag, toolchain.rootfs),
  });
  const identity = newRunIdentity();
  const wanted = { pidsLimit: DEFAULT_PIDS_LIMIT, memory: '64m', ...readHostLimits() };
  const requests = cgroupLimitRequests({ pidsLimit: DEFAULT_PIDS_LIMIT, pidsLimitDefaulted: true, memory: '64m' });
  const { limits } = settleLimits({ ok: true, facts }, wanted, requests, null);
  const name = resourceName('doctor', identity);
  const seccompProfile = await writeSeccompProfile();
  const args = buildRunArgs({
    engine: engine.kind,
    name,
    image: tag,
    command: ['true'],
    labels: resourceLabels(identity),
    envNames: [],
    mounts: toolchain.mounts,
    workdir: '/',
    limits,
    interactive: false,
    tty: false,
    networkArgs: ['--network=none'],
    seccompProfile: seccompProfile.path,
  });
  let started: EngineResult;
  try {
    started = await callEngine(engine, args);
  } finally {
    await seccompProfile.remove();
    await callEngine(engine, ['rm', '--force', name]);
  }
  if (started.code === 0) {
    return { check: 'container', verdict: 'ok', detail: 'a hardened container starts and exits cleanly' };
  }
  const message = started.stderr.trim().split('\n').pop() ?? '';
  return {
    check: 'container',
    verdict: 'fail',
    detail: `starting a container failed: ${message}`,
    fix: adviseStartFailure(message),
  };
}

/** Controllers on the cgroup2 hierarchy of a hybrid cgroup v1 host, or null when the host has no such hierarchy. */
function readHybridControllers(): string[] | null {
  try {
    return readFileSync('/sys/fs/cgroup/unified/cgroup.controllers', 'utf8').split(/\s+/).filter(Boolean);
  } catch {
    return null;
  }
}

export const run: Command = async (argv, ctx) => {
  const { values } = parseFlags(
    {
      args: argv,
      options: {
        ...ENGINE_OPTIONS,
        'require-limits': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
    },
    'doctor',
  );
  if (values.help) {
    ctx.stdout.write(
      'usage: airlock doctor [--engine podman|docker] [--require-limits]\n\n' +
        '  --require-limits  a resource limit this engine cannot enforce here is a failure (exit 125), not a warning\n',
    );
    return EXIT.ok;
  }
  const findings: Finding[] = [];
  const report = (finding: Finding): void => {
    findings.push(finding);
    ctx.stdout.write(formatFinding(finding));
  };
  let engine: Engine;
  try {
    engine = await resolveEngine(engineFlag(values), ctx.env);
  } catch (e) {
    report({
      check: 'engine',
      verdict: 'fail',
      detail: (e as Error).message,
      fix: 'apt-get install podman runc (or docker.io), then run airlock doctor again',
    });
    return EXIT.airlock;
  }
  report({ check: 'engine', verdict: 'ok', detail: `${engine.kind} at ${engine.binary}` });
  const answer = withHostCgroup(await readEngineFacts(engine), readHostCgroupState(ctx.env));
  if (!answer.ok) {
    report({
      check: 'engine',
      verdict: 'fail',
      detail: answer.reason,
      fix:
        engine.kind === 'docker' ? 'start dockerd (or set DOCKER_HOST)' : 'run `podman info` and fix what it reports',
    });
    return EXIT.airlock;
  }
  const facts = answer.facts;
  const cgroupVersion = facts.cgroupVersion === null ? '' : `v${facts.cgroupVersion}`;
  report(judgeVersion(engine.kind, facts.version));
  const network = facts.rootlessNetwork ? `, ${facts.rootlessNetwork} networking` : '';
  report({ check: 'mode', verdict: 'ok', detail: `${facts.rootless ? 'rootless' : 'rootful'}${network}` });
  const hybridControllers = readHybridControllers();
  report(judgeCgroups({ version: cgroupVersion, hybrid: hybridControllers !== null, manager: facts.cgroupManager }));
  report(judgeLimits(facts, values['require-limits']));
  report(
    judgeRuntime({
      engine: engine.kind,
      runtime: facts.runtime,
      cgroupVersion,
      runcInstalled: (await findOnPath('runc', ctx.env.PATH)) !== null,
      hybridControllers: hybridControllers ?? [],
    }),
  );
  report(judgeStorage(facts));
  let limitsText = '';
  try {
    limitsText = readFileSync('/proc/self/limits', 'utf8');
  } catch {
    limitsText = '';
  }
  report(judgeUlimits({ hardNofile: parseHardLimit(limitsText, 'Max open files'), ...readHostLimits() }));
  report(await checkNetworking(engine));
  report(await seccompFinding());
  report(await checkContainer(engine, facts));
  return findings.some((f) => f.verdict === 'fail') ? EXIT.airlock : EXIT.ok;
};
