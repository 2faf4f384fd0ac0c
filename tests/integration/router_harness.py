"""Shared helpers for the router integration tests (test_router_*.py): start a real
falconlite-router (which spawns its falconlite-shard processes) on the CPU backend with a tiny
golden checkpoint, talk to it over HTTP and gRPC, and compare with `falconlite generate --json`.
Exits 77 (ctest: skipped) when the binaries, the model or the Python clients are missing."""

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SKIP = 77


def skip(why):
    print(f"SKIP: {why}")
    sys.exit(SKIP)


try:
    import grpc  # noqa: F401
    import grpc_tools.protoc  # noqa: F401
    import requests
    import text_generation  # noqa: F401 (the model card's client)
except ImportError as e:  # the venv of tests/requirements.txt is not in use
    skip(f"python test clients missing ({e}); install tests/requirements.txt")

SRC = os.environ.get("FL_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BIN = os.environ.get("FL_BIN_DIR", os.path.join(SRC, "build", "bin"))
DATA = os.environ.get("FL_TEST_DATA", os.path.join(SRC, "tests"))
MODEL = os.path.join(DATA, "golden", "data", "models", "falcon40b_gqa_fp32")

for exe in ("falconlite-router", "falconlite-shard", "falconlite"):
    if not os.access(os.path.join(BIN, exe), os.X_OK):
        skip(f"{exe} not built in {BIN}")
if not os.path.exists(os.path.join(MODEL, "config.json")):
    skip(f"golden model missing: {MODEL}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def self_signed_cert(d):
    """(cert.pem, key.pem): a self-signed certificate for localhost / 127.0.0.1 made in d."""
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


_stubs = None


def stubs():
    """generate_pb2, generate_pb2_grpc, health_pb2, health_pb2_grpc built from proto/ now."""
    global _stubs
    if _stubs is None:
        out = tempfile.mkdtemp(prefix="fl_stubs_")
        atexit.register(shutil.rmtree, out, True)
        from grpc_tools import protoc
        rc = protoc.main(["protoc", f"-I{SRC}/proto", f"--python_out={out}", f"--grpc_python_out={out}",
                          f"{SRC}/proto/generate.proto", f"{SRC}/proto/health.proto"])
        assert rc == 0, "protoc failed"
        sys.path.insert(0, out)
        import generate_pb2, generate_pb2_grpc, health_pb2, health_pb2_grpc
        _stubs = (generate_pb2, generate_pb2_grpc, health_pb2, health_pb2_grpc)
    return _stubs


class Router:
    """A running falconlite-router; use as a context manager (stops it with SIGTERM)."""

    def __init__(self, *extra, num_shard=1, max_input=256, max_total=512, prefill=512,
                 batch_total=2048, model=MODEL, defaults=False, env=None):
        """defaults: leave --hostname and --shard-uds-path to the router's defaults."""
        self.tmp = tempfile.mkdtemp(prefix="fl_router_")
        self.port, self.grpc_port = free_port(), free_port()
        # --tls-cert: the HTTP API is HTTPS; requests check the server against that certificate.
        self.verify = extra[extra.index("--tls-cert") + 1] if "--tls-cert" in extra else True
        self.url = f"{'https' if self.verify is not True else 'http'}://127.0.0.1:{self.port}"
        self.log_path = os.path.join(self.tmp, "router.log")
        args = [os.path.join(BIN, "falconlite-router"), "--model-id", model, "--backend", "cpu",
                "--num-shard", str(num_shard), "--port", str(self.port), "--grpc-port", str(self.grpc_port),
                *([] if defaults else ["--hostname", "127.0.0.1",
                                       "--shard-uds-path", os.path.join(self.tmp, "sock", "shard")]),
                "--max-input-length", str(max_input), "--max-total-tokens", str(max_total),
                "--max-batch-prefill-tokens", str(prefill), "--max-batch-total-tokens", str(batch_total),
                "--threads", "1", *extra]
        run_env = dict(os.environ)
        run_env.pop("HOSTNAME", None)
        run_env.update(env or {})
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=run_env)

    def __enter__(self):
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"router exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                if requests.get(self.url + "/health", timeout=5, verify=self.verify).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("router did not become healthy:\n" + self.logs())

    def __exit__(self, exc_type, exc, tb):
        rc = self.stop()
        if exc_type is None and rc != 0:
            raise RuntimeError(f"router exited with {rc} after SIGTERM:\n{self.logs()}")
        self.cleanup()

    def cleanup(self):
        """Removes the log and socket folder (kept when the router failed, for inspection)."""
        shutil.rmtree(self.tmp, ignore_errors=True)

    def stop(self, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.log.closed:
            self.log.close()
        return self.proc.returncode

    def logs(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path, errors="replace") as f:
            return f.read()[-6000:]

    def post(self, path, body, **kw):
        return requests.post(self.url + path, json=body, timeout=kw.pop("timeout", 120),
                             verify=self.verify, **kw)

    def sse(self, path, body):
        """The parsed `data:` events of an SSE response, and the raw text."""
        r = requests.post(self.url + path, json=body, timeout=120, stream=True, verify=self.verify)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "text/event-stream"
        raw = r.content.decode()
        events = [json.loads(chunk[len("data:"):]) for chunk in raw.split("\n\n") if chunk.startswith("data:")]
        return events, raw

    def grpc_channel(self):
        return grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}")

    def metric(self, name):
        text = requests.get(self.url + "/metrics", timeout=10, verify=self.verify).text
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        raise KeyError(name)


def reference(prompt, max_new_tokens, model=MODEL, sample=None):
    """`falconlite generate --json`: the local engine's tokens, logprobs and text."""
    args = [os.path.join(BIN, "falconlite"), "generate", "--model", model, "--prompt", prompt,
            "--max-new-tokens", str(max_new_tokens), "--backend", "cpu", "--threads", "1", "--json"]
    if sample:
        args += ["--do-sample"]
        for k, v in sample.items():
            args += [f"--{k.replace('_', '-')}", str(v)]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


class Checks:
    """Collects failures so one run reports every broken behaviour, then the closing line."""

    def __init__(self):
        self.passed = 0
        self.failed = 0

    def run(self, name, fn):
        try:
            fn()
            self.passed += 1
            print(f"PASS {name}")
        except Exception as e:  # noqa: BLE001 (report any failure with its context)
            self.failed += 1
            import traceback
            print(f"FAIL {name}: {e!r}")
            traceback.print_exc()

    def finish(self):
        print(f"{self.passed} passed, {self.failed} failed")
        sys.exit(1 if self.failed else 0)
