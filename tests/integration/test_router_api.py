"""The router's public APIs end to end (one CPU shard, tiny golden checkpoint): HTTP /generate,
/generate_stream, compat /, gRPC Generate / GenerateStream / Tokenize / Info / Health, the model
card's text-generation client, TGI's validation messages and status codes, /info, /metrics;
/info's model_dtype for fp16 and GPTQ checkpoints too."""

import math
import os
import shutil
import subprocess
import tempfile

from router_harness import BIN, Checks, Router, reference, requests, stubs

PROMPT = "Hello world, this is a test"
CARD_PROMPT = "<|prompter|>What is the capital of France?<|endoftext|><|assistant|>"


def close(a, b, tol=1e-4):
    return abs(a - b) <= tol * max(1.0, abs(b))


def main():
    pb, pbg, hpb, hpbg = stubs()
    ref = reference(PROMPT, 12)
    checks = Checks()
    with Router() as r:
        def http_generate():
            resp = r.post("/generate", {"inputs": PROMPT, "parameters": {"max_new_tokens": 12, "details": True}})
            assert resp.status_code == 200, resp.text
            body = resp.json()
            assert body["generated_text"] == ref["text"], (body["generated_text"], ref["text"])
            d = body["details"]
            assert [t["id"] for t in d["tokens"]] == ref["tokens"]
            assert all(close(t["logprob"], lp) for t, lp in zip(d["tokens"], ref["logprobs"]))
            assert d["finish_reason"] == ref["finish_reason"]
            assert d["generated_tokens"] == len(ref["tokens"])
            assert d["seed"] is None and d["prefill"] == []
            assert "best_of_sequences" not in d
            assert resp.headers["x-compute-type"] == "cpu"
            assert resp.headers["x-compute-characters"] == str(len(PROMPT))
            # Without details, only generated_text.
            plain = r.post("/generate", {"inputs": PROMPT, "parameters": {"max_new_tokens": 12}}).json()
            assert plain == {"generated_text": ref["text"]}

        def decoder_input_details():
            body = r.post("/generate", {"inputs": PROMPT, "parameters": {
                "max_new_tokens": 2, "decoder_input_details": True}}).json()
            prefill = body["details"]["prefill"]
            assert [t["id"] for t in prefill] == ref["input_ids"]
            assert prefill[0]["logprob"] is None and all(t["logprob"] <= 0 for t in prefill[1:])

        def return_full_text():
            body = r.post("/generate", {"inputs": PROMPT, "parameters": {
                "max_new_tokens": 12, "return_full_text": True}}).json()
            assert body["generated_text"] == PROMPT + ref["text"]

        def stop_sequence():
            full = r.post("/generate", {"inputs": PROMPT, "parameters": {"max_new_tokens": 12, "details": True}}).json()
            stop = full["details"]["tokens"][2]["text"]  # ends at a token boundary by construction
            body = r.post("/generate", {"inputs": PROMPT, "parameters": {
                "max_new_tokens": 12, "stop": [stop], "details": True}}).json()
            assert body["details"]["finish_reason"] == "stop_sequence", body
            assert body["generated_text"].endswith(stop)
            assert ref["text"].startswith(body["generated_text"])

        def http_stream():
            events, raw = r.sse("/generate_stream", {"inputs": PROMPT, "parameters": {"max_new_tokens": 12, "details": True}})
            assert raw.startswith("data:{")
            assert [e["token"]["id"] for e in events] == ref["tokens"]
            assert all(e["generated_text"] is None and e["details"] is None for e in events[:-1])
            last = events[-1]
            assert last["generated_text"] == ref["text"]
            assert last["details"] == {"finish_reason": ref["finish_reason"], "generated_tokens": 12, "seed": None}
            assert "".join(e["token"]["text"] for e in events) == ref["text"]

        def compat_route():
            body = r.post("/", {"inputs": PROMPT, "parameters": {"max_new_tokens": 12}}).json()
            assert body == [{"generated_text": ref["text"]}]
            events, _ = r.sse("/", {"inputs": PROMPT, "stream": True, "parameters": {"max_new_tokens": 12}})
            assert events[-1]["generated_text"] == ref["text"]

        def grpc_api():
            ch = r.grpc_channel()
            stub = pbg.TextGenerationStub(ch)
            resp = stub.Generate(pb.GenerateRequest(inputs=PROMPT, parameters=pb.Parameters(max_new_tokens=12, details=True)))
            assert resp.generated_text == ref["text"]
            assert [t.id for t in resp.details.tokens] == ref["tokens"]
            assert resp.details.finish_reason == pb.FINISH_REASON_LENGTH
            msgs = list(stub.GenerateStream(pb.GenerateRequest(inputs=PROMPT, parameters=pb.Parameters(max_new_tokens=12))))
            assert [m.token.id for m in msgs] == ref["tokens"]
            assert msgs[-1].generated_text == ref["text"] and not msgs[0].HasField("generated_text")
            tok = stub.Tokenize(pb.TokenizeRequest(inputs=PROMPT))
            assert list(tok.ids) == ref["input_ids"]
            info = stub.Info(pb.InfoRequest())
            assert info.max_input_length == 256 and info.max_total_tokens == 512 and info.num_shard == 1
            health = hpbg.HealthStub(ch).Check(hpb.HealthCheckRequest())
            assert health.status == hpb.HealthCheckResponse.SERVING
            import grpc
            for params, code, msg in [
                (pb.Parameters(top_p=1.0), grpc.StatusCode.INVALID_ARGUMENT,
                 "Input validation error: `top_p` must be > 0.0 and < 1.0"),
                (pb.Parameters(max_new_tokens=600), grpc.StatusCode.INVALID_ARGUMENT, None),
            ]:
                try:
                    stub.Generate(pb.GenerateRequest(inputs=PROMPT, parameters=params))
                    raise AssertionError("expected an error")
                except grpc.RpcError as e:
                    assert e.code() == code, e
                    assert msg is None or e.details() == msg, e.details()
            ch.close()

        def text_generation_client():
            from text_generation import Client
            c = Client(r.url, timeout=60)
            sample = {"typical_p": 0.2, "seed": 1}
            want = reference(CARD_PROMPT, 250, sample=sample)
            streamed = [t for t in c.generate_stream(CARD_PROMPT, do_sample=True, max_new_tokens=250, typical_p=0.2, seed=1)]
            assert [t.token.id for t in streamed] == want["tokens"]
            assert streamed[-1].generated_text == want["text"]
            assert streamed[-1].details.seed == 1
            g = c.generate(CARD_PROMPT, do_sample=True, max_new_tokens=250, typical_p=0.2, seed=1)
            assert g.generated_text == want["text"]
            assert g.details.seed == 1 and [t.id for t in g.details.tokens] == want["tokens"]

        def validation_errors():
            cases = [
                ({"best_of": 2}, "you must use sampling when `best_of` is > 1"),
                ({"temperature": 0}, "`temperature` must be strictly positive"),
                ({"repetition_penalty": 0}, "`repetition_penalty` must be strictly positive"),
                ({"top_p": 1.0}, "`top_p` must be > 0.0 and < 1.0"),
                ({"typical_p": 0}, "`typical_p` must be > 0.0 and < 1.0"),
                ({"top_k": 0}, "`top_k` must be strictly positive"),
                ({"max_new_tokens": 0}, "`max_new_tokens` must be strictly positive"),
                ({"stop": ["a", "b", "c", "d", "e"]}, "`stop` supports up to 4 stop sequences. Given: 5"),
                ({"best_of": 2, "do_sample": True, "seed": 3}, "`seed` must not be set when `best_of` > 1"),
                ({"best_of": 3, "do_sample": True}, "`best_of` must be > 0 and <= 2. Given: 3"),
                ({"truncate": 0}, "`truncate` must be strictly positive and less than 256. Given: 0"),
                ({"max_new_tokens": 510},
                 f"`inputs` tokens + `max_new_tokens` must be <= 512. Given: {len(ref['input_ids'])} `inputs` tokens and 510 `max_new_tokens`"),
            ]
            for params, msg in cases:
                resp = r.post("/generate", {"inputs": PROMPT, "parameters": params})
                assert resp.status_code == 422, (params, resp.status_code)
                assert resp.json() == {"error": "Input validation error: " + msg, "error_type": "validation"}, resp.json()
            resp = r.post("/generate", {"inputs": "", "parameters": {}})
            assert resp.json()["error"] == "Input validation error: `inputs` cannot be empty"
            # A prompt of 300 tokens: too long for max_input_length, short enough for max_total_tokens.
            tokenize = pbg.TextGenerationStub(r.grpc_channel()).Tokenize
            long_prompt = "hello"
            while len(tokenize(pb.TokenizeRequest(inputs=long_prompt)).ids) < 300:
                long_prompt += " hello"
            n = len(tokenize(pb.TokenizeRequest(inputs=long_prompt)).ids)
            resp = r.post("/generate", {"inputs": long_prompt, "parameters": {"max_new_tokens": 1}})
            assert resp.status_code == 422
            assert resp.json()["error"] == f"Input validation error: `inputs` must have less than 256 tokens. Given: {n}", resp.json()
            # truncate keeps the end of a long prompt and makes it valid.
            resp = r.post("/generate", {"inputs": long_prompt, "parameters": {"max_new_tokens": 1, "truncate": 10}})
            assert resp.status_code == 200, resp.text
            # Streaming: errors arrive as an SSE event with HTTP 200.
            events, _ = r.sse("/generate_stream", {"inputs": PROMPT, "parameters": {"top_k": -1}})
            assert events == [{"error": "Input validation error: `top_k` must be strictly positive", "error_type": "validation"}]
            events, _ = r.sse("/generate_stream", {"inputs": PROMPT, "parameters": {"best_of": 2, "do_sample": True}})
            assert events[0]["error"] == "Input validation error: `best_of` != 1 is not supported when streaming tokens"
            events, _ = r.sse("/generate_stream", {"inputs": PROMPT, "parameters": {"decoder_input_details": True}})
            assert events[0]["error"] == "Input validation error: `decoder_input_details` == true is not supported when streaming tokens"

        def malformed_json():
            resp = requests.post(r.url + "/generate", data=b'{"inputs": "x",', timeout=30,
                                 headers={"content-type": "application/json"})
            assert resp.status_code == 400 and resp.json()["error_type"] == "validation"
            resp = r.post("/generate", {"inputs": "x", "parameters": {"max_new_tokens": "many"}})
            assert resp.status_code == 422 and "max_new_tokens" in resp.json()["error"]
            resp = r.post("/generate", {"parameters": {}})
            assert resp.status_code == 422 and "missing field `inputs`" in resp.json()["error"]
            assert requests.get(r.url + "/nope", timeout=10).status_code == 404
            # curl's "Expect: 100-continue" gets its interim answer, then the real one.
            resp = requests.post(r.url + "/generate", timeout=30, headers={"expect": "100-continue"},
                                 json={"inputs": PROMPT, "parameters": {"max_new_tokens": 2}})
            assert resp.status_code == 200, resp.text

        def best_of():
            body = r.post("/generate", {"inputs": PROMPT, "parameters": {
                "max_new_tokens": 6, "best_of": 2, "do_sample": True, "details": True}}).json()
            d = body["details"]
            assert len(d["best_of_sequences"]) == 1
            mean = lambda ts: sum(t["logprob"] for t in ts) / len(ts)  # noqa: E731
            assert mean(d["tokens"]) >= mean(d["best_of_sequences"][0]["tokens"]) - 1e-6
            assert d["seed"] is not None

        def keep_alive_connection():
            # One connection carries generate, stream, error and info responses in turn.
            with requests.Session() as sess:
                for _ in range(2):
                    assert sess.post(r.url + "/generate", json={"inputs": PROMPT, "parameters": {"max_new_tokens": 12}},
                                     timeout=60).json() == {"generated_text": ref["text"]}
                    resp = sess.post(r.url + "/generate_stream", json={"inputs": PROMPT, "parameters": {"max_new_tokens": 3}},
                                     timeout=60)
                    assert resp.text.count("data:") == 3
                    assert sess.post(r.url + "/generate", json={"inputs": ""}, timeout=60).status_code == 422
                    assert sess.get(r.url + "/info", timeout=60).status_code == 200

        def info_and_metrics():
            info = requests.get(r.url + "/info", timeout=10).json()
            for k in ("model_id", "model_dtype", "model_device_type", "max_concurrent_requests", "max_best_of",
                      "max_stop_sequences", "max_input_length", "max_total_tokens", "waiting_served_ratio",
                      "max_batch_total_tokens", "max_waiting_tokens", "validation_workers", "version"):
                assert k in info, k
            assert info["max_input_length"] == 256 and info["model_device_type"] == "cpu"
            assert info["model_dtype"] == "torch.float32", info  # the fp32 golden checkpoint
            assert math.isclose(info["waiting_served_ratio"], 1.2, rel_tol=1e-6)
            text = requests.get(r.url + "/metrics", timeout=10).text
            for name in ("tgi_request_count", "tgi_request_success", 'tgi_request_failure{err="validation"}',
                         "tgi_request_duration_bucket", "tgi_batch_inference_count", "tgi_queue_size",
                         "tgi_batch_current_size", "tgi_request_input_length_bucket"):
                assert name in text, name
            assert r.metric("tgi_request_success") >= 1
            assert r.metric('tgi_request_failure{err="validation"}') >= 1
            # The shard's KV pool, polled at scrape time: nothing in use while idle.
            assert r.metric("falconlite_kv_blocks_total") > 0
            assert r.metric("falconlite_kv_blocks_used") == 0

        for fn in (http_generate, decoder_input_details, return_full_text, stop_sequence, http_stream,
                   compat_route, grpc_api, text_generation_client, validation_errors, malformed_json,
                   best_of, keep_alive_connection, info_and_metrics):
            checks.run(fn.__name__, fn)
    checks.run("checkpoint_dtype", checkpoint_dtype)
    checks.finish()


def checkpoint_dtype():
    """/info reports the checkpoint's dtype, whatever the backend computes in (CPU: f32); GPTQ
    checkpoints report torch.float16, as TGI 0.9.2 does."""
    tmp = tempfile.mkdtemp(prefix="fl_dtype_")
    try:
        for name, flags in (("fp16", []), ("gptq", ["--gptq"])):
            model = os.path.join(tmp, name)
            subprocess.run([os.path.join(BIN, "falconlite"), "mkmodel", "--preset", "tiny", "--layers", "1",
                            *flags, "--out", model], check=True, capture_output=True)
            with Router(model=model) as r:
                info = requests.get(r.url + "/info", timeout=10).json()
                assert info["model_dtype"] == "torch.float16", (name, info["model_dtype"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
