"""Pretraining throughput and peak memory of this checkout against another one, in one run.

Each repeat starts a fresh subprocess per checkout, in alternating order, that imports
``ssl_textvae`` from that checkout and runs ``BNVAE.fit`` with the paper's short-Yelp model
(embeddings 128, LSTMs of 512, latent 32, SGD, batch 32) for one epoch over the first
``--texts`` pool sentences. Reported: tokens/s and peak RSS per run, and this checkout over the
other as the median of the per-repeat ratios (the two runs of a repeat are back to back, so a
machine that slows down slows both).

    git worktree add --detach /tmp/old_ee45 ee45d05
    OMP_NUM_THREADS=1 python benchmarks/bench_checkouts.py --other /tmp/old_ee45
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks._common import POOL_NAME, REPO_ROOT, RESULTS_DIR, machine, print_table, write_json  # noqa: E402

CHILD = """
import itertools, json, resource, sys, time
sys.path.insert(0, sys.argv[1])
import ssl_textvae
from ssl_textvae import BNVAE
with open(sys.argv[2], encoding="utf-8") as handle:
    texts = [line.rstrip("\\n") for line in itertools.islice(handle, int(sys.argv[3]))]
start = time.perf_counter()
vae = BNVAE(latent_dim=32, gamma=0.7, embed_dim=128, hidden_dim=512, optimizer="sgd", lr=1.0,
            batch_size=32, clip_grad_norm=5.0, max_epochs=1, verbose=0, random_state=0).fit(texts)
seconds = time.perf_counter() - start
print(json.dumps({"package": ssl_textvae.__file__, "seconds": seconds,
                  "train_tokens_per_second": vae.history_[-1]["tokens_per_second"],
                  "valid_kl": vae.history_[-1]["valid_kl"],
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run(checkout, pool, texts):
    output = subprocess.run([sys.executable, "-c", CHILD, checkout, pool, str(texts)], check=True,
                            capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--other", required=True, help="the checkout to compare with (a worktree)")
    parser.add_argument("--data-dir", default=os.path.join(REPO_ROOT, "..", "shared", "data",
                                                           "short_yelp_li2019"))
    parser.add_argument("--texts", type=int, default=15000, help="pool sentences per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(RESULTS_DIR, "checkouts_cpu.json"))
    args = parser.parse_args(argv)
    pool = os.path.join(args.data_dir, POOL_NAME)
    checkouts = {"this": REPO_ROOT, "other": os.path.abspath(args.other)}
    runs, ratios = [], []
    for repeat in range(args.repeats):
        order = ["this", "other"] if repeat % 2 == 0 else ["other", "this"]
        pair = {name: run(checkouts[name], pool, args.texts) for name in order}
        for name in order:
            runs.append({"repeat": repeat, "checkout": name, **pair[name]})
        ratios.append(pair["this"]["train_tokens_per_second"] / pair["other"]["train_tokens_per_second"])
        print(f"repeat {repeat}: " + ", ".join(f"{n} {pair[n]['train_tokens_per_second']:,.0f} tokens/s, "
                                               f"{pair[n]['peak_rss_mib']:,.0f} MiB" for n in order), flush=True)
    ratios.sort()
    median = ratios[len(ratios) // 2]
    print()
    print_table([[r["repeat"], r["checkout"], f"{r['train_tokens_per_second']:,.0f}", f"{r['peak_rss_mib']:,.0f}",
                  f"{r['valid_kl']:.2f}"] for r in runs],
                ["repeat", "checkout", "train tokens/s", "peak RSS MiB", "valid KL"])
    print(f"\nthis / other training throughput: median {median:.3f} of {len(ratios)} back-to-back pairs "
          f"({', '.join(f'{r:.3f}' for r in ratios)})")
    write_json({"benchmark": "checkouts", "command": "python " + " ".join(sys.argv),
                "machine": machine(__import__("torch").device("cpu")), "texts": args.texts,
                "checkouts": checkouts, "runs": runs, "ratios": ratios, "median_ratio": median,
                "timestamp": time.time()}, args.out)


if __name__ == "__main__":
    main()
