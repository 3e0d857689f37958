// The seam between the SDK and the host. Inside a component the entry module
// (see `component.js` in a scaffolded project) calls `bindHost` with the
// functions componentize-js generated from the `lily:runnable` imports;
// under Node (unit tests) nothing is bound and the fallbacks below apply:
// events go to stderr, proposals are refused, the workspace is the real
// directory named by the input.

let bound = null;

/** Bind the host imports: `{ emit, propose, preopens?, llm?, http? }` (`http`: `{ handle, Fields, OutgoingRequest, OutgoingBody }`, see http.js). */
export function bindHost(imports) {
  bound = imports;
}

export function host() {
  return bound;
}
