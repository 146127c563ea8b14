import type { Allowlist } from '../../protocol/allowlist.js';
import type { SandboxConfig } from '../../protocol/sandbox-config.js';

/** Where the policy files are looked up; every field optional (defaults: `.airlock/`, else `.airut/`, under cwd). */
export interface PolicyLocation {
  cwd: string;
  configDir?: string;
  config?: string;
  allowlist?: string;
  dockerfile?: string;
  contextDir?: string;
  /** Read only the allowlist (for `policy check`, which must not need the secrets sandbox.yaml names). */
  allowlistOnly?: boolean;
}

/** The trusted policy for one run, validated. Produced by `loadPolicy()` in ./load.ts. */
export interface LoadedPolicy {
  /** The config directory actually used, or null when none exists (all defaults). */
  configDir: string | null;
  layout: 'airlock' | 'airut' | 'none';
  sandbox: SandboxConfig;
  /** Dotted key path → host variable name, for every value written as `!env NAME`. */
  envRefs: Map<string, string>;
  allowlist: Allowlist;
  /** sha256 hex of the canonical JSON of the enforced allowlist (policy provenance). */
  allowlistSha256: string;
  /** Files that were read (absent ones are not listed). */
  files: { sandbox?: string; allowlist?: string };
  /**
   * Containerfile/Dockerfile and build context, or null when there is none (image: or the embedded default applies).
   */
  build: { dockerfile: string; contextDir: string } | null;
  /** Linter warnings, each a `file:line:col: key.path: …` line (errors abort loading instead). */
  warnings: string[];
  /** Absolute path of `upstream_ca_file`, resolved against the config directory. */
  upstreamCaFile?: string;
}
