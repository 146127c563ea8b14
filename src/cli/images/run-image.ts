/**
 * Which image a run uses, in order: `--image`, `image:` in sandbox.yaml, the repository's Dockerfile (built and
 * cached as `airlock-repo:<hash>`), else the embedded host-toolchain default.
 */
import { createHash } from 'node:crypto';
import { callEngine, mustCallEngine, type Engine } from '../engine/engine.js';
import { EngineError } from '../errors.js';
import type { BindMount } from '../engine/run-args.js';
import type { LoadedPolicy } from '../config/types.js';
import type { Logger } from '../session/log.js';
import { buildImage } from './build.js';
import { hashBuildInputs, repoImageTag } from './context-hash.js';
import { defaultImageTag, describeHostToolchain, importHostToolchain } from './host-toolchain.js';
import { ensureImage, type ImageAction } from './image-cache.js';
import { DEFAULT_KEEP_IMAGES, pruneRepoImages, REPO_SOURCE_LABEL } from './prune.js';

export type ImageSource = 'flag' | 'config' | 'dockerfile' | 'embedded';

export interface RunImage {
  ref: string;
  source: ImageSource;
  /** Host paths the image needs at run time (the embedded default's read-only /usr). */
  mounts: BindMount[];
  action: ImageAction;
}

export interface RunImageRequest {
  engine: Engine;
  policy: LoadedPolicy;
  imageFlag?: string;
  maxAgeHours: number;
  log: Logger;
  signal?: AbortSignal;
  /** Repository images kept per Dockerfile after a build (`--keep-images`); 0 keeps all. */
  keepImages?: number;
}

export interface EnsureOptions {
  signal?: AbortSignal;
  keepImages?: number;
}

/** A prebuilt image is used as is; airlock pulls it only when the engine does not have it yet. */
async function ensurePrebuilt(engine: Engine, ref: string, log: Logger): Promise<ImageAction> {
  const present = await callEngine(engine, ['image', 'inspect', '--format', '{{.Id}}', ref]);
  if (present.code === 0) return 'reuse';
  log.info(`image ${ref} is not present locally: pulling it`);
  const pulled = await callEngine(engine, ['pull', ref]);
  if (pulled.code !== 0) {
    throw new EngineError(
      `image ${ref} is not present locally and could not be pulled: ${pulled.stderr.trim().split('\n').pop() ?? ''}` +
        ` (build or \`${engine.kind} load\` it first)`,
    );
  }
  return 'build';
}

/** What the run's image is, before touching the engine: `image hash` needs only this. */
export interface ImagePlan {
  source: ImageSource;
  ref: string;
  /** Content hash for CI cache keys (for a prebuilt image: of its reference). */
  hash: string;
  mounts: BindMount[];
  ensure(engine: Engine, maxAgeHours: number, log: Logger, options?: EnsureOptions): Promise<ImageAction>;
}

export async function planRunImage(policy: LoadedPolicy, imageFlag?: string): Promise<ImagePlan> {
  const prebuilt = imageFlag ?? policy.sandbox.image;
  if (prebuilt !== undefined) {
    return {
      source: imageFlag !== undefined ? 'flag' : 'config',
      ref: prebuilt,
      hash: createHash('sha256').update(`image:${prebuilt}`).digest('hex'),
      mounts: [],
      ensure: (engine, _maxAge, log) => ensurePrebuilt(engine, prebuilt, log),
    };
  }
  if (policy.build) {
    const build = policy.build;
    const hash = await hashBuildInputs(build);
    const tag = repoImageTag(hash);
    return {
      source: 'dockerfile',
      ref: tag,
      hash,
      mounts: [],
      ensure: async (engine, maxAgeHours, log, options = {}) => {
        const { signal } = options;
        const ensured = await ensureImage({
          engine,
          tag,
          maxAgeHours,
          signal,
          onWait: (pid) => log.info(`waiting for another airlock process (pid ${pid}) building ${tag}`),
          build: (noCache) =>
            buildImage({
              engine,
              tag,
              dockerfile: build.dockerfile,
              contextDir: build.contextDir,
              noCache,
              log,
              labels: { [REPO_SOURCE_LABEL]: build.dockerfile },
              signal,
            }),
        });
        log.info(`image ${tag}: ${ensured.action}`);
        if (ensured.action !== 'reuse') {
          await pruneRepoImages(engine, {
            dockerfile: build.dockerfile,
            currentTag: tag,
            keep: options.keepImages ?? DEFAULT_KEEP_IMAGES,
            log,
          });
        }
        return ensured.action;
      },
    };
  }
  const toolchain = await describeHostToolchain();
  const tag = defaultImageTag(toolchain.rootfs);
  return {
    source: 'embedded',
    ref: tag,
    hash: tag.slice(tag.indexOf(':') + 1),
    mounts: toolchain.mounts,
    ensure: async (engine, _maxAge, log) => {
      // The tag is a content hash of the rootfs, so an existing image is never stale: no age limit applies.
      const ensured = await ensureImage({
        engine,
        tag,
        maxAgeHours: Infinity,
        build: () => importHostToolchain(engine, tag, toolchain.rootfs),
      });
      log.info(`embedded default image ${tag}: ${ensured.action}`);
      return ensured.action;
    },
  };
}

export async function prepareRunImage(request: RunImageRequest): Promise<RunImage> {
  const plan = await planRunImage(request.policy, request.imageFlag);
  const action = await plan.ensure(request.engine, request.maxAgeHours, request.log, {
    signal: request.signal,
    keepImages: request.keepImages,
  });
  return { ref: plan.ref, source: plan.source, mounts: plan.mounts, action };
}

/** Save an image to a tarball (replacing an existing file), for CI caches. */
export async function saveImage(engine: Engine, tag: string, path: string): Promise<void> {
  await mustCallEngine(engine, ['save', '--output', path, tag], `saving ${tag} to ${path}`);
}
