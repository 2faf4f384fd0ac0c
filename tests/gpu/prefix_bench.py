#!/usr/bin/env python3
"""Prefix-cache benchmark against a running router (HTTP API, standard library only).

1. One long document (--doc-tokens, measured with the router's POST /tokenize) and five
   different questions asked one after the other: time to first token of each (a request with
   max_new_tokens=1 returns after its first token). With the prefix cache, questions 2-5 reuse
   the document's KV blocks and prefill only their own tokens.
2. --clients concurrent clients, each sending --rounds requests of a --shared-tokens prompt plus
   its own short suffix, with --new-tokens generated: once with one document shared by every
   client, once with a different document per client. Output tokens per second of each.

Usage: prefix_bench.py --url http://127.0.0.1:3000 [--doc-tokens 10000] [--shared-tokens 3300]
       [--clients 16] [--rounds 2] [--new-tokens 64] [--json FILE]
"""
import argparse
import json
import random
import threading
import time
import urllib.request

WORDS = ("river stone harbor lantern meadow copper violet engine garden signal winter orchard "
         "compass ember falcon summit canyon beacon thistle marble willow comet anchor prairie "
         "saddle quartz ribbon timber glacier cobalt").split()


def post(url, path, body, timeout=600):
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def n_tokens(url, text):
    return len(post(url, "/tokenize", {"inputs": text}))


def document(url, tokens, seed):
    """Random words whose token count is within a few tokens of `tokens` (checked with /tokenize)."""
    rng = random.Random(seed)
    words = [rng.choice(WORDS) for _ in range(tokens)]
    lo, hi = 1, len(words)
    while lo < hi:  # the longest prefix of words that fits
        mid = (lo + hi + 1) // 2
        if n_tokens(url, " ".join(words[:mid])) <= tokens:
            lo = mid
        else:
            hi = mid - 1
    return " ".join(words[:lo])


def generate(url, prompt, new_tokens):
    t0 = time.monotonic()
    out = post(url, "/generate", {"inputs": prompt,
                                  "parameters": {"max_new_tokens": new_tokens, "ignore_eos": True,
                                                 "details": True}})
    return time.monotonic() - t0, out["details"]["generated_tokens"]


def questions(url, doc_tokens):
    doc = document(url, doc_tokens, 1)
    qs = ["Question: which word appears first in the text above?",
          "Question: how many times does the word falcon appear?",
          "Question: name three metals mentioned in the text.",
          "Question: summarise the text in one sentence.",
          "Question: which word is the last one of the text?"]
    ttft = []
    for q in qs:
        t, _ = generate(url, doc + "\n" + q + "\nAnswer:", 1)
        ttft.append(t)
    return {"doc_tokens": n_tokens(url, doc), "ttft_s": ttft,
            "later_over_first": [t / ttft[0] for t in ttft[1:]]}


def concurrent(url, shared_tokens, clients, rounds, new_tokens, shared):
    docs = [document(url, shared_tokens, 100 if shared else 200 + c) for c in range(clients)]
    results, lock = [], threading.Lock()

    def client(c):
        for r in range(rounds):
            t, n = generate(url, docs[c] + f"\nClient {c}, request {r}: continue.", new_tokens)
            with lock:
                results.append((t, n))

    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.monotonic() - t0
    lat = sorted(t for t, _ in results)
    return {"shared": shared, "requests": len(results), "wall_s": wall,
            "output_tok_per_s": sum(n for _, n in results) / wall,
            "e2e_s_p50": lat[len(lat) // 2], "e2e_s_max": lat[-1]}


def metrics(url):
    with urllib.request.urlopen(url + "/metrics", timeout=30) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("tgi_prefix_cache_"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--doc-tokens", type=int, default=10000)
    ap.add_argument("--shared-tokens", type=int, default=3300)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--json")
    a = ap.parse_args()
    res = {"questions": questions(a.url, a.doc_tokens), "metrics_after_questions": metrics(a.url)}
    q = res["questions"]
    print(f"document of {q['doc_tokens']} tokens, 5 questions: TTFT "
          + " ".join(f"{t * 1e3:.0f}" for t in q["ttft_s"]) + " ms; questions 2-5 / question 1: "
          + " ".join(f"{r:.3f}" for r in q["later_over_first"]))
    for shared in (True, False):
        r = concurrent(a.url, a.shared_tokens, a.clients, a.rounds, a.new_tokens, shared)
        res["shared" if shared else "unshared"] = r
        print(f"{a.clients} clients x {a.rounds} requests, {a.shared_tokens}-token "
              f"{'shared' if shared else 'distinct'} prefix: {r['output_tok_per_s']:.1f} out tok/s, "
              f"e2e p50 {r['e2e_s_p50']:.2f} s, wall {r['wall_s']:.1f} s")
    res["metrics_end"] = metrics(a.url)
    print("metrics:", res["metrics_end"])
    if a.json:
        json.dump(res, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
