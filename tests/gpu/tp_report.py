#!/usr/bin/env python3
"""Helpers of tests/gpu/run_server_tp.sh (stdlib only, so it runs on a bare GPU host).

  tp_report.py greedy FALCONLITE ADDR OUT.jsonl PROMPTS N_NEW
      `falconlite client generate --greedy --json` for each prompt, one JSON line each. PROMPTS is
      a golden fixture's reference.json (its prompt texts) or a file of one prompt per line.
  tp_report.py compare BASE.jsonl OTHER.jsonl [REFERENCE.json]
      Prints whether OTHER's greedy tokens equal BASE's (and, with a reference, for how many
      steps each agrees with HF's); exit 0 whatever the outcome (the summary reports it).
  tp_report.py summary OUT_DIR TP_LIST
      The table of every run (files named by run_server_tp.sh) and the targets."""
import json
import os
import subprocess
import sys


def prompts_of(path):
    if path.endswith(".json"):
        return [p["text"] for p in json.load(open(path))["prompts"]]
    return [line.rstrip("\n") for line in open(path) if line.strip()]


def greedy(bin_path, addr, out, prompts, n_new):
    with open(out, "w") as f:
        for text in prompts_of(prompts):
            r = subprocess.run([bin_path, "client", "--addr", addr, "generate", "--prompt", text,
                                "--greedy", "--max-new-tokens", str(n_new), "--json"],
                               capture_output=True, text=True, timeout=300)
            if r.returncode != 0:
                f.write(json.dumps({"error": r.stderr.strip()[-300:]}) + "\n")
            else:
                f.write(r.stdout.strip().splitlines()[-1] + "\n")


def load(path):
    try:
        return [json.loads(line) for line in open(path) if line.strip()]
    except OSError:
        return []


def same_prefix(a, b):
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def compare(base, other, reference=None):
    """(equal prompts, prompts, text lines) of other's greedy tokens against base's."""
    a, b = load(base), load(other)
    ref = json.load(open(reference))["prompts"] if reference else None
    lines, equal = [], 0
    for i, (x, y) in enumerate(zip(a, b)):
        if "tokens" not in x or "tokens" not in y:
            lines.append(f"prompt {i}: error {x.get('error') or y.get('error')}")
            continue
        same = x["tokens"] == y["tokens"]
        equal += same
        dl = (max((abs(p - q) for p, q in zip(x["logprobs"], y["logprobs"])), default=0)
              if same else float("nan"))
        hf = ""
        if ref and i < len(ref):
            hf = (f", HF agrees {same_prefix(x['tokens'], ref[i]['tokens'])} / "
                  f"{same_prefix(y['tokens'], ref[i]['tokens'])} steps")
        lines.append(f"prompt {i}: tokens {'EQUAL' if same else 'DIFFER at ' + str(same_prefix(x['tokens'], y['tokens']))}"
                      f" ({len(x['tokens'])}), max |dlogprob| {dl:.3g}{hf}")
    return equal, max(len(a), len(b)), lines


def server_cells(path):
    try:
        return json.load(open(path)).get("results", [])
    except (OSError, ValueError):
        return []


def cell(cells, length, conc):
    for c in cells:
        if c.get("input_length") == length and c.get("concurrency") == conc:
            return c
    return None


def fmt(v, digits=1):
    return "-" if v is None else f"{v:.{digits}f}"


def summary(out, tp_list):
    tps = [int(t) for t in tp_list.split()]
    runs = []  # (tp, mode) in the order run_server_tp.sh made them
    for tp in tps:
        for mode in (["auto"] if tp == 1 else ["on", "off"]):
            if os.path.exists(f"{out}/server_tp{tp}_{mode}_b1.json") or \
               os.path.exists(f"{out}/server_tp{tp}_{mode}_batch.json"):
                runs.append((tp, mode))
    b1 = {r: server_cells(f"{out}/server_tp{r[0]}_{r[1]}_b1.json") for r in runs}
    batch = {r: server_cells(f"{out}/server_tp{r[0]}_{r[1]}_batch.json") for r in runs}
    lengths = sorted({c["input_length"] for cells in b1.values() for c in cells})
    print("\n== Summary: bench-server (ITL@n, TTFT@n: p50 ms at batch 1, input n; agg: tokens/s "
          "of the batch run at input 20)")
    head = f"{'TP':>3} {'nccl-stream':>11} " + " ".join(
        f"{'ITL@' + str(n):>10} {'TTFT@' + str(n):>11}" for n in lengths) + f" {'agg tok/s':>10}"
    print(head)
    for r in runs:
        row = f"{r[0]:>3} {r[1]:>11} "
        for n in lengths:
            c = cell(b1[r], n, 1)
            row += f"{fmt(c and c['itl_ms_p50'], 2):>10} {fmt(c and c['ttft_ms_p50']):>11} "
        agg = batch[r][0]["throughput_tokens_per_s"] if batch[r] else None
        print(row + f"{fmt(agg):>10}")

    def itl(r, n):
        c = cell(b1.get(r, []), n, 1)
        return c and c["itl_ms_p50"]

    def agg(r):
        return batch[r][0]["throughput_tokens_per_s"] if batch.get(r) else None

    base = (1, "auto")
    short = lengths[0] if lengths else None
    print("\n== Targets (TP>1 with --nccl-stream on, the default)")
    checks = []
    for tp, want in ((2, 1.7), (4, 3.0)):
        a, b = itl(base, short), itl((tp, "on"), short)
        if a and b:
            checks.append((f"batch-1 decode TP={tp} >= {want}x TP=1 (ITL at input {short})",
                           a / b >= want, f"{a / b:.2f}x"))
    a, b = agg(base), agg((2, "on"))
    if a and b:
        checks.append(("batch-32 aggregate TP=2 >= 1.6x TP=1", b / a >= 1.6, f"{b / a:.2f}x"))
    c = cell(b1.get((4, "on"), []), 10000, 1)
    if c:
        checks.append(("10K prefill at TP=4 <= 0.4 s (TTFT p50)", c["ttft_ms_p50"] <= 400,
                       f"{c['ttft_ms_p50'] / 1e3:.3f} s"))
    for name, ok, got in checks:
        print(f"  {'MET ' if ok else 'MISS'} {name}: {got}")
    for tp in tps[1:]:
        a, b = itl((tp, "on"), short), itl((tp, "off"), short)
        if a and b:
            print(f"  A/B TP={tp}: --nccl-stream off / on ITL at input {short}: {b / a:.2f}x")
    if not checks:
        print("  (no benchmark results)")
    print("\n== Greedy TP=N vs TP=1")
    for name in sorted(os.listdir(out)):
        if name.startswith("greedy_") and name.endswith(".txt"):
            print(f"  {name[len('greedy_'):-len('.txt')]}: {open(f'{out}/{name}').read().strip()}")


def main():
    cmd = sys.argv[1]
    if cmd == "greedy":
        greedy(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]))
    elif cmd == "compare":
        equal, n, lines = compare(*sys.argv[2:5])
        print("\n".join(lines))
        print(f"{equal} of {n} prompts equal")
    elif cmd == "summary":
        summary(sys.argv[2], sys.argv[3])
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
