/**
 * Builds still work under airlock's seccomp profile (issue 13, finding 5): threads (glibc tries clone3, gets ENOSYS and
 * falls back to clone), fork and exec, node worker_threads, python threading and every multiprocessing start method,
 * a C compile and run, parallel make, git, npm and ptrace — in the default "host toolchain" image (the host's /usr),
 * behind the network sandbox with nothing allowed, on each engine.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { before, describe, it } from 'node:test';
import { airlock, ENGINE_SUITES, runOn, workspace, type AirlockResult } from './harness.js';

const C_PROGRAM = String.raw`
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
static void *twice(void *arg) { return (void *)((intptr_t)arg * 2); }
int main(void) {
  /* Answered by the kernel (EFAULT/EINVAL) unless a filter refuses it. */
  long r = syscall(435 /* clone3 */, NULL, 0);
  printf("clone3=%s\n", r < 0 && errno == ENOSYS ? "ENOSYS" : "answered");
  pthread_t t[8];
  intptr_t sum = 0;
  for (intptr_t i = 0; i < 8; i++)
    if (pthread_create(&t[i], NULL, twice, (void *)i)) return 1;
  for (int i = 0; i < 8; i++) { void *v; pthread_join(t[i], &v); sum += (intptr_t)v; }
  printf("c_threads=%ld\n", (long)sum);
  pid_t p = fork();
  if (p == 0) _exit(7);
  int status;
  waitpid(p, &status, 0);
  printf("c_fork=%d\n", WEXITSTATUS(status));
  return 0;
}
`;

const NODE_WORKERS = `
const { Worker } = require('node:worker_threads');
const { execFileSync } = require('node:child_process');
let done = 0;
let sum = 0;
for (let i = 0; i < 4; i++) {
  const code = 'const w = require("node:worker_threads"); w.parentPort.postMessage(w.workerData * 10)';
  new Worker(code, { eval: true, workerData: i }).on('message', (m) => {
    sum += m;
    if (++done === 4) console.log('node_workers=' + sum + '\\nnode_exec=' + execFileSync('sh', ['-c', 'echo ok']));
  });
}
`;

const PYTHON_POOLS = `
import multiprocessing, threading
def square(x):
    return x * x
if __name__ == '__main__':
    seen = []
    threads = [threading.Thread(target=seen.append, args=(i,)) for i in range(8)]
    for t in threads: t.start()
    for t in threads: t.join()
    print(f'py_threads={len(seen)}')
    for method in ('fork', 'spawn', 'forkserver'):
        with multiprocessing.get_context(method).Pool(2) as pool:
            print(f'py_{method}={sum(pool.map(square, range(10)))}')
`;

const GIT = 'git -c user.email=ci@airlock.invalid -c user.name=ci';
const SCRIPT = [
  'set -u',
  'cd /tmp',
  'cp /workspace/t.c /workspace/w.js /workspace/m.py .',
  'if command -v gcc >/dev/null; then gcc -O1 -pthread -o t t.c && ./t; fi',
  'node w.js',
  'python3 m.py',
  `mkdir mk && printf 'all: a b c d\\na b c d:\\n\\t@echo $@ > $@\\n' > mk/Makefile && make -s -j4 -C mk && echo "make=$(cat mk/a mk/b mk/c mk/d | tr -d '\\n')"`,
  `git init -q g && cd g && for i in 1 2 3; do echo $i > f$i && git add f$i && ${GIT} commit -qm c$i; done && git repack -adq && git fsck --no-progress >/dev/null && echo "git=$(git rev-list --count HEAD)"; cd /tmp`,
  'mkdir p && cd p && npm init -y >/dev/null && echo "npm=$(npm pack --silent)"; cd /tmp',
  `if command -v strace >/dev/null; then echo "strace=$(strace -f -qq -e trace=none sh -c 'echo traced' 2>&1)"; fi`,
  `echo "seccomp=$(awk '/^Seccomp:/ {print $2}' /proc/self/status)"`,
].join('\n');

/** The host's /usr is the image's: what it has decides what can be tried. */
const hasGcc = existsSync('/usr/bin/gcc');
const hasStrace = existsSync('/usr/bin/strace');

function lines(r: AirlockResult): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of r.stdout.toString().split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) out.set(line.slice(0, eq), line.slice(eq + 1));
  }
  return out;
}

for (const { engine, skip } of ENGINE_SUITES) {
  describe(`builds under airlock's seccomp profile on ${engine}`, { skip, timeout: 300_000 }, () => {
    let result: AirlockResult;
    let seen: Map<string, string>;

    before(async () => {
      // No image: the default host-toolchain image. The network sandbox is on with nothing allowed, so npm (or
      // anything else) cannot reach a registry; its update check is off so it does not try.
      const cwd = await workspace('env:\n  npm_config_update_notifier: "false"\n', {
        't.c': C_PROGRAM,
        'w.js': NODE_WORKERS,
        'm.py': PYTHON_POOLS,
      });
      result = await airlock([...runOn(engine), '--', 'bash', '-c', SCRIPT], { cwd });
      seen = lines(result);
    });

    it('runs the whole script under a seccomp filter', () => {
      assert.equal(result.code, 0, result.stderr);
      assert.equal(seen.get('seccomp'), '2', 'Seccomp: 2 is filter mode');
    });

    it(
      'C: clone3 is refused with ENOSYS and pthreads still work (glibc falls back to clone), fork too',
      {
        skip: hasGcc ? false : 'no gcc in this host’s /usr',
      },
      () => {
        assert.equal(seen.get('clone3'), 'ENOSYS');
        assert.equal(seen.get('c_threads'), '56');
        assert.equal(seen.get('c_fork'), '7');
      },
    );

    it('node: worker_threads and child processes', () => {
      assert.equal(seen.get('node_workers'), '60');
      assert.equal(seen.get('node_exec'), 'ok');
    });

    it('python: threads and the fork, spawn and forkserver multiprocessing pools', () => {
      assert.equal(seen.get('py_threads'), '8');
      for (const method of ['fork', 'spawn', 'forkserver']) assert.equal(seen.get(`py_${method}`), '285', method);
    });

    it('make -j4, git (commit, repack, fsck) and npm pack', () => {
      assert.equal(seen.get('make'), 'abcd');
      assert.equal(seen.get('git'), '3');
      assert.equal(seen.get('npm'), 'p-1.0.0.tgz');
    });

    it(
      'ptrace of the sandbox’s own processes (strace -f)',
      {
        skip: hasStrace ? false : 'no strace in this host’s /usr',
      },
      () => {
        assert.equal(seen.get('strace'), 'traced');
      },
    );
  });
}
