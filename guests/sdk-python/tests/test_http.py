"""Unit tests of lily_guest.http without WebAssembly (run by .ci/run:
`python3 -m unittest discover -s guests/sdk-python/tests`)."""

import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import lily_guest as lily  # noqa: E402


class HttpTest(unittest.TestCase):
    def test_urls_split_like_the_rust_sdk(self):
        self.assertEqual(lily.http.split_url("https://api.example/v1/x?y=1"), ("https", "api.example", "/v1/x?y=1"))
        self.assertEqual(lily.http.split_url("http://127.0.0.1:8080"), ("http", "127.0.0.1:8080", "/"))
        self.assertEqual(lily.http.split_url("http://h?q"), ("http", "h", "/?q"))
        with self.assertRaises(lily.http.HttpError) as e:
            lily.http.split_url("no-scheme")
        self.assertEqual(e.exception.code, "HTTP-request-URI-invalid")
        with self.assertRaisesRegex(lily.http.HttpError, "has no host"):
            lily.http.split_url("http:///path")

    def test_error_codes_keep_their_wit_names(self):
        for cls, wit in [
            ("ErrorCode_HttpRequestDenied", "HTTP-request-denied"),
            ("ErrorCode_DnsTimeout", "DNS-timeout"),
            ("ErrorCode_DestinationIpProhibited", "destination-IP-prohibited"),
            ("ErrorCode_HttpRequestUriTooLong", "HTTP-request-URI-too-long"),
            ("ErrorCode_TlsAlertReceived", "TLS-alert-received"),
            ("ErrorCode_ConnectionRefused", "connection-refused"),
            ("ErrorCode_InternalError", "internal-error"),
        ]:
            self.assertEqual(lily.http.code_name(cls), wit)

    def test_without_a_host_every_request_is_no_host(self):
        with self.assertRaises(lily.http.HttpError) as e:
            lily.http.get("http://127.0.0.1:9/x")
        self.assertEqual(e.exception.code, "no-host")

    def test_a_response_reads_headers_text_and_json(self):
        r = lily.http.Response(200, [("X-Test", b"v")], b'{"a": 1}')
        self.assertEqual(r.header("x-test"), "v")
        self.assertIsNone(r.header("missing"))
        self.assertEqual(r.json(), {"a": 1})
        self.assertEqual(r.text(), '{"a": 1}')

    def test_llm_without_a_host_is_unavailable(self):
        self.assertEqual(lily.llm_models(), [])
        with self.assertRaises(lily.RunError) as e:
            lily.llm_complete("reviewer", [("user", "hi")])
        self.assertEqual(e.exception.code, "llm_unavailable")


if __name__ == "__main__":
    unittest.main()
