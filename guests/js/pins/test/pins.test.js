// Unit tests of pins.v1's logic under Node, no WebAssembly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportSpecialist } from 'lily-guest';
import { Pins, isPinned, review } from '../src/pins.js';

test('exact versions, paths and git commits are pinned; ranges are not', () => {
  for (const s of ['1.2.3', '=1.2.3', '1.0.0-rc.1', 'file:../x', 'git+https://h/r.git#0123abc']) assert.ok(isPinned(s), s);
  for (const s of ['^1.2.3', '~1.2', '>=2', '*', 'latest', '1.x', 'github:a/b', 'git+https://h/r.git#main']) assert.ok(!isPinned(s), s);
});

test('a manifest with ranges and no lockfile gives two findings', () => {
  const r = review({ 'web/package.json': JSON.stringify({ dependencies: { left: '^1.0.0', pad: '1.0.0' } }) });
  assert.deepEqual(r.findings.map((f) => f.title), ['Unpinned npm dependencies', 'npm manifest without a lockfile']);
  assert.deepEqual(r.findings[0].evidence, ['web/package.json: left@^1.0.0']);
});

test('run: a workspace on disk, through the SDK adapter', () => {
  const ws = mkdtempSync(join(tmpdir(), 'pins-'));
  mkdirSync(join(ws, 'app'));
  writeFileSync(join(ws, 'app/package.json'), JSON.stringify({ devDependencies: { mocha: '~10.0.0' } }));
  writeFileSync(join(ws, 'app/package-lock.json'), '{}');
  const { run, describe } = exportSpecialist(Pins);
  assert.equal(describe().id, 'pins.v1');
  const env = run(JSON.stringify({ topic: 't', workspace: ws }));
  const out = JSON.parse(env.payload);
  assert.deepEqual(out.findings.map((f) => f.title), ['Unpinned npm dependencies']);
});

test('invalid input is the contract error invalid_input', () => {
  const { run } = exportSpecialist(Pins);
  assert.throws(() => run('{"topic": ""}'), (e) => e.code === 'invalid_input');
  assert.throws(() => run('not json'), (e) => e.code === 'invalid_input');
});
