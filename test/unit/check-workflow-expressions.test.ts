import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  contextReferences,
  findExpressions,
  isPrControlledReference,
  PR_CONTROLLED_FIELDS,
  prControlledReferences,
  readsSecret,
} from '../../src/cli/workflow/expressions.js';

void describe('PR-controlled expression detection', () => {
  void it('every listed field, in dotted, index and bracket-quoted spellings, and any case', () => {
    for (const field of PR_CONTROLLED_FIELDS) {
      const concrete = field.replace(/\*/g, '0');
      assert.ok(isPrControlledReference(concrete), concrete);
      assert.ok(isPrControlledReference(field.replace(/\.\*/g, '[0]')), field);
      assert.ok(isPrControlledReference(concrete.replace(/^github\.event\.(\w+)/, "github.event['$1']")), field);
      assert.ok(isPrControlledReference(concrete.toUpperCase()), field);
    }
  });

  void it('objects that contain a PR-controlled field, and values derived from one', () => {
    for (const r of [
      'github',
      'github.event',
      'github.event.pull_request',
      'github.event.pull_request.head',
      'github.event.pull_request.title.length',
    ]) {
      assert.ok(isPrControlledReference(r), r);
    }
  });

  void it('fields the PR author cannot choose are not flagged', () => {
    for (const r of [
      'github.event.pull_request.number',
      'github.event.pull_request.head.sha',
      'github.event.pull_request.base.ref',
      'github.event.pull_request.head.repo.full_name',
      'github.sha',
      'github.repository',
      'github.actor_id',
      'needs.build.result',
    ]) {
      assert.ok(!isPrControlledReference(r), r);
    }
  });

  void it('a reference that differs from every listed field in some named segment is never flagged', () => {
    const segment = fc.stringMatching(/^[a-z_]{1,12}$/);
    fc.assert(
      fc.property(fc.array(segment, { minLength: 1, maxLength: 6 }), (segments) => {
        const ref = ['github', ...segments].join('.');
        const expected = PR_CONTROLLED_FIELDS.some((f) => {
          const parts = f.split('.');
          const r = ref.split('.');
          for (let i = 0; i < Math.min(parts.length, r.length); i++) {
            if (parts[i] !== '*' && parts[i] !== r[i]) return false;
          }
          return true;
        });
        assert.equal(isPrControlledReference(ref), expected);
      }),
    );
  });

  void it('string literals are not references; env taint is followed', () => {
    assert.deepEqual(contextReferences(`format('{0}', 'github.head_ref')`), []);
    assert.deepEqual(prControlledReferences('env.TITLE', new Set(['TITLE'])), ['env.TITLE']);
    assert.deepEqual(prControlledReferences('env.SAFE', new Set(['TITLE'])), []);
  });

  void it('finds every ${{ }} with its offset, across lines', () => {
    const text = 'a ${{ x }} b\n${{\n  github.head_ref\n}}';
    assert.deepEqual(findExpressions(text), [
      { expression: 'x', offset: 2 },
      { expression: 'github.head_ref', offset: 13 },
    ]);
  });

  void it('secrets and the job token count as secrets', () => {
    assert.ok(readsSecret('secrets.NPM_TOKEN'));
    assert.ok(readsSecret('github.token'));
    assert.ok(!readsSecret('github.event.pull_request.number'));
  });
});
