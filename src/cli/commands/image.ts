/**
 * `airlock image hash | save DIR | load DIR`, for CI image caches (airut-behaviour.md items 62-64). `hash` prints
 * exactly `repo=<hex>` and `proxy=<hex>` lines on stdout (the Action evals it); everything else goes to stderr.
 */
import { mkdir, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { loadPolicy } from '../config/load.js';
import { callEngine, resolveEngine, type Engine } from '../engine/engine.js';
import { EXIT, UsageError } from '../errors.js';
import { planRunImage, saveImage } from '../images/run-image.js';
import type { LoadedPolicy } from '../config/types.js';
import {
  engineFlag,
  ENGINE_OPTIONS,
  KEEP_IMAGES_OPTION,
  keepImagesFlag,
  LOG_OPTIONS,
  loggerFor,
  POLICY_OPTIONS,
  policyLocation,
  splitAtDoubleDash,
} from './options.js';
import { parseFlags } from './parse-flags.js';
import type { Command } from './types.js';

const OPTIONS = {
  ...POLICY_OPTIONS,
  ...ENGINE_OPTIONS,
  ...LOG_OPTIONS,
  image: { type: 'string' },
  ...KEEP_IMAGES_OPTION,
} as const;

const USAGE = `usage: airlock image hash | save DIR | load DIR [options]

  hash       print repo=<sha256> and proxy=<sha256> (cache keys)
  save DIR   build the images if needed and write DIR/repo.tar, DIR/proxy.tar
  load DIR   load whichever of DIR/repo.tar, DIR/proxy.tar exist
options: --config-dir --config --dockerfile --context-dir --image --engine --keep-images N --verbose --debug --log FILE
`;

/** What the proxy image side provides (src/cli/session/proxy-image.ts, written with the network sandbox). */
interface ProxyImageModule {
  proxyImageHash(): Promise<string>;
  ensureProxyImage?(engine: Engine, onBuild?: (tag: string) => void): Promise<string>;
}

async function proxyImage(): Promise<ProxyImageModule | null> {
  return await import('../session/proxy-image.js');
}

/**
 * Cache keys and tarballs depend on the Dockerfile and `image:`, never on secret values, and CI computes them in
 * steps that do not see the secrets: so `!env` references resolve to a placeholder when the variable is unset.
 */
function envForImageCommands(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return new Proxy(env, {
    get: (target, key) => (typeof key === 'string' ? (target[key] ?? 'unset-in-image-command') : undefined),
  });
}

async function exists(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

export const run: Command = async (argv, ctx) => {
  const { options } = splitAtDoubleDash(argv);
  const { values, positionals } = parseFlags(
    { args: options, options: OPTIONS, strict: true, allowPositionals: true },
    'image',
  );
  if (values.help) {
    ctx.stdout.write(USAGE);
    return EXIT.ok;
  }
  const [action, dirArg, ...extra] = positionals;
  if (action === undefined) throw new UsageError(`no image command given (hash, save or load)\n\n${USAGE}`);
  if (action !== 'hash' && action !== 'save' && action !== 'load') {
    throw new UsageError(`unknown image command '${action}' (hash, save or load)`);
  }
  if (action === 'hash' ? dirArg !== undefined : dirArg === undefined || extra.length > 0) {
    throw new UsageError(action === 'hash' ? 'image hash takes no directory' : `image ${action} takes one DIR`);
  }
  const log = loggerFor(values, ctx);
  try {
    const policy = async (): Promise<LoadedPolicy> =>
      loadPolicy(policyLocation(values, ctx.cwd), envForImageCommands(ctx.env));
    const proxy = await proxyImage();
    if (action === 'hash') {
      const plan = await planRunImage(await policy(), values.image);
      const lines = [`repo=${plan.hash}`];
      if (proxy) lines.push(`proxy=${await proxy.proxyImageHash()}`);
      else log.warn('the proxy image is not part of this build: printing only repo=');
      ctx.stdout.write(`${lines.join('\n')}\n`);
      return EXIT.ok;
    }

    const dir = resolve(ctx.cwd, dirArg!);
    const engine = await resolveEngine(engineFlag(values), ctx.env);
    if (action === 'save') {
      await mkdir(dir, { recursive: true });
      const plan = await planRunImage(await policy(), values.image);
      // Saving for a cache: an image that exists is good enough, whatever its age.
      await plan.ensure(engine, Infinity, log, { keepImages: keepImagesFlag(values['keep-images']) });
      const repoTar = join(dir, 'repo.tar');
      await rm(repoTar, { force: true });
      await saveImage(engine, plan.ref, repoTar);
      log.info(`saved ${plan.ref} to ${repoTar}`);
      if (proxy?.ensureProxyImage) {
        const proxyTag = await proxy.ensureProxyImage(engine, (tag) => log.info(`building ${tag}`));
        const proxyTar = join(dir, 'proxy.tar');
        await rm(proxyTar, { force: true });
        await saveImage(engine, proxyTag, proxyTar);
        log.info(`saved ${proxyTag} to ${proxyTar}`);
      }
      return EXIT.ok;
    }

    // load: a cache may have restored either tarball or none; a bad tarball is a warning, never a failure.
    for (const name of ['repo.tar', 'proxy.tar']) {
      const path = join(dir, name);
      if (!(await exists(path))) {
        log.info(`${path} does not exist: skipped`);
        continue;
      }
      const loaded = await callEngine(engine, ['load', '--input', path]);
      if (loaded.code === 0) log.info(`loaded ${path}`);
      else log.warn(`could not load ${path}: ${loaded.stderr.trim()}`);
    }
    return EXIT.ok;
  } finally {
    await log.close();
  }
};
