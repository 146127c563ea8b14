/**
 * `npm run fuzz:judged [-- --minutes M | --scenarios N] [--seed S]`: the long run of the judged-equals-delivered
 * property (test/helpers/judged-harness.ts). The CI test runs 25 scenarios on a fixed and on a random seed; this
 * runs seed after seed until the time or scenario budget is spent, prints a table of what the scenarios did, and
 * stops at the first counterexample, printed (shrunk) with the seed that replays it:
 * `AIRLOCK_JUDGED_SEED=S AIRLOCK_JUDGED_RUNS=N node --import tsx --test test/integration/proxy-judged-equals-delivered.test.ts`.
 */
import { parseArgs } from 'node:util';
import fc from 'fast-check';
import { harnessContext, runScenario, scenarioArbitrary, type Scenario } from '../test/helpers/judged-harness.js';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    scenarios: { type: 'string' },
    seed: { type: 'string' },
  },
});
const deadline = Date.now() + Number(values.minutes) * 60_000;
const budget = values.scenarios === undefined ? Number.POSITIVE_INFINITY : Number(values.scenarios);
const SCENARIOS_PER_SEED = 100;

const ctx = await harnessContext();
const totals = { seeds: 0, scenarios: 0, connections: 0, requests: 0, upgrades: 0, allowed: 0 };
const statuses = new Map<string, number>();
let seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed);
const started = Date.now();

function tally(scenario: Scenario, replies: string[]): void {
  totals.connections += scenario.connections.length;
  for (const c of scenario.connections) {
    if (c.upgrade) totals.upgrades++;
    // Each connection ends with the request that closes it.
    else totals.requests += c.requests.length + 1;
  }
  for (const reply of replies) {
    for (const m of reply.matchAll(/HTTP\/1\.1 (\d{3}) /g)) statuses.set(m[1]!, (statuses.get(m[1]!) ?? 0) + 1);
  }
}

let failure: string | null = null;
while (failure === null && Date.now() < deadline && totals.scenarios < budget) {
  const runs = Math.min(SCENARIOS_PER_SEED, budget - totals.scenarios);
  const result = await fc.check(
    fc.asyncProperty(scenarioArbitrary, async (scenario) => {
      const verdict = await runScenario(scenario, ctx);
      totals.scenarios++;
      totals.allowed += verdict.allowed;
      tally(scenario, verdict.replies);
      if (verdict.problems.length > 0) throw new Error(verdict.problems.join('\n'));
    }),
    { seed, numRuns: runs, endOnFailure: true },
  );
  totals.seeds++;
  if (result.failed) {
    failure =
      `seed ${seed}, ${runs} scenarios (AIRLOCK_JUDGED_SEED=${seed} AIRLOCK_JUDGED_RUNS=${runs})\n` +
      `counterexample: ${fc.stringify(result.counterexample)}\n${String(result.errorInstance)}`;
    break;
  }
  seed = (seed + 1) % 2 ** 31;
}

const seconds = (Date.now() - started) / 1000;
console.log(`judged == delivered, ${new Date().toISOString()}, ${seconds.toFixed(0)} s\n`);
console.log('| seeds | scenarios | connections | requests | upgrades | allowed | scenarios/s |');
console.log('| ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
console.log(
  `| ${totals.seeds} | ${totals.scenarios} | ${totals.connections} | ${totals.requests} | ${totals.upgrades} | ` +
    `${totals.allowed} | ${(totals.scenarios / seconds).toFixed(1)} |`,
);
console.log(
  `\nanswers by status: ${[...statuses]
    .sort((a, b) => a[0].localeCompare(b[0]))
    .map(([s, n]) => `${s}×${n}`)
    .join(', ')}`,
);
if (failure !== null) {
  console.log(`\nCOUNTEREXAMPLE — ${failure}`);
  process.exitCode = 1;
} else {
  console.log('\nno counterexample');
}
