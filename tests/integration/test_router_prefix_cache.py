"""The shard's prefix cache through the real router and shard (CPU, tiny golden checkpoint): a
repeated document prompt reuses cached KV blocks (tgi_prefix_cache_hit_tokens and
tgi_prefix_cache_lookup_tokens move on /metrics) and returns exactly what a cold run returns;
--prefix-cache off looks nothing up; decoder_input_details requests do not look up."""

from router_harness import Checks, Router

DOC = ("In the beginning there was a small village by the river, and every morning the people "
       "walked down to the water to fish, to wash and to talk about the weather. ")
QUESTIONS = ["Who walked to the river?", "What did they talk about?"]
MAX_NEW = 10


def generate(r, prompt, **extra):
    resp = r.post("/generate", {"inputs": prompt, "parameters": {
        "max_new_tokens": MAX_NEW, "details": True, **extra}})
    assert resp.status_code == 200, resp.text
    d = resp.json()["details"]
    return [(t["id"], t["logprob"]) for t in d["tokens"]]


def counters(r):
    return r.metric("tgi_prefix_cache_lookup_tokens"), r.metric("tgi_prefix_cache_hit_tokens")


def main():
    checks = Checks()
    prompts = [DOC + q for q in QUESTIONS]
    cold = {}
    with Router("--prefix-cache", "off") as r:
        def off_looks_nothing_up():
            for p in prompts + prompts:
                cold.setdefault(p, generate(r, p))
                assert generate(r, p) == cold[p]
            assert counters(r) == (0, 0), counters(r)
        checks.run(off_looks_nothing_up.__name__, off_looks_nothing_up)
    with Router() as r:  # on by default
        def repeated_prompt_hits():
            assert counters(r) == (0, 0), counters(r)
            first = generate(r, prompts[0])
            lookup0, hit0 = counters(r)
            assert lookup0 > 32 and hit0 == 0, (lookup0, hit0)  # nothing cached before
            again = generate(r, prompts[0])
            lookup1, hit1 = counters(r)
            n_prompt = lookup1 - lookup0
            assert n_prompt == lookup0, (lookup0, lookup1)
            # Whole 16-token blocks, at most n_prompt - 1 tokens.
            assert hit1 == (n_prompt - 1) // 16 * 16, (n_prompt, hit1)
            assert first == cold[prompts[0]] and again == cold[prompts[0]], (first, again)

        def shared_document_hits():
            lookup0, hit0 = counters(r)
            out = generate(r, prompts[1])
            lookup1, hit1 = counters(r)
            assert lookup1 > lookup0 and 16 <= hit1 - hit0 < lookup1 - lookup0, (lookup1, hit1)
            assert out == cold[prompts[1]], out

        def prompt_logprobs_do_not_look_up():
            before = counters(r)
            resp = r.post("/generate", {"inputs": prompts[0], "parameters": {
                "max_new_tokens": MAX_NEW, "details": True, "decoder_input_details": True}})
            assert resp.status_code == 200, resp.text
            toks = [(t["id"], t["logprob"]) for t in resp.json()["details"]["tokens"]]
            assert toks == cold[prompts[0]]
            assert counters(r) == before, (counters(r), before)

        for fn in (repeated_prompt_hits, shared_document_hits, prompt_logprobs_do_not_look_up):
            checks.run(fn.__name__, fn)
    checks.finish()


if __name__ == "__main__":
    main()
