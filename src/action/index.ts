// Entry of the committed bundle (dist/action/index.js): wires the CLI's commands into the action; only this file
// sets the exit code.
import { run } from '../cli/commands/run.js';
import { run as image } from '../cli/commands/image.js';
import { loadPolicy } from '../cli/config/load.js';
import { prepareCredentials } from '../cli/secrets/prepare.js';
import { main } from './main.js';

process.exitCode = await main({
  run,
  image,
  loadPolicy,
  credentialValues: (policy, env) => prepareCredentials(policy, env).secretValues,
});
