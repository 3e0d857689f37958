// Outbound HTTP through the host (`wasi:http/outgoing-handler`), the same
// shape as the Rust SDK's `lily_guest::http`. A runnable that uses it is built
// with `"lily": {"http": true}` in package.json (the `js-http` / `js-llm-http`
// worlds) and binds the wasi:http imports in its entry:
//
//   import { handle } from 'wasi:http/outgoing-handler@0.2.12';
//   import { Fields, OutgoingRequest, OutgoingBody } from 'wasi:http/types@0.2.12';
//   bindHost({ emit, propose, http: { handle, Fields, OutgoingRequest, OutgoingBody } });
//
// A request goes out only if the step's policy lists its origin (and path
// prefix) under `runnables.<id>.http`; otherwise it fails with `HttpError`
// `HTTP-request-denied` and the host records a `capability_denied` event with
// the line to add. The host caps requests, body bytes and time per step,
// follows no redirects and tapes every request and response for replay.
// Without the host (node --test) every request fails with `no-host`.

import { host } from './host.js';

/** The size of one read of a response body (the host caps the total). */
export const READ_CHUNK = 64 * 1024;
/** The size of one write of a request body. */
export const WRITE_CHUNK = 4096;

/** Why a request got no response: the wasi:http error code by its WIT name. */
export class HttpError extends Error {
  constructor(code, message = '') {
    super(message ? `${code}: ${message}` : code);
    this.name = 'HttpError';
    this.code = String(code);
    this.detail = String(message);
  }
}

/** A response, read whole (the host has capped its size already). */
export class Response {
  constructor(status, headers, body) {
    this.status = status;
    /** `[name, Uint8Array]` pairs, names lowercase, in the order received. */
    this.headers = headers;
    this.body = body;
  }
  /** The first value of a header, as text (`undefined` without one). */
  header(name) {
    const n = name.toLowerCase();
    const h = this.headers.find(([k]) => k.toLowerCase() === n);
    return h ? new TextDecoder().decode(h[1]) : undefined;
  }
  text() {
    return new TextDecoder().decode(this.body);
  }
  json() {
    return JSON.parse(this.text());
  }
}

/** `scheme://authority/path?query` → `[scheme, authority, pathWithQuery]`. */
export function splitUrl(url) {
  const i = url.indexOf('://');
  if (i < 0) throw new HttpError('HTTP-request-URI-invalid', `${JSON.stringify(url)} has no scheme`);
  const scheme = url.slice(0, i);
  const rest = url.slice(i + 3);
  const cut = [rest.indexOf('/'), rest.indexOf('?')].filter((p) => p >= 0);
  const at = cut.length ? Math.min(...cut) : rest.length;
  const authority = rest.slice(0, at);
  let path = rest.slice(at) || '/';
  if (!authority) throw new HttpError('HTTP-request-URI-invalid', `${JSON.stringify(url)} has no host`);
  if (path.startsWith('?')) path = `/${path}`;
  return [scheme, authority, path];
}

/** An HttpError from a wasi:http `error-code` variant (`{tag, val}`). */
export function errorOf(code) {
  const tag = code && typeof code === 'object' && 'tag' in code ? code.tag : String(code);
  const val = code && typeof code === 'object' ? code.val : undefined;
  const msg = val === undefined || val === null ? '' : typeof val === 'string' ? val : JSON.stringify(val, (_, v) => (typeof v === 'bigint' ? String(v) : v));
  return new HttpError(tag, msg);
}

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'];

function call(what, f) {
  try {
    return f();
  } catch (e) {
    throw e && e.payload !== undefined ? errorOf(e.payload) : new HttpError('internal-error', `${what}: ${e}`);
  }
}

/** Any request: method, URL, `[name, value]` headers and an optional body (string or bytes). */
export function request(method, url, headers = [], body = undefined) {
  const [scheme, authority, path] = splitUrl(url);
  const h = host() && host().http;
  if (!h) throw new HttpError('no-host', 'HTTP requests need the Lily host, a component built with "lily": {"http": true}, and bindHost({http})');
  const enc = new TextEncoder();
  const fields = call('headers', () =>
    h.Fields.fromList(headers.map(([k, v]) => [String(k).toLowerCase(), typeof v === 'string' ? enc.encode(v) : v])),
  );
  const req = new h.OutgoingRequest(fields);
  const m = String(method).toUpperCase();
  call('method', () => req.setMethod(METHODS.includes(m) ? { tag: m.toLowerCase() } : { tag: 'other', val: m }));
  const schemes = { http: { tag: 'HTTP' }, https: { tag: 'HTTPS' } };
  call('scheme', () => req.setScheme(schemes[scheme] || { tag: 'other', val: scheme }));
  call('authority', () => req.setAuthority(authority));
  call('path', () => req.setPathWithQuery(path));
  const outBody = req.body();
  const future = call('request', () => h.handle(req, undefined));
  if (body !== undefined && body !== null) {
    const bytes = typeof body === 'string' ? enc.encode(body) : body;
    const stream = outBody.write();
    for (let i = 0; i < bytes.length; i += WRITE_CHUNK) {
      try {
        stream.blockingWriteAndFlush(bytes.subarray(i, i + WRITE_CHUNK));
      } catch (e) {
        throw new HttpError('HTTP-request-body-size', String(e && e.payload !== undefined ? JSON.stringify(e.payload) : e));
      }
    }
    if (stream[Symbol.dispose]) stream[Symbol.dispose]();
  }
  call('body', () => h.OutgoingBody.finish(outBody, undefined));
  let got = future.get();
  while (got === undefined) {
    future.subscribe().block();
    got = future.get();
  }
  // {tag: 'ok', val: {tag: 'ok', val: response} | {tag: 'err', val: error-code}} | {tag: 'err'}
  if (got.tag !== 'ok') throw new HttpError('internal-error', 'response taken twice');
  if (got.val.tag !== 'ok') throw errorOf(got.val.val);
  const resp = got.val.val;
  const status = resp.status();
  const respHeaders = resp.headers().entries();
  const incoming = resp.consume();
  const stream = incoming.stream();
  const chunks = [];
  let total = 0;
  for (;;) {
    let chunk;
    try {
      chunk = stream.blockingRead(BigInt(READ_CHUNK));
    } catch (e) {
      if (e && e.payload && e.payload.tag === 'closed') break;
      throw new HttpError('HTTP-response-incomplete', String(e && e.payload !== undefined ? JSON.stringify(e.payload) : e));
    }
    chunks.push(chunk);
    total += chunk.length;
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return new Response(status, respHeaders, out);
}

/** `GET url`. */
export function get(url) {
  return request('GET', url);
}

/** `POST url` with a JSON body (`content-type: application/json`). */
export function postJson(url, value) {
  return request('POST', url, [['content-type', 'application/json']], JSON.stringify(value));
}
