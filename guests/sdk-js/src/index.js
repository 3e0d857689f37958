// Guest SDK for Lily runnables in JavaScript (Run Contract R0,
// `lily:runnable@0.1.1`). Subclass `Specialist` or `Synthesizer` and export
// it with `exportSpecialist` / `exportSynthesizer` from the component entry:
// `describe`, the JSON Schemas, input parsing and validation, events,
// effect proposals and error mapping come for free.
//
// A thrown `RunError` becomes the contract's `run-error` as is; any other
// thrown value becomes `run-error {code: "guest_exception"}` with its
// message, and the stack's last lines go to the event log (capped) — never a
// trap. The same code runs under `node --test` without WebAssembly.

import { host } from './host.js';
export { bindHost } from './host.js';
export * from './council.js';
export * as http from './http.js';
import * as council from './council.js';

const ID_RE = /^[a-z0-9][a-z0-9._-]{0,63}$/;
const SEMVER_RE = /^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$/;
/** Most characters of a stack kept in the `guest_exception` event. */
export const MAX_STACK_CHARS = 2000;
/** Most stack lines kept (the last ones). */
export const MAX_STACK_LINES = 8;

/** A failure the runnable reports: the contract's `run-error`. */
export class RunError extends Error {
  constructor(code, message, retryable = false) {
    super(message);
    this.name = 'RunError';
    this.code = String(code);
    this.retryable = Boolean(retryable);
  }
  toContract() {
    return { code: this.code, message: this.message, retryable: this.retryable };
  }
}

/** A `RunError` with `retryable: false`. */
export function error(code, message) {
  return new RunError(code, message, false);
}

const LEVELS = new Set(['debug', 'info', 'warn', 'error']);

/** Emit a structured event into the run's `events.jsonl` (stderr under Node). */
export function emit(level, kind, fields = {}) {
  if (!LEVELS.has(level)) throw new TypeError(`emit: level must be one of ${[...LEVELS].join(', ')}`);
  const text = JSON.stringify(fields ?? {});
  const h = host();
  if (h && h.emit) h.emit(level, String(kind), text);
  else process.stderr.write(`event ${level} ${kind} ${text}\n`);
}

let proposed = [];

/** The approval request ids proposed so far in this run (and forgets them). */
export function takeProposed() {
  const p = proposed;
  proposed = [];
  return p;
}

function propose(effect, reason) {
  const h = host();
  if (!h || !h.propose) {
    throw error('no_host', 'effects can only be proposed inside the Lily sandbox (this is Node)');
  }
  let id;
  try {
    id = h.propose(effect, String(reason));
  } catch (e) {
    // componentize-js throws the `err` side of a `result` as a ComponentError with `payload`.
    throw error('effect_refused', String(e && e.payload !== undefined ? e.payload : e));
  }
  proposed.push(id);
  return id;
}

function bytes(contents) {
  if (contents instanceof Uint8Array) return contents;
  return new TextEncoder().encode(String(contents));
}

/** Propose writing `contents` (string or bytes) to `path`, relative to the Lily root. Returns the request id; throws `RunError` if refused. */
export function proposeWrite(path, contents, reason) {
  return propose({ tag: 'write-file', val: { path: String(path), contents: bytes(contents) } }, reason);
}

/** Propose publishing an artifact of this run to a destination. */
export function proposePublish(artifact, to, reason) {
  return propose({ tag: 'publish', val: { artifact: String(artifact), to: String(to) } }, reason);
}

/** Propose sending a message on a named channel. */
export function proposeSend(channel, message, reason) {
  return propose({ tag: 'send', val: { channel: String(channel), message: String(message) } }, reason);
}

/** Parse the JSON input of `run`; a parse error is `invalid_input`. */
export function parseInput(input) {
  try {
    return JSON.parse(input);
  } catch (e) {
    throw error('invalid_input', `input does not match the input schema: ${e.message}`);
  }
}

/** An `ok` envelope whose payload is `payload` as JSON, listing this run's proposals. */
export function okEnvelope(payload, { artifacts = [], references = [] } = {}) {
  return {
    status: 'ok',
    artifacts: artifacts.map((a) => ({ name: String(a.name), mediaType: String(a.mediaType), bytes: bytes(a.bytes) })),
    approvalsRequested: takeProposed(),
    references: references.map(String),
    payload: JSON.stringify(payload),
  };
}

/** The last lines of a stack, capped (for the `guest_exception` event). */
export function stackTail(stack) {
  const lines = String(stack ?? '').split('\n').filter((l) => l.trim() !== '');
  let tail = lines.slice(-MAX_STACK_LINES).join('\n');
  if (tail.length > MAX_STACK_CHARS) tail = tail.slice(tail.length - MAX_STACK_CHARS);
  return tail;
}

/** Map anything thrown by runnable code to a contract `run-error` object. */
export function toRunError(e) {
  if (e instanceof RunError) return e.toContract();
  const message = e instanceof Error ? `${e.name}: ${e.message}` : `thrown: ${safeString(e)}`;
  try {
    emit('error', 'guest_exception', { message: message.slice(0, MAX_STACK_CHARS), stack: stackTail(e && e.stack) });
  } catch (_) {
    // the event cap may be reached; the run-error still carries the message
  }
  return { code: 'guest_exception', message: message.slice(0, 4096), retryable: false };
}

function safeString(v) {
  try {
    return typeof v === 'string' ? v : JSON.stringify(v) ?? String(v);
  } catch (_) {
    return String(v);
  }
}

function checkDescriptor(cls) {
  const { id, version, summary } = cls;
  if (!ID_RE.test(String(id))) throw new TypeError(`${cls.name}.id must match [a-z0-9][a-z0-9._-]{0,63}, got ${safeString(id)}`);
  if (!SEMVER_RE.test(String(version))) throw new TypeError(`${cls.name}.version must be semver, got ${safeString(version)}`);
  if (!summary || !String(summary).trim()) throw new TypeError(`${cls.name}.summary must not be blank`);
}

/** Base class of a specialist: set static `id`, `version`, `summary`; implement `review(input)` → `{findings, notes}`. */
export class Specialist {
  static kind = 'specialist';
  /** `input`: `{topic, context, workspace}` (validated). Return `{findings: [{title, recommendation, confidence, evidence}], notes}`. */
  review(_input) {
    throw error('not_implemented', `${this.constructor.name}.review is not implemented`);
  }
}

/** Base class of a synthesizer: implement `synthesize(input)` → council output; default ranks like `default.v1`. */
export class Synthesizer {
  static kind = 'synthesizer';
  synthesize(input) {
    return council.rank(input);
  }
}

/** The raw `{describe, run}` exports of a `Specialist` subclass. */
export function exportSpecialist(cls) {
  checkDescriptor(cls);
  return exportRaw({
    describe: () => ({
      id: cls.id,
      version: cls.version,
      summary: cls.summary,
      kind: 'specialist',
      inputSchema: council.specialistInputSchema(),
      outputSchema: council.specialistOutputSchema(),
    }),
    run: (text) => {
      const input = council.validateSpecialistInput(parseInput(text));
      const out = council.validateSpecialistOutput(new cls().review(input));
      return okEnvelope(out);
    },
  });
}

/** The raw `{describe, run}` exports of a `Synthesizer` subclass (static `kind` may be `llm`). */
export function exportSynthesizer(cls) {
  checkDescriptor(cls);
  const kind = cls.kind === 'llm' ? 'llm' : 'synthesizer';
  return exportRaw({
    describe: () => ({
      id: cls.id,
      version: cls.version,
      summary: cls.summary,
      kind,
      inputSchema: council.synthInputSchema(),
      outputSchema: council.councilOutputSchema(),
    }),
    run: (text) => {
      const input = council.validateSynthInput(parseInput(text));
      const out = new cls().synthesize(input);
      return okEnvelope(out, { references: out.participating_specialists ?? [] });
    },
  });
}

/**
 * Wrap raw `describe` / `run` so that `run` never throws anything but the
 * contract's `run-error` (componentize-js maps a thrown value of a
 * `result<_, run-error>` export to its `err` side). Returns `{describe, run}`.
 */
export function exportRaw({ describe, run }) {
  return {
    describe,
    run(input) {
      proposed = [];
      try {
        return run(input);
      } catch (e) {
        throw toRunError(e);
      }
    },
  };
}
