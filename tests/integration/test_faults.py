"""Faults and exposure of the router (CPU shards, tiny golden checkpoint): a default start binds
loopback and puts the shard sockets in a private directory (no warning, removed at exit);
--api-key guards HTTP and gRPC but not the health checks; gRPC over TLS with a self-signed
certificate made here; a stopped (SIGSTOP, hung not dead) shard turns into errors for the
requests in flight, 503 on /health, a restart and health again; SIGTERM under load answers new
work 503 and exits within --shutdown-timeout. Prints each recovery time."""

import concurrent.futures as cf
import os
import signal
import stat
import subprocess
import tempfile
import time

from router_harness import Checks, Router, grpc, requests, self_signed_cert, stubs
from test_router_load import raw_stream, shard_pids

PROMPT = "The quick brown fox jumps"


def listening_addrs(port):
    """Local addresses (hex, as /proc/net/tcp* writes them) listening on port."""
    out = []
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                for line in f.readlines()[1:]:
                    local, st = line.split()[1], line.split()[3]
                    addr, p = local.split(":")
                    if int(p, 16) == port and st == "0A":
                        out.append(addr)
        except OSError:
            pass
    return out


def wait_for(pred, timeout, what):
    deadline = time.time() + timeout
    while not pred():
        assert time.time() < deadline, what
        time.sleep(0.05)


def healthy(r):
    try:
        return requests.get(r.url + "/health", timeout=30).status_code == 200
    except requests.RequestException:
        return False


def main():
    checks = Checks()
    pb, pbg, hpb, hpbg = stubs()

    def default_start_is_private():
        run_dir = tempfile.mkdtemp(prefix="fl_xdg_")
        os.chmod(run_dir, 0o700)
        r = Router(defaults=True, env={"XDG_RUNTIME_DIR": run_dir}).__enter__()
        try:
            dirs = [d for d in os.listdir(run_dir) if d.startswith("falconlite-")]
            assert len(dirs) == 1, dirs
            mode = stat.S_IMODE(os.stat(os.path.join(run_dir, dirs[0])).st_mode)
            assert mode == 0o700, oct(mode)
            loopback = {"0100007F", "0000000000000000FFFF00000100007F"}  # 127.0.0.1, ::ffff:127.0.0.1
            for port in (r.port, r.grpc_port):
                addrs = listening_addrs(port)
                assert addrs and set(addrs) <= loopback, addrs
            logs = r.logs()
            assert "accessible to other users" not in logs, logs
        finally:
            assert r.stop() == 0, r.logs()
        assert os.listdir(run_dir) == [], os.listdir(run_dir)
        os.rmdir(run_dir)
        r.cleanup()

    checks.run("default_start_is_private", default_start_is_private)

    def api_key():
        key = "k3y-" + os.urandom(8).hex()
        with Router("--api-key", key) as r:
            body = {"inputs": PROMPT, "parameters": {"max_new_tokens": 2}}
            assert requests.get(r.url + "/health", timeout=30).status_code == 200
            assert r.post("/generate", body).status_code == 401
            assert r.post("/generate", body, headers={"authorization": "Bearer nope"}).status_code == 401
            assert r.post("/generate", body, headers={"authorization": key}).status_code == 401
            assert requests.get(r.url + "/metrics", timeout=10).status_code == 401
            oa = {"model": "m", "prompt": PROMPT, "max_tokens": 2}
            assert r.post("/v1/completions", oa).status_code == 401
            assert r.post("/v1/completions", oa, headers={"authorization": f"Bearer {key}"}).status_code == 200
            ok = r.post("/generate", body, headers={"authorization": f"Bearer {key}"})
            assert ok.status_code == 200, ok.text
            ch = r.grpc_channel()
            stub = pbg.TextGenerationStub(ch)
            req = pb.GenerateRequest(inputs=PROMPT, parameters=pb.Parameters(max_new_tokens=2))
            try:
                stub.Generate(req, timeout=60)
                raise AssertionError("gRPC call without the key succeeded")
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.UNAUTHENTICATED, e
            got = stub.Generate(req, timeout=60, metadata=[("authorization", f"Bearer {key}")])
            assert got.generated_text == ok.json()["generated_text"]
            h = hpbg.HealthStub(ch).Check(hpb.HealthCheckRequest(service=""), timeout=30)
            assert h.status == hpb.HealthCheckResponse.SERVING
            ch.close()

    checks.run("api_key", api_key)

    def grpc_tls():
        d = tempfile.mkdtemp(prefix="fl_tls_")
        cert, key = self_signed_cert(d)
        with Router("--tls-cert", cert, "--tls-key", key) as r:
            with open(cert, "rb") as f:
                creds = grpc.ssl_channel_credentials(root_certificates=f.read())
            ch = grpc.secure_channel(f"localhost:{r.grpc_port}", creds)
            info = pbg.TextGenerationStub(ch).Info(pb.InfoRequest(), timeout=30)
            assert info.max_input_length > 0
            ch.close()
            plain = r.grpc_channel()
            try:
                pbg.TextGenerationStub(plain).Info(pb.InfoRequest(), timeout=5)
                raise AssertionError("a plaintext call reached the TLS server")
            except grpc.RpcError as e:
                assert e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED), e
            plain.close()
        subprocess.run(["rm", "-rf", d], check=True)

    checks.run("grpc_tls", grpc_tls)

    def hung_shard():
        with Router("--shard-step-timeout", "2") as r:
            old = shard_pids(r.proc.pid)
            assert len(old) == 1, old
            s = raw_stream(r.port, {"inputs": PROMPT, "parameters": {"max_new_tokens": 400}})
            got = b""
            while got.count(b"data:") < 2:
                got += s.recv(4096)
            os.kill(old[0], signal.SIGSTOP)
            t0 = time.time()
            # The request in flight ends with an explicit error, not a hang.
            s.settimeout(60)
            while b"\"error\"" not in got:
                chunk = s.recv(4096)
                assert chunk, "the stream ended without an error event"
                got += chunk
            t_err = time.time() - t0
            s.close()
            wait_for(lambda: not healthy(r) or shard_pids(r.proc.pid) != old, 30, "never unhealthy")
            wait_for(lambda: shard_pids(r.proc.pid) not in ([], old) and healthy(r), 90,
                     "the hung shard was not replaced:\n" + r.logs())
            t_ok = time.time() - t0
            resp = r.post("/generate", {"inputs": PROMPT, "parameters": {"max_new_tokens": 4}})
            assert resp.status_code == 200, resp.text
            assert not os.path.exists(f"/proc/{old[0]}") or open(f"/proc/{old[0]}/stat").read().split()[2] == "Z"
            print(f"  SIGSTOP shard: error to the client after {t_err:.1f} s (step timeout 2 s), "
                  f"healthy again after {t_ok:.1f} s")

    checks.run("hung_shard", hung_shard)

    def killed_shard_mid_batch():
        # test_router_load.shard_restart checks the restart; this one measures it with requests
        # in flight: each ends with its result or an error, and the server serves again.
        with Router() as r:
            old = shard_pids(r.proc.pid)
            streams = [raw_stream(r.port, {"inputs": PROMPT, "parameters": {"max_new_tokens": 400}})
                       for _ in range(4)]
            for s in streams:
                got = b""
                while b"data:" not in got:
                    got += s.recv(4096)
            os.kill(old[0], signal.SIGKILL)
            t0 = time.time()
            for s in streams:
                s.settimeout(60)
                got = b""
                while b"\"error\"" not in got and b"generated_text\":\"" not in got:
                    chunk = s.recv(4096)
                    assert chunk, "a stream ended without its result or an error"
                    got += chunk
                s.close()
            wait_for(lambda: shard_pids(r.proc.pid) not in ([], old) and healthy(r), 90,
                     "the killed shard was not replaced:\n" + r.logs())
            t_ok = time.time() - t0
            resp = r.post("/generate", {"inputs": PROMPT, "parameters": {"max_new_tokens": 4}})
            assert resp.status_code == 200, resp.text
            print(f"  kill -9 shard mid-batch: healthy and serving again after {t_ok:.1f} s")

    checks.run("killed_shard_mid_batch", killed_shard_mid_batch)

    def sigterm_under_load_rejects_and_bounds():
        r = Router("--shutdown-timeout", "2", max_input=64, max_total=2000, prefill=2000,
                   batch_total=4000).__enter__()
        sess = requests.Session()
        assert sess.get(r.url + "/health", timeout=30).status_code == 200  # a kept-alive connection
        with cf.ThreadPoolExecutor(8) as ex:
            def stream(i):
                try:
                    return r.sse("/generate_stream", {"inputs": PROMPT, "parameters": {"max_new_tokens": 1900}})[0][-1]
                except Exception as e:  # noqa: BLE001 (connection refused once stopped)
                    return {"error": repr(e)}
            futs = [ex.submit(stream, i) for i in range(8)]
            time.sleep(0.5)
            t0 = time.time()
            r.proc.send_signal(signal.SIGTERM)
            time.sleep(0.2)
            late = sess.post(r.url + "/generate", json={"inputs": PROMPT}, timeout=30)
            assert late.status_code == 503, late.text
            ends = [f.result() for f in futs]
        assert r.proc.wait(60) == 0, r.logs()
        t_exit = time.time() - t0
        r.log.close()
        assert all("error" in e or e.get("generated_text") is not None for e in ends), ends
        assert t_exit < 2 + 15, t_exit
        print(f"  SIGTERM under load: new work 503, exited after {t_exit:.1f} s (--shutdown-timeout 2)")
        r.cleanup()

    checks.run("sigterm_under_load_rejects_and_bounds", sigterm_under_load_rejects_and_bounds)
    checks.finish()


if __name__ == "__main__":
    main()
