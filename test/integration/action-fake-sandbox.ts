// A process that is the GitHub Action with a stand-in for `airlock run`: everything real (inputs, git, policy,
// outputs) except the sandbox, which prints what FAKE_SANDBOX says and records what it was given in
// FAKE_SANDBOX_SEEN. Run by action-workflow-commands.test.ts with `node --import tsx`.
import { writeFileSync } from 'node:fs';
import { main } from '../../src/action/main.js';
import type { Command } from '../../src/cli/commands/types.js';
import { loadPolicy } from '../../src/cli/config/load.js';

const run: Command = (argv, ctx) => {
  writeFileSync(process.env.FAKE_SANDBOX_SEEN!, JSON.stringify({ argv, env: ctx.env }));
  for (const line of (process.env.FAKE_SANDBOX_PRINTS ?? '').split('\n')) if (line) ctx.stdout.write(`${line}\n`);
  if (process.env.FAKE_SANDBOX_THROWS) throw new Error(process.env.FAKE_SANDBOX_THROWS);
  return Promise.resolve(Number(process.env.FAKE_SANDBOX_EXIT ?? '0'));
};

process.exitCode = await main({ run, image: () => Promise.resolve(0), loadPolicy, credentialValues: () => [] });
