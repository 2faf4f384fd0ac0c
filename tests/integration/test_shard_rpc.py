"""falconlite-shard over its real gRPC protocol (proto/shard.proto), driven by a Python client
generated from proto/ at test time: Info, Warmup, Prefill, Decode (incl. merging two batches),
FilterBatch, ClearCache, error paths, SIGTERM; and TP=2 (shared-memory comm) against TP=1.
Greedy tokens must equal the HF reference of the tiny golden checkpoints (tests/golden).
Exit 77 (skipped) when grpcio / grpcio-tools, the binary or the fixtures are missing, and on the
CUDA backend (FL_SHARD_BACKEND=cuda: the ctest entry test_shard_rpc_cuda) without a GPU; there TP=2
runs over NCCL when 2 GPUs are present, FL_NCCL_STREAM (auto, on, off) choosing the shards'
--nccl-stream for A/B runs."""
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time

SKIP = 77
SRC = os.environ.get("FL_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
DATA = os.environ.get("FL_TEST_DATA", os.path.join(SRC, "tests"))
BIN_DIR = os.environ.get("FL_BIN_DIR", os.path.join(SRC, "build", "bin"))
BIN = os.path.join(BIN_DIR, "falconlite-shard")
MODELS = os.path.join(DATA, "golden", "data", "models")
# cpu (CI) or cuda (GPU hosts: f16 activations, so logprobs match the f32 reference less tightly)
BACKEND = os.environ.get("FL_SHARD_BACKEND", "cpu")
LOGPROB_TOL = 1e-3 if BACKEND == "cpu" else 5e-2
NCCL_STREAM = os.environ.get("FL_NCCL_STREAM", "auto")

try:
    import grpc
    from grpc_tools import protoc
except ImportError:
    print("skip: grpcio / grpcio-tools not installed (tests/requirements.txt)")
    sys.exit(SKIP)


def load_stubs(tmp):
    out = os.path.join(tmp, "py")
    os.makedirs(out)
    proto_dir = os.path.join(SRC, "proto")
    rc = protoc.main(["protoc", f"-I{proto_dir}", f"--python_out={out}", f"--grpc_python_out={out}",
                      os.path.join(proto_dir, "shard.proto")])
    assert rc == 0, "protoc failed on proto/shard.proto"
    sys.path.insert(0, out)
    import shard_pb2
    import shard_pb2_grpc
    return shard_pb2, shard_pb2_grpc


class Shards:
    """W falconlite-shard processes of one model, and a stub per rank."""

    def __init__(self, tmp, model, world=1, name="s"):
        self.sock_dir = os.path.join(tmp, name)
        self.uds = os.path.join(self.sock_dir, "shard")
        self.procs = []
        comm_id = f"test-{os.getpid()}-{name}"
        for rank in range(world):
            cmd = [BIN, "--model", model, "--uds-path", self.uds, "--rank", str(rank), "--world",
                   str(world), "--backend", BACKEND, "--threads", "1", "--comm-id", comm_id,
                   "--nccl-stream", NCCL_STREAM]
            self.procs.append(subprocess.Popen(cmd))
        self.stubs = []
        for rank in range(world):
            path = f"{self.uds}-{rank}"
            deadline = time.time() + 120
            while not os.path.exists(path):
                assert time.time() < deadline, f"{path} did not appear"
                for p in self.procs:
                    assert p.poll() is None, f"shard exited early with {p.returncode}"
                time.sleep(0.05)
            ch = grpc.insecure_channel(f"unix:{path}")
            grpc.channel_ready_future(ch).result(timeout=60)
            self.stubs.append(PB_GRPC.ShardStub(ch))

    def call(self, method, req):
        """Fans req out to every rank like the router does; returns rank 0's response."""
        futs = [getattr(s, method).future(req, timeout=120) for s in self.stubs]
        resps = [f.result() for f in futs]
        for r in resps[1:]:
            if hasattr(r, "generations"):
                assert len(r.generations) == 0, "only rank 0 returns generations"
        return resps[0]

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        codes = []
        for p in self.procs:
            try:
                codes.append(p.wait(timeout=60))
            except subprocess.TimeoutExpired:  # never leave a shard behind
                p.kill()
                codes.append(f"hung, killed ({p.wait()})")
        return codes


def request(rid, ids, max_new, prefill_logprobs=False, **params):
    np = PB.NextTokenChooserParameters(temperature=1.0, top_k=0, top_p=1.0, typical_p=1.0,
                                       do_sample=False, seed=0, repetition_penalty=1.0)
    for k, v in params.items():
        setattr(np, k, v)
    return PB.Request(id=rid, input_ids=ids, parameters=np,
                      stopping_parameters=PB.StoppingCriteriaParameters(
                          max_new_tokens=max_new, ignore_eos_token=True),
                      prefill_logprobs=prefill_logprobs)


def batch(bid, reqs):
    return PB.Batch(id=bid, requests=reqs, size=len(reqs),
                    max_tokens=sum(len(r.input_ids) + r.stopping_parameters.max_new_tokens
                                   for r in reqs))


def cached(b):
    return PB.CachedBatch(id=b.id, request_ids=b.request_ids, size=b.size, max_tokens=b.max_tokens)


def expect_error(fn, needle):
    try:
        fn()
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.INTERNAL, e.code()
        assert needle in e.details(), e.details()
        return
    raise AssertionError(f"expected an error containing {needle!r}")


def run_to_end(sh, first_resp, tokens):
    """Decodes a cached batch until it is empty, appending each request's tokens."""
    b = first_resp.batch if first_resp.HasField("batch") else None
    for g in first_resp.generations:
        tokens.setdefault(g.request_id, []).append(g.token_id)
    while b is not None:
        r = sh.call("Decode", PB.DecodeRequest(batches=[cached(b)]))
        for g in r.generations:
            tokens.setdefault(g.request_id, []).append(g.token_id)
        b = r.batch if r.HasField("batch") else None
    return tokens


def test_single(tmp, model_dir, ref):
    sh = Shards(tmp, model_dir)
    p0, p1 = ref["prompts"][0], ref["prompts"][1]
    try:
        info = sh.call("Info", PB.InfoRequest())
        cfg = json.load(open(os.path.join(model_dir, "config.json")))
        assert info.vocab_size == cfg["vocab_size"] and info.eos_token_id == cfg["eos_token_id"]
        assert (info.rank, info.world_size, info.block_size, info.max_total_tokens) == (0, 1, 16, 0)
        assert info.device_type == BACKEND and not info.requires_padding
        assert info.dtype == "float32", info.dtype  # the checkpoint's (fp32 fixtures), any backend
        sh.call("Health", PB.HealthRequest())
        disc = sh.call("ServiceDiscovery", PB.ServiceDiscoveryRequest())
        assert list(disc.urls) == [f"unix:{sh.uds}-0"]

        expect_error(lambda: sh.call("Prefill", PB.PrefillRequest(batch=batch(1, [
            request(1, p0["ids"], 4)]))), "Warmup")
        expect_error(lambda: sh.call("Warmup", PB.WarmupRequest(
            batch=batch(0, [request(0, p0["ids"], 4)]), max_total_tokens=10**9)),
            "not enough memory")
        w = sh.call("Warmup", PB.WarmupRequest(batch=batch(0, [request(0, p0["ids"], 8)]),
                                              max_total_tokens=1024))
        assert w.max_supported_total_tokens >= 1024 and w.max_supported_total_tokens % 16 == 0
        info = sh.call("Info", PB.InfoRequest())
        assert info.max_total_tokens == w.max_supported_total_tokens == info.free_tokens

        # Prefill of two requests: first tokens, prompt logprobs, block-rounded reservation.
        n_new = 6
        r = sh.call("Prefill", PB.PrefillRequest(batch=batch(1, [
            request(10, p0["ids"], n_new, prefill_logprobs=True), request(11, p1["ids"], n_new)])))
        assert [g.request_id for g in r.generations] == [10, 11]
        g0 = r.generations[0]
        assert g0.token_id == p0["tokens"][0]
        assert abs(g0.token_logprob - p0["logprobs"][0]) < LOGPROB_TOL
        assert list(g0.prefill_tokens.ids) == p0["ids"]
        lp = list(g0.prefill_tokens.logprobs)
        assert math.isnan(lp[0])
        # The reference lists logprobs of prompt tokens 1.. (token 0 has no context).
        assert len(lp) == len(p0["ids"]) and len(p0["prompt_logprobs"]) == len(lp) - 1
        assert all(abs(a - b) < LOGPROB_TOL for a, b in zip(lp[1:], p0["prompt_logprobs"]))
        assert not r.generations[1].HasField("prefill_tokens")
        blocks = lambda p: -(-(len(p["ids"]) + n_new - 1) // 16)
        assert r.batch.id == 1 and list(r.batch.request_ids) == [10, 11]
        assert r.batch.max_tokens == 16 * (blocks(p0) + blocks(p1))
        info = sh.call("Info", PB.InfoRequest())
        assert info.free_tokens == info.max_total_tokens - r.batch.max_tokens

        toks = run_to_end(sh, r, {})
        assert toks[10] == p0["tokens"][:n_new], (toks[10], p0["tokens"][:n_new])
        assert toks[11] == p1["tokens"][:n_new]
        info = sh.call("Info", PB.InfoRequest())
        assert info.free_tokens == info.max_total_tokens, "finished requests free their blocks"

        # A running batch joined by a newcomer (TGI: Decode([running, new]) merges into the first).
        ra = sh.call("Prefill", PB.PrefillRequest(batch=batch(2, [request(20, p0["ids"], 5)])))
        toks = {20: [ra.generations[0].token_id]}
        rd = sh.call("Decode", PB.DecodeRequest(batches=[cached(ra.batch)]))
        toks[20].append(rd.generations[0].token_id)
        rb = sh.call("Prefill", PB.PrefillRequest(batch=batch(3, [request(30, p1["ids"], 3)])))
        toks[30] = [rb.generations[0].token_id]
        rm = sh.call("Decode", PB.DecodeRequest(batches=[cached(rd.batch), cached(rb.batch)]))
        assert rm.batch.id == 2 and list(rm.batch.request_ids) == [20, 30]
        for g in rm.generations:
            toks[g.request_id].append(g.token_id)
        expect_error(lambda: sh.call("Decode", PB.DecodeRequest(batches=[cached(rb.batch)])),
                     "not found")
        run_to_end(sh, PB.DecodeResponse(batch=rm.batch), toks)
        assert toks[20] == p0["tokens"][:5] and toks[30] == p1["tokens"][:3], toks

        # Chunked prefill (Batch.prefill_chunk_tokens 8): the 39-token prompt goes in over its
        # Prefill and the next Decodes with no generation until its last chunk, while the running
        # request gets a token every step; tokens and prompt logprobs are unchanged.
        ra = sh.call("Prefill", PB.PrefillRequest(batch=batch(11, [request(110, p1["ids"], 6)])))
        toks = {110: [ra.generations[0].token_id]}
        cb = batch(12, [request(120, p0["ids"], 4, prefill_logprobs=True)])
        cb.prefill_chunk_tokens = 8
        rb = sh.call("Prefill", PB.PrefillRequest(batch=cb))
        assert len(rb.generations) == 0 and list(rb.batch.request_ids) == [120]
        merged, steps = [cached(ra.batch), cached(rb.batch)], 0
        first = None
        while first is None:  # the merged batch keeps batches[0]'s budget: the newcomer's first
            rm = sh.call("Decode", PB.DecodeRequest(batches=merged[::-1] if steps == 0 else merged))
            steps += 1
            for g in rm.generations:
                toks.setdefault(g.request_id, []).append(g.token_id)
                if g.request_id == 120:
                    first = g
            assert 110 in [g.request_id for g in rm.generations]
            merged = [cached(rm.batch)]
        assert steps == -(-(len(p0["ids"]) - 8) // 8), steps
        lp = list(first.prefill_tokens.logprobs)
        assert list(first.prefill_tokens.ids) == p0["ids"] and math.isnan(lp[0])
        assert all(abs(a - b) < LOGPROB_TOL for a, b in zip(lp[1:], p0["prompt_logprobs"]))
        run_to_end(sh, PB.DecodeResponse(batch=rm.batch), toks)
        assert toks[120] == p0["tokens"][:4] and toks[110] == p1["tokens"][:6], toks
        info = sh.call("Info", PB.InfoRequest())
        assert info.free_tokens == info.max_total_tokens

        # The last generation of a request carries its end; it then leaves the batch.
        r = sh.call("Prefill", PB.PrefillRequest(batch=batch(4, [request(40, p0["ids"], 1)])))
        assert not r.HasField("batch")
        end = r.generations[0].end
        assert end.finish_reason == PB.FINISH_REASON_LENGTH and end.generated_tokens == 1
        assert not end.sampled

        # Stop token ids finish with STOP_SEQUENCE; sampling reports its seed.
        req = request(41, p0["ids"], 10)
        req.stopping_parameters.stop_token_ids.extend([p0["tokens"][0]])
        r = sh.call("Prefill", PB.PrefillRequest(batch=batch(5, [req])))
        assert r.generations[0].end.finish_reason == PB.FINISH_REASON_STOP_SEQUENCE
        r = sh.call("Prefill", PB.PrefillRequest(batch=batch(6, [
            request(42, p0["ids"], 1, do_sample=True, seed=7, top_k=5)])))
        assert r.generations[0].end.sampled and r.generations[0].end.seed == 7

        # FilterBatch keeps the listed requests and frees the others; ClearCache drops a batch.
        r = sh.call("Prefill", PB.PrefillRequest(batch=batch(7, [
            request(70, p0["ids"], 8), request(71, p1["ids"], 8)])))
        f = sh.call("FilterBatch", PB.FilterBatchRequest(batch_id=7, request_ids=[71]))
        assert list(f.batch.request_ids) == [71] and f.batch.max_tokens == 16 * blocks_for(p1, 8)
        expect_error(lambda: sh.call("FilterBatch", PB.FilterBatchRequest(
            batch_id=7, request_ids=[70])), "no request 70")
        sh.call("ClearCache", PB.ClearCacheRequest(ids=[7]))
        expect_error(lambda: sh.call("Decode", PB.DecodeRequest(batches=[cached(f.batch)])),
                     "not found")
        info = sh.call("Info", PB.InfoRequest())
        assert info.free_tokens == info.max_total_tokens

        # Requests the shard cannot serve.
        bad = request(80, p0["ids"], 4)
        bad.parameters.watermark = True
        expect_error(lambda: sh.call("Prefill", PB.PrefillRequest(batch=batch(8, [bad]))),
                     "watermark")
        too_long = info.max_total_tokens + 1  # more KV than the whole pool
        expect_error(lambda: sh.call("Prefill", PB.PrefillRequest(batch=batch(9, [
            request(90, p0["ids"], too_long)]))), "batch 9")
        expect_error(lambda: sh.call("Prefill", PB.PrefillRequest(batch=batch(10, [
            request(91, [], 4)]))), "empty")
        info = sh.call("Info", PB.InfoRequest())
        assert info.free_tokens == info.max_total_tokens, "failed prefills keep nothing"
    finally:
        codes = sh.stop()
    assert codes == [0], codes
    assert not os.path.exists(f"{sh.uds}-0"), "socket removed on exit"


def blocks_for(p, n_new):
    return -(-(len(p["ids"]) + n_new - 1) // 16)


def test_tp2(tmp, model_dir, ref):
    """Two ranks (shared-memory comm) give the reference tokens, like one rank."""
    sh = Shards(tmp, model_dir, world=2, name="tp2")
    try:
        w = sh.call("Warmup", PB.WarmupRequest(batch=batch(0, []), max_total_tokens=512))
        assert w.max_supported_total_tokens >= 512
        n_new = 8
        prompts = ref["prompts"][:2]
        r = sh.call("Prefill", PB.PrefillRequest(batch=batch(1, [
            request(i, p["ids"], n_new) for i, p in enumerate(prompts)])))
        toks = run_to_end(sh, r, {})
        for i, p in enumerate(prompts):
            assert toks[i] == p["tokens"][:n_new], (i, toks[i], p["tokens"][:n_new])

        # A rank that dies breaks the group: the survivor answers INTERNAL naming the dead rank,
        # then exits non-zero so that the router restarts the shards.
        sh.procs[1].kill()
        sh.procs[1].wait()
        try:
            sh.stubs[0].Prefill(PB.PrefillRequest(batch=batch(2, [request(5, prompts[0]["ids"], 2)])),
                                timeout=60)
            raise AssertionError("Prefill with a dead peer succeeded")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.INTERNAL and "rank 1 exited" in e.details(), e
        assert sh.procs[0].wait(timeout=30) == 1
    finally:
        codes = sh.stop()
    assert codes[0] == 1, codes


def gpu_count():
    """CUDA devices usable here (tests/unit/helpers/gpu_probe.c); None after printing why not."""
    probe = subprocess.run([os.path.join(BIN_DIR, "gpu_probe")], capture_output=True, text=True)
    if probe.returncode != 0:
        print(f"skip: test_shard_rpc on cuda: {probe.stdout.strip() or probe.stderr.strip()}")
        return None
    return int(probe.stdout)


def main():
    if not os.path.exists(BIN):
        print(f"skip: {BIN} not built")
        return SKIP
    gpus = gpu_count() if BACKEND == "cuda" else 0
    if gpus is None:
        return SKIP
    global PB, PB_GRPC
    with tempfile.TemporaryDirectory(prefix="fl-shard-") as tmp:
        PB, PB_GRPC = load_stubs(tmp)
        for case, tp2 in (("falcon7b_mqa_fp32", False), ("falcon40b_gqa_fp32", True)):
            model_dir = os.path.join(MODELS, case)
            if not os.path.exists(os.path.join(model_dir, "reference.json")):
                print(f"skip: fixture {case} missing")
                return SKIP
            ref = json.load(open(os.path.join(model_dir, "reference.json")))
            if tp2 and BACKEND != "cpu" and gpus < 2:
                print(f"skip TP=2 {case}: needs 2 GPUs on {BACKEND}, found {gpus}")
            elif tp2:
                test_tp2(tmp, model_dir, ref)
                print(f"ok {case} TP=2 (--nccl-stream {NCCL_STREAM})")
            else:
                test_single(tmp, model_dir, ref)
            print(f"ok {case}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
