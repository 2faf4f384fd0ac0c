"""HTTPS on the router's HTTP listener (--tls-cert/--tls-key, a self-signed certificate made here
with the openssl CLI; CPU shards, tiny golden checkpoint): /health, /generate and the SSE stream
of /generate_stream over TLS agree with each other; --api-key works over HTTPS; a plaintext client
on the HTTPS port is closed without an answer (one log line) while other connections keep
working; a client that stalls in the handshake is closed by the header timeout."""

import json
import os
import shutil
import socket
import ssl
import tempfile

from router_harness import Checks, Router, requests, self_signed_cert

PROMPT = "The quick brown fox jumps"
KEY = "k3y-" + os.urandom(8).hex()
AUTH = {"authorization": f"Bearer {KEY}"}


def recv_all(sock):
    """Bytes until the server closes (the socket's timeout bounds the wait)."""
    out = b""
    while True:
        try:
            b = sock.recv(4096)
        except (ConnectionResetError, ssl.SSLError):
            return out
        if not b:
            return out
        out += b


def main():
    checks = Checks()
    d = tempfile.mkdtemp(prefix="fl_https_")
    cert, key = self_signed_cert(d)
    ctx = ssl.create_default_context(cafile=cert)
    with Router("--tls-cert", cert, "--tls-key", key, "--api-key", KEY,
                "--http-header-timeout", "2") as r:
        assert r.url.startswith("https://")
        body = {"inputs": PROMPT, "parameters": {"max_new_tokens": 4}}
        sess = requests.Session()  # one kept-alive TLS connection for the whole test
        sess.verify = cert
        sess.trust_env = False  # else REQUESTS_CA_BUNDLE would replace verify

        def health_and_generate():
            assert sess.get(r.url + "/health", timeout=30).status_code == 200
            got = sess.post(r.url + "/generate", json=body, headers=AUTH, timeout=120)
            assert got.status_code == 200, got.text
            assert isinstance(got.json()["generated_text"], str)
            checks.generated = got.json()["generated_text"]

        checks.run("https_health_and_generate", health_and_generate)

        def sse_stream():
            resp = sess.post(r.url + "/generate_stream", json=body, headers=AUTH, timeout=120,
                             stream=True)
            assert resp.status_code == 200, resp.text
            assert resp.headers["content-type"] == "text/event-stream"
            raw = resp.content.decode()
            events = [json.loads(c[len("data:"):]) for c in raw.split("\n\n") if c.startswith("data:")]
            assert len(events) == 4, raw
            assert events[-1]["generated_text"] == checks.generated, (events[-1], checks.generated)

        checks.run("https_generate_stream_sse", sse_stream)

        def api_key():
            assert requests.get(r.url + "/health", timeout=30, verify=cert).status_code == 200
            assert sess.post(r.url + "/generate", json=body, timeout=60).status_code == 401
            bad = sess.post(r.url + "/generate", json=body, timeout=60,
                            headers={"authorization": "Bearer nope"})
            assert bad.status_code == 401
            assert sess.get(r.url + "/metrics", headers=AUTH, timeout=30).status_code == 200

        checks.run("https_api_key", api_key)

        def plaintext_refused():
            # A TLS connection open across the plaintext attempt keeps working.
            tls = ctx.wrap_socket(socket.create_connection(("127.0.0.1", r.port), timeout=30),
                                  server_hostname="localhost")
            before = r.logs().count("handshake failed")
            with socket.create_connection(("127.0.0.1", r.port), timeout=30) as plain:
                plain.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
                got = recv_all(plain)
            assert b"HTTP/" not in got, got  # at most a TLS alert, never an HTTP answer
            tls.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            assert recv_all(tls).startswith(b"HTTP/1.1 200"), "the TLS connection was hurt"
            tls.close()
            assert sess.get(r.url + "/health", timeout=30).status_code == 200
            assert r.logs().count("handshake failed") == before + 1, r.logs()

        checks.run("plaintext_on_https_port_closed", plaintext_refused)

        def stalled_handshake():
            # A TLS record header and nothing more: the header timeout (2 s) closes the connection.
            with socket.create_connection(("127.0.0.1", r.port), timeout=60) as s:
                s.sendall(b"\x16\x03\x01\x02\x00")
                assert recv_all(s) == b""
            with socket.create_connection(("127.0.0.1", r.port), timeout=60) as s:
                assert recv_all(s) == b""  # nothing sent at all
            assert sess.get(r.url + "/health", timeout=30).status_code == 200

        checks.run("stalled_handshake_header_timeout", stalled_handshake)
    shutil.rmtree(d, ignore_errors=True)
    checks.finish()


if __name__ == "__main__":
    main()
