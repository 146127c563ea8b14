// Types for scripts/test-lanes.mjs, for its unit test (test/unit/test-lanes.test.ts).
export class LaneUnavailable extends Error {}

export interface LaneCounts {
  tests: number;
  pass: number;
  fail: number;
  skipped: number;
}

export interface LaneLaunch {
  argv: string[];
  cwd: string;
  env: NodeJS.ProcessEnv;
  counts: 'node-spec' | 'lane-line';
}

export interface HostFacts {
  root: boolean;
  cgroupV2: boolean;
}

export interface Lane {
  name: string;
  summary: string;
  prepare(host: HostFacts, print: (line: string) => void): Promise<LaneLaunch>;
}

export interface LaneResult {
  lane: Lane;
  status: 'passed' | 'failed' | 'not run';
  why: string;
  counts: LaneCounts | null;
  minutes: number;
}

export interface LineCounter {
  line(text: string): void;
  counts(): LaneCounts | null;
}

export const LANES: Lane[];
export function nodeSpecCounter(): LineCounter;
export function laneLineCounter(name: string): LineCounter;
export function summaryLine(result: LaneResult, onCi: boolean): string;
export function runLanes(options: {
  lanes: Lane[];
  selected: Lane[];
  jobs: number;
  host: HostFacts;
  onCi: boolean;
  write: (line: string) => void;
}): Promise<number>;
