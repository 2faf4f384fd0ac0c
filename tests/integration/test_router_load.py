"""The router under concurrency and failure (CPU shards, tiny golden checkpoint): 16 concurrent
mixed requests each equal to its solo result, overload -> 429, a client that disconnects
mid-stream is dropped (and its KV freed) while others go on, SIGTERM with requests in flight
finishes them and exits cleanly, and two or four tensor-parallel shards give the one-shard results
(four on a `falconlite mkmodel --preset tiny-tp` checkpoint: the golden ones have 2 KV heads)."""

import concurrent.futures as cf
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from router_harness import BIN, Checks, Router, requests, stubs

PROMPTS = ["Hello world", "The quick brown fox jumps", "1 2 3 4 5 6", "<|prompter|>Hi<|endoftext|><|assistant|>"]


def request_body(i):
    params = {"max_new_tokens": 4 + (i * 5) % 17, "details": True}
    if i % 3 == 1:
        params.update(do_sample=True, seed=100 + i, top_k=20)
    if i % 4 == 3:
        params["stop"] = ["e"]
    return {"inputs": PROMPTS[i % len(PROMPTS)], "parameters": params}


def summary(body):
    return body["generated_text"], [t["id"] for t in body["details"]["tokens"]], body["details"]["finish_reason"]


def raw_stream(port, body):
    """A raw socket that has sent a streaming request (to disconnect at will)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    data = json.dumps(body).encode()
    s.sendall(b"POST /generate_stream HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
              + f"content-length: {len(data)}\r\n\r\n".encode() + data)
    return s


def shard_pids(router_pid):
    """Pids of the falconlite-shard children of the router."""
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if ppid == router_pid and b"falconlite-shard" in cmd:
            pids.append(int(d))
    return pids


def main():
    checks = Checks()
    solo = {}
    with Router("--max-concurrent-requests", "64", "--max-batch-total-tokens", "600",
                max_total=300, max_input=100, prefill=300, batch_total=600) as r:
        def concurrent_equals_solo():
            for i in range(16):
                resp = r.post("/generate", request_body(i))
                assert resp.status_code == 200, resp.text
                solo[i] = summary(resp.json())
            with cf.ThreadPoolExecutor(16) as ex:
                futs = {i: ex.submit(r.post, "/generate", request_body(i)) for i in range(16)}
                for i, f in futs.items():
                    resp = f.result()
                    assert resp.status_code == 200, resp.text
                    assert summary(resp.json()) == solo[i], (i, summary(resp.json()), solo[i])
            # Requests really were batched together: some prefill took more than one.
            text = requests.get(r.url + "/metrics", timeout=10).text
            ones = [ln for ln in text.splitlines() if ln.startswith('tgi_batch_next_size_bucket{le="1"}')]
            assert float(ones[0].split()[-1]) < r.metric("tgi_batch_next_size_count")

        def disconnect_mid_stream():
            before = r.metric('tgi_request_failure{err="dropped"}')
            s = raw_stream(r.port, {"inputs": PROMPTS[0], "parameters": {"max_new_tokens": 199}})
            got = b""
            while got.count(b"data:") < 2:
                got += s.recv(4096)
            s.close()
            deadline = time.time() + 30
            while r.metric('tgi_request_failure{err="dropped"}') <= before:
                assert time.time() < deadline, "the dropped request was never filtered out"
                time.sleep(0.05)
            # The server goes on and the KV blocks came back: a request needing the whole budget runs.
            resp = r.post("/generate", {"inputs": PROMPTS[1], "parameters": {"max_new_tokens": 150}})
            assert resp.status_code == 200, resp.text

        def grpc_cancel_mid_stream():
            pb, pbg, _, _ = stubs()
            before = r.metric('tgi_request_failure{err="dropped"}')
            ch = r.grpc_channel()
            it = pbg.TextGenerationStub(ch).GenerateStream(
                pb.GenerateRequest(inputs=PROMPTS[2], parameters=pb.Parameters(max_new_tokens=199)))
            next(it), next(it)
            it.cancel()
            deadline = time.time() + 30
            while r.metric('tgi_request_failure{err="dropped"}') <= before:
                assert time.time() < deadline, "the cancelled call was never dropped"
                time.sleep(0.05)
            ch.close()
            resp = r.post("/generate", {"inputs": PROMPTS[1], "parameters": {"max_new_tokens": 150}})
            assert resp.status_code == 200, resp.text

        for fn in (concurrent_equals_solo, disconnect_mid_stream, grpc_cancel_mid_stream):
            checks.run(fn.__name__, fn)

    with Router("--max-concurrent-requests", "1") as r:
        def overload_429():
            # best_of=2 needs two permits of one: TGI's non-blocking semaphore says overloaded.
            resp = r.post("/generate", {"inputs": PROMPTS[0], "parameters": {"best_of": 2, "do_sample": True}})
            assert resp.status_code == 429, resp.text
            assert resp.json() == {"error": "Model is overloaded", "error_type": "overloaded"}
            # While a stream holds the only permit, another request is refused too.
            s = raw_stream(r.port, {"inputs": PROMPTS[0], "parameters": {"max_new_tokens": 400}})
            got = b""
            while b"data:" not in got:
                got += s.recv(4096)
            resp = r.post("/generate", {"inputs": PROMPTS[0], "parameters": {"max_new_tokens": 2}})
            s.close()
            assert resp.status_code in (200, 429)  # 200 only if the stream already ended
            assert r.metric('tgi_request_failure{err="overloaded"}') >= 1

        checks.run("overload_429", overload_429)

    def sigterm_in_flight():
        r = Router().__enter__()
        with cf.ThreadPoolExecutor(4) as ex:
            def stream(i):
                return r.sse("/generate_stream", {"inputs": PROMPTS[i], "parameters": {"max_new_tokens": 250}})
            futs = [ex.submit(stream, i) for i in range(4)]
            time.sleep(0.3)
            r.proc.send_signal(signal.SIGTERM)
            for f in futs:
                events, _ = f.result()
                assert events[-1].get("generated_text") is not None, events[-1]
                assert len(events) == 250
        assert r.proc.wait(60) == 0, r.logs()
        r.log.close()
        assert not any(os.path.exists(os.path.join(r.tmp, "sock", f"shard-{k}")) for k in range(1)), "socket left"
        r.cleanup()

    checks.run("sigterm_in_flight", sigterm_in_flight)

    def sigterm_grace_expired():
        # Requests longer than the grace period (some still queued behind a small token budget)
        # each end with an error event, and the router still exits cleanly.
        r = Router("--shutdown-grace-ms", "300", max_input=64, max_total=2000, prefill=2000,
                   batch_total=4000).__enter__()
        with cf.ThreadPoolExecutor(4) as ex:
            def stream(i):
                return r.sse("/generate_stream", {"inputs": PROMPTS[i], "parameters": {"max_new_tokens": 1900}})
            futs = [ex.submit(stream, i) for i in range(4)]
            time.sleep(0.3)
            r.proc.send_signal(signal.SIGTERM)
            ends = [f.result()[0][-1] for f in futs]
        assert r.proc.wait(60) == 0, r.logs()
        r.log.close()
        assert any("error" in e for e in ends), ends
        assert all("error" in e or e.get("generated_text") is not None for e in ends), ends
        r.cleanup()

    checks.run("sigterm_grace_expired", sigterm_grace_expired)

    def tensor_parallel_2():
        bodies = [{"inputs": p, "parameters": {"max_new_tokens": 10, "details": True}} for p in PROMPTS]
        with Router() as one:
            want = [summary(one.post("/generate", b).json()) for b in bodies]
        with Router(num_shard=2) as two:
            got = [summary(two.post("/generate", b).json()) for b in bodies]
        assert [w[1] for w in want] == [g[1] for g in got], (want, got)

    checks.run("tensor_parallel_2", tensor_parallel_2)

    def tensor_parallel_4():
        tmp = tempfile.mkdtemp(prefix="fl_tp4_")
        try:
            model = os.path.join(tmp, "tiny-tp")
            subprocess.run([os.path.join(BIN, "falconlite"), "mkmodel", "--preset", "tiny-tp", "--out", model],
                           check=True, capture_output=True)
            bodies = [{"inputs": p, "parameters": {"max_new_tokens": 12, "details": True}} for p in PROMPTS]
            with Router(model=model) as one:
                want = [summary(one.post("/generate", b).json()) for b in bodies]
            # --nccl-stream reaches the shards (the shared-memory comm has no stream to use).
            with Router("--nccl-stream", "off", model=model, num_shard=4) as four:
                got = [summary(four.post("/generate", b).json()) for b in bodies]
            assert [w[1] for w in want] == [g[1] for g in got], (want, got)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    checks.run("tensor_parallel_4", tensor_parallel_4)

    def shard_restart():
        with Router() as r:
            body = {"inputs": PROMPTS[1], "parameters": {"max_new_tokens": 8, "details": True}}
            want = summary(r.post("/generate", body).json())
            old = shard_pids(r.proc.pid)
            assert len(old) == 1, old
            os.kill(old[0], signal.SIGKILL)
            deadline = time.time() + 60
            while True:
                assert time.time() < deadline, "the shard was not restarted:\n" + r.logs()
                new = shard_pids(r.proc.pid)
                if new and new != old and requests.get(r.url + "/health", timeout=10).status_code == 200:
                    break
                time.sleep(0.1)
            resp = r.post("/generate", body)
            assert resp.status_code == 200, resp.text
            assert summary(resp.json()) == want

    checks.run("shard_restart", shard_restart)
    checks.finish()


if __name__ == "__main__":
    main()
