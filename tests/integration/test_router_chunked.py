"""Chunked prefill through a real CPU router + shard (tiny golden Falcon): a long prompt
prefilled in chunks of 8 tokens gives the same greedy tokens, logprobs and prompt logprobs as
with chunking off, and a running stream keeps receiving tokens while a long prompt is chunked in
(counted between the long request's arrival and its first token: at least half the number of
chunk steps)."""

import json
import math
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(__file__))
import router_harness as h  # noqa: E402

LONG = " ".join(f"The {w} fox number {i} jumps over the lazy dog." for i, w in
                enumerate(["quick", "brown", "red", "slow", "grey", "old", "young", "tiny"] * 2))


def generate(r, prompt, max_new, **params):
    body = {"inputs": prompt, "parameters": {"max_new_tokens": max_new, "details": True,
                                             "decoder_input_details": True, **params}}
    resp = r.post("/generate", body)
    assert resp.status_code == 200, resp.text
    return resp.json()


def close(a, b, tol=1e-4):
    if a is None or b is None:
        return a is None and b is None
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= tol


def same_output(off, on):
    assert on["generated_text"] == off["generated_text"], (on["generated_text"], off["generated_text"])
    d_off, d_on = off["details"], on["details"]
    assert [t["id"] for t in d_on["tokens"]] == [t["id"] for t in d_off["tokens"]]
    for a, b in zip(d_on["tokens"], d_off["tokens"]):
        assert close(a["logprob"], b["logprob"]), (a, b)
    assert [t["id"] for t in d_on["prefill"]] == [t["id"] for t in d_off["prefill"]]
    for a, b in zip(d_on["prefill"], d_off["prefill"]):
        assert close(a["logprob"], b["logprob"]), (a, b)


class StreamWatch:
    """A streaming /generate read on its own thread; counts its tokens as they arrive."""

    def __init__(self, r, prompt, max_new, counter=None):
        self.r, self.prompt, self.max_new = r, prompt, max_new
        self.n = 0
        self.first = threading.Event()
        self.counter = counter  # another StreamWatch whose count is sampled at our first token
        self.counter_at_first = None
        self.error = None
        self.t = threading.Thread(target=self.run, daemon=True)

    def run(self):
        try:
            body = {"inputs": self.prompt, "parameters": {"max_new_tokens": self.max_new}}
            resp = h.requests.post(self.r.url + "/generate_stream", json=body, timeout=300, stream=True)
            assert resp.status_code == 200, resp.text
            for line in resp.iter_lines():
                if not line.startswith(b"data:"):
                    continue
                ev = json.loads(line[len(b"data:"):])
                if "error" in ev:
                    raise RuntimeError(ev)
                if self.n == 0 and self.counter is not None:
                    self.counter_at_first = self.counter.n
                self.n += 1
                self.first.set()
        except Exception as e:  # noqa: BLE001 (reported by the main thread)
            self.error = e
            self.first.set()

    def start(self):
        self.t.start()
        return self

    def join(self):
        self.t.join(300)
        assert not self.t.is_alive(), "stream did not finish"
        if self.error:
            raise self.error


def main():
    checks = h.Checks()
    outputs = {}

    def run_with(chunk):
        # The prefix cache off: the stream below repeats the long prompt, which would otherwise
        # be mostly reused instead of chunked in.
        args = ["--prefill-chunk-tokens", str(chunk), "--prefix-cache", "off"]
        with h.Router(*args, max_input=400, max_total=512, prefill=400, batch_total=2048) as r:
            outputs[chunk] = generate(r, LONG, 12)
            assert len(outputs[chunk]["details"]["prefill"]) > 64  # several chunks of 8
            if chunk:
                # A short stream runs; the long prompt arrives; count the short stream's tokens
                # until the long request's first token.
                short = StreamWatch(r, "Hello", 400).start()
                assert short.first.wait(120)
                before = short.n
                long = StreamWatch(r, LONG, 4, counter=short).start()
                long.join()
                short.join()
                between = long.counter_at_first - before
                # Each of the ~n_prompt / 8 steps that took a chunk also gave the short stream a
                # token, delivered before the long request's first; without chunking only the
                # few produced while the long request's HTTP call arrived would count. Half of
                # the chunk steps leaves slack for the reader threads' lag.
                n_chunks = (len(outputs[chunk]["details"]["prefill"]) + 7) // 8
                print(f"short stream tokens while the long prompt was chunked in: {between} "
                      f"({n_chunks} chunks)")
                assert between >= n_chunks // 2, (between, n_chunks)

    checks.run("chunking off", lambda: run_with(0))
    checks.run("chunking on (8 tokens per step), streams keep going", lambda: run_with(8))
    checks.run("same greedy output, logprobs and prompt logprobs",
               lambda: same_output(outputs[0], outputs[8]))
    checks.finish()


if __name__ == "__main__":
    main()
