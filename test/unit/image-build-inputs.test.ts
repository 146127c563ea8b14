import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { summarizeBuildFailure } from '../../src/cli/images/build.js';
import { dockerfileBases, replaceFromRefs } from '../../src/cli/images/dockerfile.js';
import { imagesToPrune } from '../../src/cli/images/prune.js';

describe('the images a Dockerfile builds on', { timeout: 10_000 }, () => {
  it('FROM images, not stages or scratch; COPY --from and RUN --mount from= images too', () => {
    const source = [
      '# syntax=docker/dockerfile:1',
      'FROM --platform=linux/amd64 golang:1.22 AS Build',
      'RUN go build',
      'FROM build AS test',
      'FROM scratch',
      'COPY --from=build /out /out',
      'COPY --from=0 /a /a',
      'COPY --from=alpine:3.20 /etc/os-release /x',
      'RUN --mount=type=bind,from=busybox:1,target=/b true',
      'FROM debian:bookworm',
    ].join('\n');
    const { images, unresolved } = dockerfileBases(source);
    assert.deepEqual(
      images.map((i) => [i.ref, i.line, i.instruction]),
      [
        ['golang:1.22', 2, 'FROM'],
        ['alpine:3.20', 8, 'COPY --from'],
        ['busybox:1', 9, 'RUN --mount'],
        ['debian:bookworm', 10, 'FROM'],
      ],
    );
    assert.deepEqual(unresolved, []);
  });

  it('resolves global ARG defaults; a reference still holding a variable is left to the engine', () => {
    const source =
      'ARG BASE=debian\nARG TAG="bookworm"\nARG FLAVOUR\nFROM ${BASE}:$TAG\nFROM ubuntu:${FLAVOUR}\nFROM x:${FLAVOUR:-24.04}\n';
    const { images, unresolved } = dockerfileBases(source);
    assert.deepEqual(
      images.map((i) => i.ref),
      ['debian:bookworm', 'x:24.04'],
    );
    assert.deepEqual(unresolved, [{ text: 'ubuntu:${FLAVOUR}', line: 5 }]);
  });

  it('joins continuation lines, skips comments and heredoc bodies, honours the escape directive', () => {
    const source = [
      '# escape=`',
      'FROM `',
      '  # a comment inside the instruction',
      '  debian:bookworm',
      'RUN <<EOF',
      'FROM not-an-instruction:1',
      'EOF',
      'RUN echo `',
      'FROM also-not',
    ].join('\n');
    const { images } = dockerfileBases(source);
    assert.deepEqual(
      images.map((i) => [i.ref, i.line, i.span]),
      [['debian:bookworm', 2, undefined]],
    );
  });

  it('replaces single-line FROM references in place, leaving everything else byte for byte', () => {
    const source = 'FROM  golang:1.22 AS build\r\nRUN x\nFROM --platform=$P debian:bookworm\n';
    const { images } = dockerfileBases(source);
    const out = replaceFromRefs(
      source,
      images.map((i, n) => ({ span: i.span!, ref: `localhost/alias:${n}` })),
    );
    assert.equal(out, 'FROM  localhost/alias:0 AS build\r\nRUN x\nFROM --platform=$P localhost/alias:1\n');
  });
});

describe('a failed build, said in one line', { timeout: 10_000 }, () => {
  it("cuts Podman's struct dumps and takes its Error: line as the headline", () => {
    const log = [
      'STEP 1/2: FROM localhost/base:1',
      'STEP 2/2: FROOM x',
      'time="2026-12-07T21:17:34Z" level=error msg="+(UNHANDLED LOGLEVEL) &imagebuilder.Step{Env:[]string{\\"PATH=/usr/bin\\"}, Command:\\"froom\\"}"',
      'Error: building at STEP "FROOM ": Build error: Unknown instruction: "FROOM" &imagebuilder.Step{Env:[]string{"PATH=/usr/bin"}, Command:"froom", Args:[]string{""}, Original:"FROOM x"}',
    ];
    const { headline, tail } = summarizeBuildFailure(log);
    assert.equal(headline, 'building at STEP "FROOM ": Build error: Unknown instruction: "FROOM"');
    assert.doesNotMatch(tail.join('\n'), /imagebuilder|UNHANDLED/);
    assert.equal(tail.length, 3);
  });

  it("takes Docker's last line when there is no Error: line", () => {
    const log = [
      'Step 2/2 : RUN false',
      ' ---> Running in 1234',
      "The command '/bin/sh -c false' returned a non-zero code: 1",
      '',
    ];
    assert.equal(summarizeBuildFailure(log).headline, "The command '/bin/sh -c false' returned a non-zero code: 1");
  });
});

describe('pruning old repository images', { timeout: 10_000 }, () => {
  const at = (hours: number) => new Date(Date.UTC(2026, 0, 1, hours));
  it('keeps the current image and the newest others up to the count; unreadable ages go first', () => {
    const images = [
      { id: 'old', created: at(1) },
      { id: 'current', created: at(0) },
      { id: 'newer', created: at(5) },
      { id: 'mid', created: at(3) },
      { id: 'unknown', created: null },
    ];
    assert.deepEqual(imagesToPrune(images, 'current', 3), ['old', 'unknown']);
    assert.deepEqual(imagesToPrune(images, 'current', 1), ['newer', 'mid', 'old', 'unknown']);
    assert.deepEqual(imagesToPrune(images, 'current', 0), [], '0 turns pruning off');
    assert.deepEqual(imagesToPrune(images, 'current', 10), []);
  });
});
