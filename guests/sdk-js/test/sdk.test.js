// Unit tests of the JS SDK under Node (no WebAssembly).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  Specialist, Synthesizer, RunError, error, exportSpecialist, exportSynthesizer, exportRaw, bindHost,
  proposeWrite, stackTail, MAX_STACK_LINES, specialistInputSchema, specialistOutputSchema, synthInputSchema, councilOutputSchema,
} from '../src/index.js';

class Echo extends Specialist {
  static id = 'echo-js.v1';
  static version = '0.1.0';
  static summary = 'echoes the topic';
  review(input) {
    if (input.topic === 'boom') throw new TypeError('bad thing');
    if (input.topic === 'coded') throw error('my_code', 'told you');
    if (input.topic === 'object') throw { weird: true };
    if (input.topic === 'badout') return { findings: [{ title: '', recommendation: 'r', confidence: 2 }], notes: '' };
    return { findings: [{ title: input.topic, recommendation: 'r', confidence: 0.5 }], notes: input.context.join(',') };
  }
}

test('the vendored WIT is the repository contract', () => {
  assert.equal(readFileSync(new URL('../wit/runnable.wit', import.meta.url), 'utf8'), readFileSync(new URL('../../../wit/runnable.wit', import.meta.url), 'utf8'));
});

test('describe carries the descriptor and the council schemas', () => {
  const d = exportSpecialist(Echo).describe();
  assert.equal(d.id, 'echo-js.v1');
  assert.equal(d.kind, 'specialist');
  for (const s of [d.inputSchema, d.outputSchema, synthInputSchema(), councilOutputSchema()]) assert.equal(JSON.parse(s).type, 'object');
  assert.equal(d.inputSchema, specialistInputSchema());
  assert.equal(d.outputSchema, specialistOutputSchema());
});

test('a bad descriptor is refused when exported', () => {
  class Bad extends Echo { static id = 'Bad Id'; }
  assert.throws(() => exportSpecialist(Bad), /id must match/);
  class BadV extends Echo { static version = '1.0'; }
  assert.throws(() => exportSpecialist(BadV), /semver/);
});

test('run: input validated, output wrapped in an ok envelope', () => {
  const { run } = exportSpecialist(Echo);
  const env = run(JSON.stringify({ topic: 't', context: ['a', 'b'] }));
  assert.equal(env.status, 'ok');
  assert.deepEqual(JSON.parse(env.payload), { findings: [{ title: 't', recommendation: 'r', confidence: 0.5, evidence: [] }], notes: 'a,b' });
  for (const bad of ['nope', '{}', '{"topic":"t","extra":1}', '{"topic":"t","context":[1]}', '[]']) {
    assert.throws(() => run(bad), (e) => e.code === 'invalid_input' && typeof e.message === 'string' && e.retryable === false, bad);
  }
});

test('thrown values become run-error objects, never anything else', () => {
  const { run } = exportSpecialist(Echo);
  assert.throws(() => run('{"topic":"boom"}'), (e) => e.code === 'guest_exception' && e.message === 'TypeError: bad thing' && !(e instanceof Error));
  assert.throws(() => run('{"topic":"coded"}'), (e) => e.code === 'my_code' && e.message === 'told you');
  assert.throws(() => run('{"topic":"object"}'), (e) => e.code === 'guest_exception' && e.message === 'thrown: {"weird":true}');
  assert.throws(() => run('{"topic":"badout"}'), (e) => e.code === 'invalid_output');
});

test('the stack tail is capped', () => {
  const stack = Array.from({ length: 50 }, (_, i) => `frame${i}@x.js:${i}`).join('\n');
  const tail = stackTail(stack);
  assert.equal(tail.split('\n').length, MAX_STACK_LINES);
  assert.ok(tail.endsWith('frame49@x.js:49'));
  assert.ok(stackTail('y'.repeat(10000)).length <= 2000);
});

test('proposals go through the bound host and land in the envelope', () => {
  const seen = [];
  bindHost({ emit: (l, k, f) => seen.push([l, k, JSON.parse(f)]), propose: (effect, reason) => { seen.push([effect.tag, reason]); return 'req-1'; } });
  try {
    const { run } = exportRaw({ describe: () => ({}), run: () => { proposeWrite('a.txt', 'hi', 'because'); return { status: 'ok', artifacts: [], approvalsRequested: ['req-1'], references: [], payload: '{}' }; } });
    assert.deepEqual(run('{}').approvalsRequested, ['req-1']);
    assert.deepEqual(seen[0], ['write-file', 'because']);
    bindHost({ emit() {}, propose() { const e = new Error('x'); e.payload = 'outside the root'; throw e; } });
    assert.throws(() => proposeWrite('/etc/x', 'y', 'r'), (e) => e instanceof RunError && e.code === 'effect_refused' && e.message === 'outside the root');
  } finally {
    bindHost(null);
  }
  assert.throws(() => proposeWrite('a', 'b', 'c'), (e) => e.code === 'no_host');
});

test('the default synthesizer ranks like default.v1', () => {
  class Rank extends Synthesizer { static id = 'rank-js.v1'; static version = '0.1.0'; static summary = 'ranks'; }
  const { run, describe } = exportSynthesizer(Rank);
  assert.equal(describe().kind, 'synthesizer');
  const rep = (id, status, fs) => ({ specialist: id, status, findings: fs.map(([t, c]) => ({ title: t, recommendation: 'r', confidence: c, evidence: [] })), notes: '' });
  const input = { topic: 't', max_findings: 3, reports: [rep('b', 'ok', [['z', 0.5], ['a', 0.9]]), rep('a', 'ok', [['y', 0.5], ['x', 0.5]]), rep('c', 'error', [['ignored', 1]])] };
  const env = run(JSON.stringify(input));
  const out = JSON.parse(env.payload);
  assert.deepEqual(out.ranked_findings.map((f) => [f.source_specialist, f.title]), [['b', 'a'], ['a', 'x'], ['a', 'y']]);
  assert.deepEqual(out.failed_specialists, ['c']);
  assert.equal(out.summary, "Council reviewed 't' with 3 specialists; 3 ranked findings generated.");
  assert.deepEqual(env.references, ['b', 'a', 'c']);
});

test('http: URLs split like the Rust SDK, error codes keep their WIT names, no host means no-host', async () => {
  const { http } = await import('../src/index.js');
  assert.deepEqual(http.splitUrl('https://api.example/v1/x?y=1'), ['https', 'api.example', '/v1/x?y=1']);
  assert.deepEqual(http.splitUrl('http://127.0.0.1:8080'), ['http', '127.0.0.1:8080', '/']);
  assert.deepEqual(http.splitUrl('http://h?q'), ['http', 'h', '/?q']);
  assert.throws(() => http.splitUrl('no-scheme'), (e) => e instanceof http.HttpError && e.code === 'HTTP-request-URI-invalid');
  assert.throws(() => http.splitUrl('http:///path'), /has no host/);
  assert.equal(http.errorOf({ tag: 'HTTP-request-denied' }).code, 'HTTP-request-denied');
  assert.equal(http.errorOf({ tag: 'internal-error', val: 'boom' }).message, 'internal-error: boom');
  assert.equal(http.errorOf({ tag: 'HTTP-response-body-size', val: 10n }).detail, '"10"');
  bindHost(null);
  assert.throws(() => http.get('http://127.0.0.1:9/x'), (e) => e.code === 'no-host');
  const r = new http.Response(200, [['X-Test', new TextEncoder().encode('v')]], new TextEncoder().encode('{"a":1}'));
  assert.equal(r.header('x-test'), 'v');
  assert.equal(r.header('missing'), undefined);
  assert.deepEqual(r.json(), { a: 1 });
});
