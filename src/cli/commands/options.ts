/**
 * Options more than one command takes, declared once (node:util parseArgs shapes) with the functions that turn
 * their parsed values into what the rest of the CLI needs. A flag renamed here is renamed for every command.
 */
import path from 'node:path';
import type { PolicyLocation } from '../config/types.js';
import { parseEngineKind, type EngineKind } from '../engine/engine.js';
import { UsageError } from '../errors.js';
import { createLogger, type Logger } from '../session/log.js';
import type { NetworkLogOptions } from '../session/network-log-sink.js';
import type { CommandContext } from './types.js';

/** Where the allowlist comes from (all that `policy check` reads). */
export const ALLOWLIST_OPTIONS = {
  'config-dir': { type: 'string' },
  allowlist: { type: 'string' },
} as const;

/** Where every policy file comes from (run, config check, image). */
export const POLICY_OPTIONS = {
  ...ALLOWLIST_OPTIONS,
  config: { type: 'string' },
  dockerfile: { type: 'string' },
  'context-dir': { type: 'string' },
} as const;

/** Options every engine-aware command shares (run, image, doctor). */
export const ENGINE_OPTIONS = {
  engine: { type: 'string' },
  'container-command': { type: 'string' },
} as const;

export const LOG_OPTIONS = {
  verbose: { type: 'boolean', default: false },
  debug: { type: 'boolean', default: false },
  log: { type: 'string' },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

/** How many images built from one Dockerfile survive a build (run, image save). */
export const KEEP_IMAGES_OPTION = {
  'keep-images': { type: 'string' },
} as const;

/** Machine-readable output instead of text (config check, policy check). */
export const JSON_OPTION = {
  json: { type: 'boolean', default: false },
} as const;

/** The network sandbox's log flags (run). */
export const NETWORK_LOG_OPTIONS = {
  'network-log': { type: 'string' },
  'network-log-json': { type: 'string' },
  'network-log-live': { type: 'boolean', default: false },
} as const;

type StringFlags<T> = { [K in keyof T]?: string };
export type PolicyFlags = StringFlags<typeof POLICY_OPTIONS>;
export type NetworkLogFlags = { 'network-log'?: string; 'network-log-json'?: string; 'network-log-live'?: boolean };

export function policyLocation(values: PolicyFlags, cwd: string): PolicyLocation {
  return {
    cwd,
    configDir: values['config-dir'],
    config: values.config,
    allowlist: values.allowlist,
    dockerfile: values.dockerfile,
    contextDir: values['context-dir'],
  };
}

export function loggerFor(values: { verbose?: boolean; debug?: boolean; log?: string }, ctx: CommandContext): Logger {
  return createLogger({
    verbose: values.verbose,
    debug: values.debug,
    file: values.log,
    cwd: ctx.cwd,
    stderr: ctx.stderr,
    isTTY: ctx.isTTY,
  });
}

export function engineFlag(values: StringFlags<typeof ENGINE_OPTIONS>): EngineKind | undefined {
  if (values.engine !== undefined && values['container-command'] !== undefined) {
    throw new UsageError('give either --engine or --container-command, not both');
  }
  const raw = values.engine ?? values['container-command'];
  return raw === undefined ? undefined : parseEngineKind(raw);
}

export function keepImagesFlag(value: string | undefined): number | undefined {
  return value === undefined ? undefined : parseWholeNumber('--keep-images', value, 0);
}

/** The network-log flags with their paths resolved against the working directory; `''` counts as not given. */
export function networkLogOptions(values: NetworkLogFlags, cwd: string): NetworkLogOptions {
  const file = (v: string | undefined) => (v ? path.resolve(cwd, v) : undefined);
  const options: NetworkLogOptions = { live: values['network-log-live'] === true };
  const text = file(values['network-log']);
  const json = file(values['network-log-json']);
  if (text) options.textFile = text;
  if (json) options.jsonFile = json;
  return options;
}

/** The network-log flags given on the command line, as `--name`s (for "ignored without a proxy"). */
export function givenNetworkLogFlags(values: NetworkLogFlags): string[] {
  return (Object.keys(NETWORK_LOG_OPTIONS) as Array<keyof NetworkLogFlags>)
    .filter((name) => values[name] !== undefined && values[name] !== false)
    .map((name) => `--${name}`);
}

/** The command is everything after the first `--`, verbatim; options are what precedes it. */
export function splitAtDoubleDash(argv: string[]): { options: string[]; command: string[] | null } {
  const at = argv.indexOf('--');
  if (at < 0) return { options: argv, command: null };
  return { options: argv.slice(0, at), command: argv.slice(at + 1) };
}

export function parseWholeNumber(flag: string, value: string, min: number): number {
  if (!/^\d+$/.test(value.trim()) || Number(value) < min) {
    throw new UsageError(`${flag} must be a whole number of at least ${min}, not '${value}'`);
  }
  return Number(value);
}
