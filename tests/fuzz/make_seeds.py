"""Writes the seed corpora of tests/fuzz/corpus/ (run once; the files are committed): a few
valid inputs per target, so mutation starts from messages the parsers accept. Needs protobuf and
grpc_tools (tests/requirements.txt). Crash reproducers found later are added by hand, named
crash-<what>."""
import os
import shutil
import sys
import tempfile

from grpc_tools import protoc

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, "..", ".."))
CORPUS = os.path.join(HERE, "corpus")


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def main():
    out = tempfile.mkdtemp()
    assert protoc.main(["protoc", f"-I{SRC}/proto", f"--python_out={out}", f"{SRC}/proto/generate.proto",
                        f"{SRC}/proto/health.proto", f"{SRC}/proto/shard.proto"]) == 0
    sys.path.insert(0, out)
    import generate_pb2 as g
    import health_pb2 as h
    import shard_pb2 as s

    put("fuzz_http_json", "generate", '{"inputs":"Hello","parameters":{"max_new_tokens":20,"details":true}}')
    put("fuzz_http_json", "sampled", '{"inputs":"a b c","parameters":{"do_sample":true,"temperature":0.7,'
        '"top_k":10,"top_p":0.9,"typical_p":0.95,"repetition_penalty":1.2,"seed":7,"truncate":4,'
        '"stop":["x","\\n"],"best_of":2,"watermark":false,"return_full_text":true}}')
    put("fuzz_http_json", "openai_chat", '{"model":"m","messages":[{"role":"system","content":"Be brief."},'
        '{"role":"user","content":"Hi"}],"max_tokens":8,"temperature":0.5,"n":2,"seed":1,"stop":["x"],'
        '"stream":true,"stream_options":{"include_usage":true},"logprobs":true}')
    put("fuzz_http_json", "openai_completion", '{"model":"m","prompt":"Once upon","max_tokens":4,"top_p":0.9}')
    put("fuzz_http_json", "stream", '{"inputs":"\\u00e9\\ud83d\\ude00","stream":true,"parameters":null}')

    # fuzz_pb_api: first byte = method (0 Generate, 1 GenerateStream, 2 Tokenize, 4 Health Check)
    req = g.GenerateRequest(inputs="Hello world", parameters=g.Parameters(
        max_new_tokens=8, do_sample=True, temperature=0.8, top_k=5, seed=3, stop=["e"], details=True))
    put("fuzz_pb_api", "generate", b"\x00" + req.SerializeToString())
    put("fuzz_pb_api", "stream", b"\x01" + g.GenerateRequest(inputs="x" * 40).SerializeToString())
    put("fuzz_pb_api", "tokenize", b"\x02" + g.TokenizeRequest(inputs="Hello <|endoftext|>").SerializeToString())
    put("fuzz_pb_api", "health", b"\x04" + h.HealthCheckRequest(service="").SerializeToString())

    # fuzz_pb_shard: first byte = method << 1 | response (shard_methods.h order: Info 0, Health 1,
    # ServiceDiscovery 2, ClearCache 3, FilterBatch 4, Warmup 5, Prefill 6, Decode 7)
    r = s.Request(id=1, input_ids=[1, 2, 3], prefill_logprobs=True)
    r.parameters.temperature = 0.9
    r.parameters.top_k = 10
    r.stopping_parameters.max_new_tokens = 4
    batch = s.Batch(id=5, requests=[r], size=1, max_tokens=7)
    put("fuzz_pb_shard", "prefill", bytes([6 << 1]) + s.PrefillRequest(batch=batch).SerializeToString())
    put("fuzz_pb_shard", "warmup", bytes([5 << 1]) + s.WarmupRequest(batch=batch, max_total_tokens=64).SerializeToString())
    cb = s.CachedBatch(id=5, request_ids=[1], size=1, max_tokens=7)
    put("fuzz_pb_shard", "decode", bytes([7 << 1]) + s.DecodeRequest(batches=[cb]).SerializeToString())
    put("fuzz_pb_shard", "filter", bytes([4 << 1]) + s.FilterBatchRequest(batch_id=5, request_ids=[1]).SerializeToString())
    gen = s.Generation(request_id=1)
    put("fuzz_pb_shard_replies", "prefill_resp", bytes([6 << 1 | 1]) + s.PrefillResponse(generations=[gen], batch=cb).SerializeToString())

    put("fuzz_tokenizer", "text", "Hello world, <|endoftext|> 1 2 3 \u00e9\u4e2d")
    put("fuzz_tokenizer", "ids", bytes(range(0, 64)))

    def copy(name, prefix, path):
        with open(os.path.join(SRC, path), "rb") as f:
            put("fuzz_model_files", name, bytes([prefix]) + f.read())
    copy("safetensors", 0, "tests/data/formats/python_written.safetensors")
    copy("gguf", 1, "tests/golden/data/gguf/types.gguf")
    copy("tokenizer", 2, "tests/golden/data/tokenizer_bytelevel/tokenizer.json")
    copy("config", 3, "tests/golden/data/models/falcon40b_gqa_fp32/config.json")
    shutil.rmtree(out)


if __name__ == "__main__":
    main()
