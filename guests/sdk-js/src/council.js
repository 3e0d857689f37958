// The council data model (mirrors lily-contract's council.rs, which the host
// uses): the schemas are the same text, the validation is what the host's
// schema check would refuse, `rank` is default.v1's ordering.

const FINDING = '{"type":"object","additionalProperties":false,"required":["title","recommendation","confidence"],"properties":{"title":{"type":"string","minLength":1},"recommendation":{"type":"string"},"confidence":{"type":"number","minimum":0,"maximum":1},"evidence":{"type":"array","items":{"type":"string"}}}}';
const RANKED = '{"type":"object","additionalProperties":false,"required":["title","recommendation","confidence","source_specialist","evidence"],"properties":{"title":{"type":"string","minLength":1},"recommendation":{"type":"string"},"confidence":{"type":"number","minimum":0,"maximum":1},"source_specialist":{"type":"string"},"evidence":{"type":"array","items":{"type":"string"}}}}';
const REPORT = `{"type":"object","additionalProperties":false,"required":["specialist","status","findings","notes"],"properties":{"specialist":{"type":"string"},"status":{"enum":["ok","error"]},"findings":{"type":"array","items":${FINDING}},"notes":{"type":"string"}}}`;

export function specialistInputSchema() {
  return '{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","additionalProperties":false,"required":["topic"],"properties":{"topic":{"type":"string","minLength":1},"context":{"type":"array","items":{"type":"string"}},"workspace":{"type":["string","null"]}}}';
}
export function specialistOutputSchema() {
  return `{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","additionalProperties":false,"required":["findings","notes"],"properties":{"findings":{"type":"array","items":${FINDING}},"notes":{"type":"string"}}}`;
}
export function synthInputSchema() {
  return `{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","additionalProperties":false,"required":["topic","max_findings","reports"],"properties":{"topic":{"type":"string","minLength":1},"max_findings":{"type":"integer","minimum":1,"maximum":20},"reports":{"type":"array","items":${REPORT}}}}`;
}
export function councilOutputSchema() {
  return `{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","additionalProperties":false,"required":["topic","summary","ranked_findings","participating_specialists","failed_specialists","reports"],"properties":{"topic":{"type":"string"},"summary":{"type":"string"},"ranked_findings":{"type":"array","items":${RANKED}},"participating_specialists":{"type":"array","items":{"type":"string"}},"failed_specialists":{"type":"array","items":{"type":"string"}},"reports":{"type":"array","items":${REPORT}}}}`;
}

import { RunError } from './index.js';

function bad(code, msg) {
  return new RunError(code, msg, false);
}
const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
function onlyKeys(v, allowed, what, code) {
  for (const k of Object.keys(v)) if (!allowed.includes(k)) throw bad(code, `${what}: unknown field '${k}'`);
}
function strings(v, what, code) {
  if (!Array.isArray(v) || v.some((s) => typeof s !== 'string')) throw bad(code, `${what} must be an array of strings`);
  return v;
}

/** Validate and normalise `{topic, context, workspace}`; throws `invalid_input`. */
export function validateSpecialistInput(v) {
  const code = 'invalid_input';
  if (!isObj(v)) throw bad(code, 'input must be a JSON object');
  onlyKeys(v, ['topic', 'context', 'workspace'], 'input', code);
  if (typeof v.topic !== 'string' || v.topic.trim() === '') throw bad(code, 'topic must not be empty');
  const context = v.context === undefined ? [] : strings(v.context, 'context', code);
  const ws = v.workspace ?? null;
  if (ws !== null && typeof ws !== 'string') throw bad(code, 'workspace must be a string or null');
  return { topic: v.topic, context, workspace: ws };
}

/** Validate a finding list entry; throws `invalid_output` (the host would refuse it). */
export function validateFinding(f, i = 0, code = 'invalid_output') {
  const what = `findings[${i}]`;
  if (!isObj(f)) throw bad(code, `${what} must be an object`);
  onlyKeys(f, ['title', 'recommendation', 'confidence', 'evidence'], what, code);
  if (typeof f.title !== 'string' || f.title === '') throw bad(code, `${what}.title must be a non-empty string`);
  if (typeof f.recommendation !== 'string') throw bad(code, `${what}.recommendation must be a string`);
  if (typeof f.confidence !== 'number' || !(f.confidence >= 0 && f.confidence <= 1)) throw bad(code, `${what}.confidence must be a number in [0, 1]`);
  return { title: f.title, recommendation: f.recommendation, confidence: f.confidence, evidence: f.evidence === undefined ? [] : strings(f.evidence, `${what}.evidence`, code) };
}

/** Validate `{findings, notes}` returned by `review`; throws `invalid_output`. */
export function validateSpecialistOutput(v) {
  const code = 'invalid_output';
  if (!isObj(v)) throw bad(code, 'review must return {findings, notes}');
  onlyKeys(v, ['findings', 'notes'], 'output', code);
  if (!Array.isArray(v.findings)) throw bad(code, 'findings must be an array');
  return { findings: v.findings.map((f, i) => validateFinding(f, i)), notes: v.notes === undefined ? '' : String(v.notes) };
}

/** Validate `{topic, max_findings, reports}`; throws `invalid_input`. */
export function validateSynthInput(v) {
  const code = 'invalid_input';
  if (!isObj(v)) throw bad(code, 'input must be a JSON object');
  onlyKeys(v, ['topic', 'max_findings', 'reports'], 'input', code);
  if (typeof v.topic !== 'string' || v.topic === '') throw bad(code, 'topic must not be empty');
  if (!Number.isInteger(v.max_findings) || v.max_findings < 1 || v.max_findings > 20) throw bad(code, 'max_findings must be an integer in 1..=20');
  if (!Array.isArray(v.reports)) throw bad(code, 'reports must be an array');
  const reports = v.reports.map((r, i) => {
    if (!isObj(r)) throw bad(code, `reports[${i}] must be an object`);
    onlyKeys(r, ['specialist', 'status', 'findings', 'notes'], `reports[${i}]`, code);
    if (r.status !== 'ok' && r.status !== 'error') throw bad(code, `reports[${i}].status must be ok or error`);
    if (!Array.isArray(r.findings)) throw bad(code, `reports[${i}].findings must be an array`);
    return { specialist: String(r.specialist), status: r.status, findings: r.findings.map((f, j) => validateFinding(f, j, code)), notes: String(r.notes ?? '') };
  });
  return { topic: v.topic, max_findings: v.max_findings, reports };
}

const cmp = (a, b) => (a < b ? -1 : a > b ? 1 : 0);
const counted = (n, one, many) => `${n} ${n === 1 ? one : many}`;

/** default.v1's deterministic ranking: confidence desc, then specialist, then title; truncated. */
export function rank(input) {
  const ranked = input.reports
    .filter((r) => r.status === 'ok')
    .flatMap((r) => r.findings.map((f) => ({ title: f.title, recommendation: f.recommendation, confidence: f.confidence, source_specialist: r.specialist, evidence: f.evidence ?? [] })));
  ranked.sort((a, b) => b.confidence - a.confidence || cmp(a.source_specialist, b.source_specialist) || cmp(a.title, b.title));
  ranked.length = Math.min(ranked.length, input.max_findings);
  const participating = input.reports.map((r) => r.specialist);
  return {
    topic: input.topic,
    summary: `Council reviewed '${input.topic}' with ${counted(participating.length, 'specialist', 'specialists')}; ${counted(ranked.length, 'ranked finding', 'ranked findings')} generated.`,
    ranked_findings: ranked,
    participating_specialists: participating,
    failed_specialists: input.reports.filter((r) => r.status !== 'ok').map((r) => r.specialist),
    reports: input.reports,
  };
}
