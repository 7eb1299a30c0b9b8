"""Pretraining tokens/s of each CPU matrix-multiply path pinned, and of the path the probe
chooses, under this CPU's own instruction set and under an AVX2 cap, in one run.

Each run is a fresh subprocess (the caps must be set before torch loads) that fits
``BNVAE`` for one epoch on the first ``--pool-size`` short-Yelp pool sentences (the file
``bench_pretrain.py`` reads) with ``SSL_TEXTVAE_MATMUL_PATH`` set to one path of
:mod:`ssl_textvae.runtime.matmul` ("default", "onednn", "blas", "bf16" where it can run) or
to "auto" (the probe). Its training epoch's tokens/s is what is compared; a warm-up fit
(``--warmup-size`` sentences) first puts the process's one-time costs (autograd's start,
kernels compiled at first use) out of it, for every path alike, so the probe of an "auto" run
is timed warm (its cost is in ``fit s``, not in the epoch). The runs of a setting go in
alternating order over ``--repeats`` repeats; medians are reported, with the probe's choice
over the fastest pinned path (the issue's bar: at least 0.95).

The AVX2 cap is ``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2``
(oneDNN, ATen's own kernels and MKL each capped: without the last, MKL keeps AVX-512).

    python benchmarks/bench_matmul_paths.py --threads 1          # results/matmul_paths_cpu.json
    python benchmarks/bench_matmul_paths.py --quick --out /tmp/m.json   # a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks._common import (POOL_NAME, REPO_ROOT, RESULTS_DIR, add_common_arguments,  # noqa: E402
                                add_model_arguments, machine, print_table, write_json)

SETTINGS = {"own": {}, "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2",
                                "MKL_ENABLE_INSTRUCTIONS": "AVX2"}}
FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_bf16",
         "amx_tile")

CHILD = """
import itertools, json, sys, time
import torch
import ssl_textvae
from ssl_textvae import BNVAE, TextFile
pool, size, warmup, embed, hidden, latent, batch = sys.argv[1], *map(int, sys.argv[2:8])
texts = list(itertools.islice(TextFile(pool), size))
params = dict(latent_dim=latent, embed_dim=embed, hidden_dim=hidden, batch_size=batch, max_epochs=1,
              verbose=0, random_state=0)
BNVAE(**params).fit(texts[:warmup])   # the process's one-time costs out of the timed epoch
start = time.perf_counter()
vae = BNVAE(**params).fit(texts)
record = vae.history_[0]
print(json.dumps({"package": ssl_textvae.__file__, "tokens_per_second": record["tokens_per_second"],
                  "fit_seconds": time.perf_counter() - start,
                  "epoch_seconds": record["seconds"], "threads": record["mean_threads"],
                  "matmul_path": record["matmul_path"], "matmul_probe": record["matmul_probe"],
                  "cpu_capability": torch.backends.cpu.get_cpu_capability()}))
"""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    add_model_arguments(parser)
    parser.add_argument("--pool-size", type=int, default=5000, help="pool sentences per fit")
    parser.add_argument("--warmup-size", type=int, default=256, help="sentences of the warm-up fit")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each path per setting")
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--paths", nargs="+", default=None,
                        help="pinned paths to run (default: every path the probe timed)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny run to check the script works (300 sentences, a tiny model, 1 repeat)")
    args = parser.parse_args(argv)
    if args.quick:
        args.pool_size, args.warmup_size, args.repeats = 300, 32, 1
        args.embed_dim, args.hidden_dim, args.latent_dim, args.batch_size = 16, 32, 4, 16
    return args


def run(args, setting, path):
    """One fit in a fresh process: its record, or the error it ended with."""
    env = {**os.environ, **SETTINGS[setting], "SSL_TEXTVAE_MATMUL_PATH": path,
           "SSL_TEXTVAE_NUM_THREADS": str(args.threads), "OMP_NUM_THREADS": str(args.threads),
           "PYTHONPATH": os.pathsep.join([REPO_ROOT, os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-c", CHILD, os.path.join(args.data_dir, POOL_NAME), str(args.pool_size),
               *map(str, (args.warmup_size, args.embed_dim, args.hidden_dim, args.latent_dim, args.batch_size))]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(args, setting):
    """Every path of ``setting`` (the ones its first probe timed) pinned, and "auto"."""
    first = run(args, setting, "auto")
    if "error" in first:
        return {"env": SETTINGS[setting], "error": first["error"]}
    probe = first["matmul_probe"]
    names = ["auto", *[name for name in probe["seconds"] or [probe["path"]]
                       if args.paths is None or name in args.paths]]
    runs = {name: [] for name in names}
    runs["auto"].append(first)
    for repeat in range(args.repeats):
        order = names if repeat % 2 else names[::-1]
        for name in order:
            if repeat == 0 and name == "auto":
                continue
            runs[name].append(run(args, setting, name))
            print(f"  {setting} repeat {repeat + 1}/{args.repeats} {name}: "
                  f"{runs[name][-1].get('tokens_per_second', float('nan')):,.0f} tokens/s", flush=True)
    rows = {name: summary(records) for name, records in runs.items()}
    pinned = {name: row for name, row in rows.items() if name != "auto" and row["median_tokens_per_second"]}
    result = {"env": SETTINGS[setting], "cpu_capability": first["cpu_capability"],
              "skipped": probe["skipped"], "probe_estimates_seconds_per_step": probe["seconds"],
              "paths": rows}
    if pinned:
        fastest = max(pinned, key=lambda name: pinned[name]["median_tokens_per_second"])
        best = pinned[fastest]["median_tokens_per_second"]
        chosen = statistics.mode(rows["auto"]["chosen"])
        result.update(fastest=fastest, chosen=chosen,
                      chosen_over_fastest=rows.get(chosen, {}).get("median_tokens_per_second", 0) / best,
                      auto_over_fastest=rows["auto"]["median_tokens_per_second"] / best)
    return result


def summary(records):
    good = [r for r in records if "error" not in r]
    rates = [r["tokens_per_second"] for r in good]
    return {"median_tokens_per_second": statistics.median(rates) if rates else None,
            "tokens_per_second": rates, "fit_seconds": [r["fit_seconds"] for r in good],
            "chosen": [r["matmul_path"] for r in good],
            "probe_seconds": [r["matmul_probe"]["probe_seconds"] for r in good],
            "errors": [r["error"] for r in records if "error" in r]}


def cpu_info():
    """lscpu's model name and the instruction-set flags that decide the paths."""
    info = {}
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("Model name", "Vendor ID"):
            info[key.strip().lower().replace(" ", "_")] = value.strip()
        if key.strip() == "Flags":
            present = set(value.split())
            info["flags"] = {flag: flag in present for flag in FLAGS}
    return info


def main(argv=None):
    args = parse_args(argv)
    if args.device != "cpu":
        raise SystemExit("bench_matmul_paths.py measures CPU paths only (--device cpu).")
    import torch

    started = time.time()
    results = {}
    for setting in args.settings:
        print(f"{setting}: {SETTINGS[setting] or 'no cap'}", flush=True)
        results[setting] = measure(args, setting)
    table = []
    for setting, result in results.items():
        for name, row in result.get("paths", {}).items():
            rate = row["median_tokens_per_second"]
            fastest = result["paths"][result["fastest"]] if "fastest" in result else {}
            ratio = rate / fastest["median_tokens_per_second"] if rate and fastest else None
            label = f"auto (chose {', '.join(sorted(set(row['chosen'])))})" if name == "auto" else name
            table.append([setting, label, f"{rate:,.0f}" if rate else "failed",
                          " ".join(f"{v:,.0f}" for v in row["tokens_per_second"]),
                          f"{ratio:.3f}" if ratio else "", f"{statistics.median(row['fit_seconds']):.1f}"
                          if row["fit_seconds"] else ""])
    print()
    print_table(table, ["setting", "path", "tokens/s (median)", "samples", "of fastest", "fit s"])
    for setting, result in results.items():
        if "chosen" in result:
            print(f"{setting}: probe chose {result['chosen']}, fastest pinned {result['fastest']}; "
                  f"chosen/fastest {result['chosen_over_fastest']:.3f}, auto run/fastest "
                  f"{result['auto_over_fastest']:.3f}")
    payload = {"benchmark": "matmul_paths", "command": "python " + " ".join(sys.argv),
               "machine": {**machine(torch.device("cpu")), **cpu_info(), "threads": args.threads},
               "torch_config": torch.__config__.show(), "seconds": time.time() - started,
               "config": {"pool_size": args.pool_size, "repeats": args.repeats, "embed_dim": args.embed_dim,
                          "hidden_dim": args.hidden_dim, "latent_dim": args.latent_dim,
                          "batch_size": args.batch_size, "max_epochs": 1},
               "settings": results}
    write_json(payload, args.out or os.path.join(RESULTS_DIR, "matmul_paths_cpu.json"))


if __name__ == "__main__":
    main()
