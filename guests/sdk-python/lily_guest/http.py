"""Outbound HTTP through the host (`wasi:http/outgoing-handler`), the same
shape as the Rust SDK's `lily_guest::http`.

A runnable that calls these is built with `http = true` under
`[tool.lily]` in pyproject.toml (the `python-http` / `python-llm-http`
worlds of wit/python.wit). A request goes out only if the step's policy
lists its origin (and path prefix) under `runnables.<id>.http`; otherwise
it fails with :class:`HttpError` `HTTP-request-denied` and the host records
a `capability_denied` event with the line to add. The host caps requests,
body bytes and time per step, follows no redirects (a 3xx is a response
like any other) and tapes every request and response, so
`lily jobs replay` serves them back without a network.

Without WebAssembly (unit tests), or in a component built without
`http = true`, every request fails with :class:`HttpError` `no-host`."""

import json
import re

#: The size of one read of a response body (the host caps the total).
READ_CHUNK = 64 * 1024
#: The size of one write of a request body.
WRITE_CHUNK = 4096

_ACRONYMS = {"dns": "DNS", "tls": "TLS", "http": "HTTP", "ip": "IP", "uri": "URI"}


class HttpError(Exception):
    """Why a request got no response: the `wasi:http` error code by its WIT
    name (`HTTP-request-denied`, `HTTP-response-body-size`,
    `connection-refused`, ...) and what the host said."""

    def __init__(self, code: str, message: str = ""):
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message


class Response:
    """A response, read whole (the host has capped its size already)."""

    def __init__(self, status: int, headers, body: bytes):
        self.status = status
        #: Header names (lowercase) and values (bytes), in the order received.
        self.headers = list(headers)
        self.body = body

    def header(self, name: str):
        """The first value of a header, as text (None without one)."""
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v.decode("utf-8", "replace")
        return None

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)


def code_name(class_name: str) -> str:
    """The WIT name of a componentize-py error-code class name:
    `ErrorCode_HttpRequestDenied` -> `HTTP-request-denied`."""
    name = class_name[len("ErrorCode_") :] if class_name.startswith("ErrorCode_") else class_name
    words = re.findall(r"[A-Z][a-z0-9]*", name) or [name]
    return "-".join(_ACRONYMS.get(w.lower(), w.lower()) for w in words)


def _error(code_value) -> HttpError:
    value = getattr(code_value, "value", None)
    if value is None:
        message = ""
    elif isinstance(value, str):
        message = value
    else:
        message = repr(value)
    return HttpError(code_name(type(code_value).__name__), message)


def split_url(url: str):
    """`scheme://authority/path?query` -> (scheme, authority, path-with-query)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise HttpError("HTTP-request-URI-invalid", f"{url!r} has no scheme")
    i = min([p for p in (rest.find("/"), rest.find("?")) if p >= 0], default=len(rest))
    authority, path = rest[:i], rest[i:] or "/"
    if not authority:
        raise HttpError("HTTP-request-URI-invalid", f"{url!r} has no host")
    if path.startswith("?"):
        path = "/" + path
    return scheme, authority, path


def _load_bindings():
    """The wasi:http bindings, or why there are none (a message). Imported
    when the SDK is: componentize-py keeps in the component only the modules
    imported while it pre-initialises the app."""
    try:
        import wit_world  # noqa: F401
    except ImportError:
        return "HTTP requests need the Lily host (this is plain Python, not a component)"
    try:
        from wit_world.imports import outgoing_handler, streams, wasi_http_types
    except ImportError:
        return "this component was built without http = true under [tool.lily]"
    return outgoing_handler, wasi_http_types, streams


_BINDINGS = _load_bindings()


def _method(t, method: str):
    m = method.upper()
    known = {
        "GET": t.Method_Get,
        "HEAD": t.Method_Head,
        "POST": t.Method_Post,
        "PUT": t.Method_Put,
        "DELETE": t.Method_Delete,
        "PATCH": t.Method_Patch,
        "OPTIONS": t.Method_Options,
    }
    return known[m]() if m in known else t.Method_Other(m)


def request(method: str, url: str, headers=(), body: bytes = None) -> Response:
    """Any request: method, URL, `(name, value)` headers and an optional body."""
    scheme, authority, path = split_url(url)
    b = _BINDINGS
    if isinstance(b, str):
        raise HttpError("no-host", b)
    handler, t, streams = b
    from componentize_py_types import Err

    def set_or_fail(setter, value, what):
        try:
            setter(value)
        except Err:
            raise HttpError("HTTP-request-URI-invalid", f"the host refused the {what}") from None

    entries = [(k.lower(), v.encode() if isinstance(v, str) else bytes(v)) for k, v in headers]
    try:
        fields = t.Fields.from_list(entries)
    except Err as e:
        raise HttpError("HTTP-request-header-invalid", repr(e.value)) from None
    req = t.OutgoingRequest(fields)
    set_or_fail(req.set_method, _method(t, method), "method")
    schemes = {"http": t.Scheme_Http, "https": t.Scheme_Https}
    set_or_fail(req.set_scheme, schemes[scheme]() if scheme in schemes else t.Scheme_Other(scheme), "scheme")
    set_or_fail(req.set_authority, authority, "authority")
    set_or_fail(req.set_path_with_query, path, "path")
    out_body = req.body()
    try:
        future = handler.handle(req, None)
    except Err as e:
        raise _error(e.value) from None
    if body:
        with out_body.write() as stream:
            for i in range(0, len(body), WRITE_CHUNK):
                try:
                    stream.blocking_write_and_flush(bytes(body[i : i + WRITE_CHUNK]))
                except Err as e:
                    raise HttpError("HTTP-request-body-size", repr(e.value)) from None
    try:
        t.OutgoingBody.finish(out_body, None)
    except Err as e:
        raise _error(e.value) from None
    with future:
        got = future.get()
        while got is None:
            with future.subscribe() as ready:
                ready.block()
            got = future.get()
    # Ok(Ok(response)) | Ok(Err(error-code)) | Err(()) (taken twice)
    if isinstance(got, Err):
        raise HttpError("internal-error", "response taken twice")
    inner = got.value
    if isinstance(inner, Err):
        raise _error(inner.value)
    with inner.value as resp:
        status = resp.status()
        with resp.headers() as h:
            header_list = h.entries()
        chunks = []
        with resp.consume() as incoming:
            with incoming.stream() as stream:
                while True:
                    try:
                        chunks.append(stream.blocking_read(READ_CHUNK))
                    except Err as e:
                        if isinstance(e.value, streams.StreamError_Closed):
                            break
                        raise HttpError("HTTP-response-incomplete", repr(e.value)) from None
    return Response(status, header_list, b"".join(chunks))


def get(url: str) -> Response:
    """`GET url`."""
    return request("GET", url)


def post_json(url: str, value) -> Response:
    """`POST url` with a JSON body (`content-type: application/json`)."""
    return request("POST", url, [("content-type", "application/json")], json.dumps(value).encode())
