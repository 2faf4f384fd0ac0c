"""Soak under load (CPU shard, tiny golden checkpoint, loopback only): 64 concurrent streaming
clients, half over HTTP (SSE) and half over gRPC, for FL_SOAK_SECONDS (default 60), with mixed
lengths and 20% of the requests disconnected mid-stream. Every request must end with its full
result (every token, then the final text) or an explicit error (429 above
--max-concurrent-requests), none may hang; at the end the queue and batch are empty and every
KV block is free again (the router's /metrics: falconlite_kv_blocks_used == 0); router and shard
RSS after warm-up and at the end are printed and must not grow past a bound; a disconnected
stream stops computing early (the decode steps between its close and its removal are counted from
the metrics and printed). Prints the figures (requests, completed / errored
by kind, p99 latencies, RSS, KV blocks leaked)."""

import collections
import json
import os
import random
import socket
import threading
import time

from router_harness import Checks, Router, grpc, requests, stubs
from test_router_load import raw_stream, shard_pids

CLIENTS = 64
SECONDS = float(os.environ.get("FL_SOAK_SECONDS", "60"))
MAX_CONCURRENT = 48  # below CLIENTS: some requests must be refused as overloaded
PROMPTS = ["Hello world", "The quick brown fox jumps over the lazy dog", "1 2 3 4 5 6 7 8",
           "<|prompter|>Hi there<|endoftext|><|assistant|>", "a " * 60]
HANG_S = 120  # a request taking longer than this counts as hung


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def p99(xs):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * 0.99))]


class Tally:
    def __init__(self):
        self.mu = threading.Lock()
        self.kinds = collections.Counter()
        self.lat = collections.defaultdict(list)  # kind -> seconds
        self.bad = []
        self.errors = collections.Counter()  # explicit errors by message

    def add(self, kind, seconds, bad=None, error=None):
        with self.mu:
            self.kinds[kind] += 1
            self.lat[kind].append(seconds)
            if bad:
                self.bad.append(bad)
            if error:
                self.errors[f"{kind}: {error[:160]}"] += 1


def http_one(r, rng, tally):
    n = rng.randint(1, 96)
    disconnect_after = rng.randint(1, max(1, n - 1)) if rng.random() < 0.2 and n > 2 else None
    body = {"inputs": rng.choice(PROMPTS), "parameters": {"max_new_tokens": n, "details": True}}
    t0 = time.time()
    if disconnect_after is not None:
        s = raw_stream(r.port, body)
        s.settimeout(HANG_S)
        got = b""
        try:
            # Until the chosen event, or the end of the response (an early EOS, a refusal).
            while (got.count(b"data:") < disconnect_after and not got.startswith(b"HTTP/1.1 4")
                   and b"generated_text\":\"" not in got and b"\r\n0\r\n\r\n" not in got):
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
        except socket.timeout:
            tally.add("http_hung", time.time() - t0, "http stream hung before the disconnect")
        s.close()
        kind = "http_disconnected"
        if got.startswith(b"HTTP/1.1 429") or b"\"error_type\":\"overloaded\"" in got:
            kind = "http_overloaded"
        elif got.startswith(b"HTTP/1.1 4") or b"\"error\"" in got:
            kind = "http_error"
        tally.add(kind, time.time() - t0, None if kind != "http_error" else f"http error: {got[-300:]!r}")
        return
    try:
        resp = requests.post(r.url + "/generate_stream", json=body, stream=True, timeout=HANG_S)
        if resp.status_code == 429:
            resp.close()
            tally.add("http_overloaded", time.time() - t0)
            return
        raw = resp.content.decode()
    except requests.RequestException as e:
        tally.add("http_hung", time.time() - t0, f"http: {e!r}")
        return
    events = [json.loads(c[5:]) for c in raw.split("\n\n") if c.startswith("data:")]
    last = events[-1] if events else {}
    if last.get("error_type") == "overloaded":  # TGI: the stream's only event says so
        tally.add("http_overloaded", time.time() - t0)
        return
    if "error" in last:
        tally.add("http_error", time.time() - t0, None, f"{last}")
        return
    det = last.get("details") or {}
    ok = last.get("generated_text") is not None and len(events) == det.get("generated_tokens", -1)
    if det.get("finish_reason") == "length":
        ok = ok and len(events) == n
    tally.add("http_complete" if ok else "http_incomplete", time.time() - t0,
              None if ok else f"http incomplete: {len(events)} events, last {last}")


def grpc_one(stub, pb, rng, tally):
    n = rng.randint(1, 96)
    disconnect_after = rng.randint(1, max(1, n - 1)) if rng.random() < 0.2 and n > 2 else None
    req = pb.GenerateRequest(inputs=rng.choice(PROMPTS), parameters=pb.Parameters(max_new_tokens=n, details=True))
    t0 = time.time()
    it = stub.GenerateStream(req, timeout=HANG_S)
    count, last = 0, None
    try:
        for msg in it:
            count += 1
            last = msg
            if disconnect_after is not None and count >= disconnect_after:
                it.cancel()
                tally.add("grpc_disconnected", time.time() - t0)
                return
    except grpc.RpcError as e:
        code = e.code()
        if code == grpc.StatusCode.CANCELLED and disconnect_after is not None:
            tally.add("grpc_disconnected", time.time() - t0)
        elif code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            tally.add("grpc_overloaded", time.time() - t0)
        elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
            tally.add("grpc_hung", time.time() - t0, "grpc stream hung")
        else:
            tally.add("grpc_error", time.time() - t0, None, f"{code}: {e.details()}")
        return
    ok = last is not None and last.HasField("generated_text") and count == last.details.generated_tokens
    if ok and last.details.finish_reason == pb.FINISH_REASON_LENGTH:
        ok = count == n
    tally.add("grpc_complete" if ok else "grpc_incomplete", time.time() - t0,
              None if ok else f"grpc incomplete: {count} messages, last {last}")


def main():
    checks = Checks()
    pb, pbg, _, _ = stubs()
    # --prefix-cache off: cached prompt blocks would stay in use by design; every block must be free.
    with Router("--max-concurrent-requests", str(MAX_CONCURRENT), "--prefix-cache", "off",
                max_input=256, max_total=512,
                prefill=1024, batch_total=8192) as r:
        shard = shard_pids(r.proc.pid)[0]

        def soak():
            tally = Tally()
            stop_at = time.time() + SECONDS
            warm = {}

            def client(i):
                rng = random.Random(1000 + i)
                ch = r.grpc_channel() if i % 2 else None
                stub = pbg.TextGenerationStub(ch) if ch else None
                while time.time() < stop_at:
                    before = tally.kinds["grpc_overloaded"] + tally.kinds["http_overloaded"]
                    if stub:
                        grpc_one(stub, pb, rng, tally)
                    else:
                        http_one(r, rng, tally)
                    if tally.kinds["grpc_overloaded"] + tally.kinds["http_overloaded"] > before:
                        time.sleep(0.05)  # a refused client backs off a little before retrying
                if ch:
                    ch.close()

            threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
            for t in threads:
                t.start()
            time.sleep(min(10, SECONDS / 4))
            warm["router"], warm["shard"] = rss_kb(r.proc.pid), rss_kb(shard)
            for t in threads:
                t.join(SECONDS + HANG_S + 30)
            assert not any(t.is_alive() for t in threads), "a client thread hung"
            # Drained: nothing queued or running, every KV block back.
            deadline = time.time() + 30
            while r.metric("tgi_queue_size") or r.metric("tgi_batch_current_size"):
                assert time.time() < deadline, "queue or batch never emptied"
                time.sleep(0.1)
            used, total = r.metric("falconlite_kv_blocks_used"), r.metric("falconlite_kv_blocks_total")
            end = {"router": rss_kb(r.proc.pid), "shard": rss_kb(shard)}
            n = sum(tally.kinds.values())
            print(f"  soak: {n} requests in {SECONDS:.0f} s, {CLIENTS} concurrent clients "
                  f"(HTTP SSE and gRPC streams), --max-concurrent-requests {MAX_CONCURRENT}")
            for kind in sorted(tally.kinds):
                print(f"    {kind:18s} {tally.kinds[kind]:6d}   p99 {p99(tally.lat[kind]):6.2f} s")
            for e, k in tally.errors.most_common(5):
                print(f"    explicit error x{k}: {e}")
            print(f"  KV: {total:.0f} blocks, {used:.0f} in use after the soak (leaked)")
            for proc in ("router", "shard"):
                print(f"  RSS {proc}: {warm[proc] / 1024:.1f} MiB after warm-up, {end[proc] / 1024:.1f} MiB at the end")
            assert not tally.bad, tally.bad[:5]
            assert not any(k.endswith(("_hung", "_incomplete")) for k in tally.kinds), tally.kinds
            assert tally.kinds["http_complete"] > 0 and tally.kinds["grpc_complete"] > 0, tally.kinds
            assert tally.kinds["http_overloaded"] + tally.kinds["grpc_overloaded"] > 0, tally.kinds
            assert total > 0 and used == 0, f"{used:.0f} KV blocks leaked"
            for proc in ("router", "shard"):
                assert end[proc] <= warm[proc] * 1.25 + 32 * 1024, (proc, warm[proc], end[proc])

        checks.run("soak", soak)

        def disconnect_stops_computing():
            # The decode steps run between the client's close and the request's removal
            # (err="dropped") are the computation spent after it left. Background streams make
            # each step last a few milliseconds, longer than the close takes to reach the loop.
            background = [raw_stream(r.port, {"inputs": p, "parameters": {"max_new_tokens": 450}})
                          for p in PROMPTS * 3]
            for b in background:
                b.recv(1)
            dropped = r.metric('tgi_request_failure{err="dropped"}')
            decode = 'tgi_batch_inference_count{method="decode"}'
            s = raw_stream(r.port, {"inputs": PROMPTS[0], "parameters": {"max_new_tokens": 250}})
            got = b""
            while got.count(b"data:") < 3:
                got += s.recv(4096)
            d0 = r.metric(decode)
            s.close()
            deadline = time.time() + 30
            while r.metric('tgi_request_failure{err="dropped"}') <= dropped:
                assert time.time() < deadline, "the dropped request was never removed"
                time.sleep(0.01)
            steps = r.metric(decode) - d0
            for b in background:
                b.close()
            print(f"  disconnect: request removed {steps:.0f} decode step(s) after the client's close "
                  f"({PROMPTS.__len__() * 3} other streams running)")
            # The batcher drops a request at the first token it cannot deliver, i.e. within one
            # step of the event loop seeing the close; how many steps of this tiny model (about a
            # millisecond each) pass before the close reaches the loop depends on the machine's
            # load, so the figure is printed, and the check is that the request stopped early
            # (dropped, not run to its 450 tokens).
            assert steps < 450 - 3, steps

        checks.run("disconnect_stops_computing", disconnect_stops_computing)
    checks.finish()


if __name__ == "__main__":
    main()
