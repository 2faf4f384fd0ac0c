#!/usr/bin/env python3
"""Prints the table of a `falconlite bench --json` file: tests/gpu/bench_table.py TAG FILE."""
import json
import sys

tag, path = sys.argv[1], sys.argv[2]
try:
    d = json.load(open(path))
except Exception as e:  # a failed run leaves no JSON: say so and go on
    print(f"{tag}: no bench results ({e})")
    sys.exit(0)
print(f"{tag}: {d['device']}; copy {d['copy_bandwidth_bytes_per_s']/1e9:.0f} GB/s; "
      f"weights/step {d['weight_bytes_per_step']/1e9:.2f} GB")
print(f"{'input':>6} {'batch':>5} {'TTFT_ms':>9} {'prefill/s':>10} {'decode/s':>9} {'ITL_ms':>7} "
      f"{'card_TPS':>8} {'GB/s':>7} {'of_copy':>7} {'peak_GiB':>8}")
for r in d["results"]:
    print(f"{r['input_length']:>6} {r['batch']:>5} {r['ttft_s']*1e3:>9.1f} "
          f"{r['prefill_tok_per_s']:>10.1f} {r['decode_tok_per_s']:>9.1f} "
          f"{r['itl_median_s']*1e3:>7.2f} {r['card_tps']:>8.1f} "
          f"{r['achieved_bytes_per_s']/1e9:>7.0f} {r['fraction_of_copy_bandwidth']*100:>6.1f}% "
          f"{r['peak_device_memory_bytes']/2**30:>8.1f}")
