"""The `ignore_eos` extension of the public APIs (gRPC Parameters.ignore_eos, HTTP
parameters.ignore_eos) end to end. The tiny golden model is random and greedy never reaches its
real EOS token, so the test serves a copy of it whose config.json names as EOS the token that
greedy decoding of PROMPT produces third: the same weights then stop at EOS after 3 tokens unless
EOS is ignored, in which case max_new_tokens tokens (identical to the original model's) come back."""

import json
import os
import shutil
import tempfile

from router_harness import MODEL, Checks, Router, reference, stubs

PROMPT = "Hello world, this is a test"
MAX_NEW = 12


def model_with_eos(eos_id):
    d = tempfile.mkdtemp(prefix="fl_eos_model_")
    for name in os.listdir(MODEL):
        if name != "config.json":
            os.symlink(os.path.join(MODEL, name), os.path.join(d, name))
    with open(os.path.join(MODEL, "config.json")) as f:
        cfg = json.load(f)
    cfg["eos_token_id"] = eos_id
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f)
    return d


def main():
    pb, pbg, _, _ = stubs()
    ref = reference(PROMPT, MAX_NEW)
    assert ref["finish_reason"] == "length", ref
    eos = ref["tokens"][2]
    n_eos = ref["tokens"].index(eos) + 1  # greedy stops at the first occurrence
    assert n_eos < MAX_NEW
    model = model_with_eos(eos)
    checks = Checks()
    try:
        with Router(model=model) as r:
            def http():
                for ignore, n, reason in ((True, MAX_NEW, "length"), (False, n_eos, "eos_token"),
                                          (None, n_eos, "eos_token")):
                    params = {"max_new_tokens": MAX_NEW, "details": True, "ignore_eos": ignore}
                    resp = r.post("/generate", {"inputs": PROMPT, "parameters": params})
                    assert resp.status_code == 200, resp.text
                    d = resp.json()["details"]
                    assert [t["id"] for t in d["tokens"]] == ref["tokens"][:n], (ignore, d)
                    assert d["finish_reason"] == reason and d["generated_tokens"] == n, (ignore, d)
                events, _ = r.sse("/generate_stream", {"inputs": PROMPT, "parameters": {
                    "max_new_tokens": MAX_NEW, "ignore_eos": True, "details": True}})
                assert [e["token"]["id"] for e in events] == ref["tokens"]
                assert events[-1]["details"]["finish_reason"] == "length"
                bad = r.post("/generate", {"inputs": PROMPT, "parameters": {"ignore_eos": 1}})
                assert bad.status_code == 422, bad.text

            def grpc_api():
                ch = r.grpc_channel()
                stub = pbg.TextGenerationStub(ch)
                for ignore, n, reason in ((True, MAX_NEW, pb.FINISH_REASON_LENGTH),
                                          (False, n_eos, pb.FINISH_REASON_EOS_TOKEN)):
                    req = pb.GenerateRequest(inputs=PROMPT, parameters=pb.Parameters(
                        max_new_tokens=MAX_NEW, details=True, ignore_eos=ignore))
                    resp = stub.Generate(req)
                    assert [t.id for t in resp.details.tokens] == ref["tokens"][:n], (ignore, resp)
                    assert resp.details.finish_reason == reason, (ignore, resp)
                    msgs = list(stub.GenerateStream(req))
                    assert [m.token.id for m in msgs] == ref["tokens"][:n], (ignore, msgs)
                    assert msgs[-1].details.finish_reason == reason
                ch.close()

            for fn in (http, grpc_api):
                checks.run(fn.__name__, fn)
    finally:
        shutil.rmtree(model, ignore_errors=True)
    checks.finish()


if __name__ == "__main__":
    main()
