"""The router's edge refuses what it cannot serve (one CPU shard, tiny golden checkpoint): text
that is not UTF-8 and floats no f32 holds get 422 / INVALID_ARGUMENT on HTTP and gRPC, prompts
longer in bytes than any valid prompt are refused before tokenizing, oversized bodies get one 413
as soon as the headers or the chunks show it, oversized headers one 431, slow clients 408, a
half-closed client still gets its whole answer, CORS only for configured origins, and no error
shows server paths. HTTP cases talk over raw sockets."""

import json
import os
import signal
import socket
import subprocess
import time

from router_harness import Checks, Router, requests, stubs

PROMPT = "Hello world, this is a test"
ORIGIN = "http://allowed.example"


def connect(r, timeout=30):
    s = socket.create_connection(("127.0.0.1", r.port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_all(s):
    """Everything until the server closes (a reset after the answer counts as the close)."""
    out = b""
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            return out
        if not chunk:
            return out
        out += chunk


def responses(raw):
    """The status codes of the responses in raw (bodies skipped by content-length or chunking)."""
    codes = []
    while raw.startswith(b"HTTP/1.1 "):
        head, _, rest = raw.partition(b"\r\n\r\n")
        codes.append(int(head[9:12]))
        lines = head.decode().lower().split("\r\n")
        length = next((int(l.split(":")[1]) for l in lines if l.startswith("content-length:")), None)
        if length is not None:
            raw = rest[length:]
        elif any("chunked" in l for l in lines):
            end = rest.find(b"0\r\n\r\n")
            raw = rest[end + 5:] if end >= 0 else b""
        else:
            raw = rest
    return codes


def body_of(raw):
    head, _, rest = raw.partition(b"\r\n\r\n")
    return head.decode(), rest


def post_raw(r, path, body: bytes, extra=b""):
    s = connect(r)
    s.sendall(b"POST " + path.encode() + b" HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
              b"connection: close\r\n" + extra + b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    out = read_all(s)
    s.close()
    return body_of(out)


def grpc_raw(r, method, payload: bytes):
    """Sends payload as the serialized request of method (bytes a Python client cannot build)."""
    import grpc
    ch = r.grpc_channel()
    call = ch.unary_unary(f"/falconlite.v1.TextGeneration/{method}", request_serializer=lambda b: b,
                          response_deserializer=lambda b: b)
    try:
        call(payload, timeout=60)
        raise AssertionError("expected an error")
    except grpc.RpcError as e:
        return e.code(), e.details()
    finally:
        ch.close()


def main():
    pb, pbg, _, _ = stubs()
    import grpc
    checks = Checks()
    with Router("--cors-allow-origin", f"{ORIGIN}, http://other.example", "--http-header-timeout", "1",
                "--http-body-timeout", "1") as r:
        def utf8_http():
            for body in (b'{"inputs": "caf\xc3 x", "parameters": {"max_new_tokens": 2}}',
                         b'{"inputs": "\xff\xfe", "parameters": {"max_new_tokens": 2}}'):
                head, rest = post_raw(r, "/generate", body)
                assert head.startswith("HTTP/1.1 422"), head
                assert json.loads(rest) == {"error": "Input validation error: `inputs` must be valid UTF-8",
                                            "error_type": "validation"}, rest
            head, rest = post_raw(r, "/generate", b'{"inputs": "hi", "parameters": {"stop": ["\xed\xa0\x80"]}}')
            assert head.startswith("HTTP/1.1 422") and b"`stop` sequences must be valid UTF-8" in rest, rest
            # Valid multi-byte text still works.
            resp = r.post("/generate", {"inputs": "café ☕ 日本", "parameters": {"max_new_tokens": 2}})
            assert resp.status_code == 200, resp.text

        def utf8_grpc():
            good = pb.GenerateRequest(inputs="Hello XX", parameters=pb.Parameters(max_new_tokens=2)).SerializeToString()
            code, msg = grpc_raw(r, "Generate", good.replace(b"XX", b"\xc3\x28"))
            assert code == grpc.StatusCode.INVALID_ARGUMENT and "valid UTF-8" in msg, (code, msg)
            code, msg = grpc_raw(r, "GenerateStream", good.replace(b"XX", b"\xff\xff"))
            assert code == grpc.StatusCode.INVALID_ARGUMENT and "valid UTF-8" in msg, (code, msg)
            stop = pb.GenerateRequest(inputs="Hello", parameters=pb.Parameters(stop=["YY"])).SerializeToString()
            code, msg = grpc_raw(r, "Generate", stop.replace(b"YY", b"\xe0\x80"))
            assert code == grpc.StatusCode.INVALID_ARGUMENT and "`stop`" in msg, (code, msg)
            tok = pb.TokenizeRequest(inputs="Hello XX").SerializeToString()
            code, msg = grpc_raw(r, "Tokenize", tok.replace(b"XX", b"\x80\x80"))
            assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, msg)

        def floats_http():
            for name, raw in (("temperature", b"1e309"), ("top_p", b"1e309"), ("typical_p", b"-1e309"),
                              ("repetition_penalty", b"1e39")):
                body = b'{"inputs": "hi", "parameters": {"' + name.encode() + b'": ' + raw + b"}}"
                head, rest = post_raw(r, "/generate", body)
                assert head.startswith("HTTP/1.1 422"), (name, head)
                assert json.loads(rest)["error"] == f"Input validation error: `{name}` must be a finite number", rest
                head, rest = post_raw(r, "/generate_stream", body)
                assert b"must be a finite number" in rest, rest

        def floats_grpc():
            stub = pbg.TextGenerationStub(r.grpc_channel())
            for params in (pb.Parameters(temperature=float("nan")), pb.Parameters(top_p=float("inf")),
                           pb.Parameters(repetition_penalty=float("-inf")), pb.Parameters(typical_p=float("nan"))):
                for call in (stub.Generate, lambda q: list(stub.GenerateStream(q))):
                    try:
                        call(pb.GenerateRequest(inputs=PROMPT, parameters=params))
                        raise AssertionError("expected an error")
                    except grpc.RpcError as e:
                        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, (params, e.code(), e.details())
                        assert "must be a finite number" in e.details(), e.details()

        def long_prompt_refused_early():
            # 200 MB would not fit the body limit; 7 MB of one word is far over 256 tokens.
            text = "hello " * ((7 << 20) // 6)
            t0 = time.time()
            resp = r.post("/generate", {"inputs": text, "parameters": {"max_new_tokens": 1}})
            assert resp.status_code == 422, resp.status_code
            assert resp.json()["error"].startswith("Input validation error: `inputs` must have less than 256 tokens. Given: at least "), resp.json()
            # The same prompt with truncate is valid (it is tokenized, then cut from the left).
            resp = r.post("/generate", {"inputs": "hello " * 2000, "parameters": {"max_new_tokens": 1, "truncate": 8}})
            assert resp.status_code == 200, resp.text
            print(f"  7 MB prompt refused in {time.time() - t0:.2f} s")

        def body_limit_content_length():
            s = connect(r)
            s.sendall(b"POST /generate HTTP/1.1\r\nhost: x\r\ncontent-length: 500000000\r\n\r\n")
            out = read_all(s)  # answered and closed with no body sent
            s.close()
            assert responses(out) == [413], out[:200]
            assert b'"error_type":"validation"' in out

        def body_limit_chunked():
            s = connect(r)
            s.sendall(b"POST /generate HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n")
            chunk = b"%x\r\n" % (1 << 20) + b"x" * (1 << 20) + b"\r\n"
            sent, got = 0, b""
            s.settimeout(0.05)
            while sent < 200 and not got:
                try:
                    s.sendall(chunk)
                    sent += 1
                except (BrokenPipeError, ConnectionResetError):
                    break
                try:
                    got = s.recv(65536)
                except socket.timeout:
                    pass
                except ConnectionResetError:
                    break
            s.settimeout(30)
            rest = read_all(s)
            s.close()
            assert responses(got + rest) == [413], (got + rest)[:200]
            assert sent <= 16, f"sent {sent} MiB before the answer"

        def header_limit():
            s = connect(r)
            try:
                s.sendall(b"GET /info HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * (1 << 20) + b"\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
            out = read_all(s)
            s.close()
            assert responses(out) == [431], out[:300]

        def slow_headers():
            t0 = time.time()
            slow = connect(r)
            slow.sendall(b"POST /generate HTTP/1.1\r\nhost: x\r\n")  # and nothing more
            idle = connect(r)  # sends nothing at all
            # Other clients are served meanwhile.
            assert r.post("/generate", {"inputs": PROMPT, "parameters": {"max_new_tokens": 2}}).status_code == 200
            out = read_all(slow)
            assert responses(out) == [408], out
            assert read_all(idle) == b""  # closed without an answer
            assert time.time() - t0 < 20
            slow.close()
            idle.close()

        def slow_body():
            s = connect(r)
            s.sendall(b"POST /generate HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{\"inputs\":")
            out = read_all(s)
            s.close()
            assert responses(out) == [408], out

        def half_close():
            for path, marker in (("/generate", b'"generated_text"'), ("/generate_stream", b'"generated_text":"')):
                body = json.dumps({"inputs": PROMPT, "parameters": {"max_new_tokens": 6}}).encode()
                s = connect(r)
                s.sendall(b"POST " + path.encode() + b" HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                          b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
                s.shutdown(socket.SHUT_WR)
                out = read_all(s)
                s.close()
                assert responses(out) == [200], out
                assert marker in out, out
                if path == "/generate_stream":
                    assert out.endswith(b"0\r\n\r\n"), out[-100:]

        def cors():
            plain = requests.get(r.url + "/info", timeout=10)
            assert "access-control-allow-origin" not in plain.headers
            ok = requests.get(r.url + "/info", headers={"origin": ORIGIN}, timeout=10)
            assert ok.headers["access-control-allow-origin"] == ORIGIN
            assert ok.headers["vary"].lower() == "origin"
            other = requests.get(r.url + "/info", headers={"origin": "http://other.example"}, timeout=10)
            assert other.headers["access-control-allow-origin"] == "http://other.example"
            bad = requests.get(r.url + "/info", headers={"origin": "http://evil.example"}, timeout=10)
            assert bad.status_code == 200 and "access-control-allow-origin" not in bad.headers
            pre = requests.options(r.url + "/generate", headers={
                "origin": ORIGIN, "access-control-request-method": "POST"}, timeout=10)
            assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == ORIGIN
            assert "POST" in pre.headers["access-control-allow-methods"]
            pre = requests.options(r.url + "/generate", headers={
                "origin": "http://evil.example", "access-control-request-method": "POST"}, timeout=10)
            assert pre.status_code == 403 and "access-control-allow-origin" not in pre.headers

        def no_internals_in_errors():
            # A shard killed under the router: whatever clients see until it is back names no
            # socket or file.
            shards = subprocess.run(["pgrep", "-P", str(r.proc.pid)], capture_output=True, text=True).stdout.split()
            assert shards, "no shard process"
            os.kill(int(shards[0]), signal.SIGKILL)
            seen = []
            deadline = time.time() + 60
            while time.time() < deadline:
                resp = r.post("/generate", {"inputs": PROMPT, "parameters": {"max_new_tokens": 2}})
                seen.append(resp.status_code)
                if resp.status_code == 200:
                    break
                assert "/" not in resp.json()["error"] and "unix:" not in resp.json()["error"], resp.text
                time.sleep(0.2)
            assert seen[-1] == 200, seen
            assert "unix:" not in requests.get(r.url + "/health", timeout=30).text

        for fn in (utf8_http, utf8_grpc, floats_http, floats_grpc, long_prompt_refused_early,
                   body_limit_content_length, body_limit_chunked, header_limit, slow_headers, slow_body,
                   half_close, cors, no_internals_in_errors):
            checks.run(fn.__name__, fn)
    checks.finish()


if __name__ == "__main__":
    main()
