/**
 * The real CLI entry (main + the process's own streams), with airlock's run/image/doctor commands registered in case
 * the dispatcher does not list them yet. Container tests spawn this file so signals and exit codes are real.
 */
import { main, registerCommand } from '../../src/cli/main.js';

registerCommand('run', () => import('../../src/cli/commands/run.js'));
registerCommand('image', () => import('../../src/cli/commands/image.js'));
registerCommand('doctor', () => import('../../src/cli/commands/doctor.js'));

const code = await main(process.argv.slice(2), {
  cwd: process.cwd(),
  env: process.env,
  stdout: process.stdout,
  stderr: process.stderr,
  isTTY: Boolean(process.stdin.isTTY && process.stdout.isTTY),
});
process.exitCode = code;
