"""Pretraining throughput with the adaptive softmax (``softmax="adaptive"``, off by
default) against the paper's full softmax, on the short-Yelp pool.

The two are different models, so this times them only; `recipes/README.md`
compares the classifiers they give. Both run the package's default training path
(BN-VAE, gamma 0.7, default precision) in many short back-to-back pairs,
alternating which goes first, since the machine's speed drifts over seconds.

    python benchmarks/bench_softmax.py            # about 3 minutes on 2 cores
    python benchmarks/bench_softmax.py --quick    # a smoke test
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks._common import (RESULTS_DIR, add_common_arguments, add_model_arguments,  # noqa: E402
                                load_pool_corpus, machine, print_table, setup, write_json)
from benchmarks.bench_pretrain import Run  # noqa: E402
from ssl_textvae.nn.model import SOFTMAXES, adaptive_cutoffs  # noqa: E402
from ssl_textvae.runtime.devices import resolve_precision  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    add_model_arguments(parser)
    parser.add_argument("--pairs", type=int, default=20, help="back-to-back pairs")
    parser.add_argument("--steps", type=int, default=30, help="training steps per run of a pair")
    parser.add_argument("--warmup-steps", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="tiny run to check the script works")
    args = parser.parse_args(argv)
    if args.quick:
        args.pairs, args.steps, args.warmup_steps = 2, 3, 2
    return args


def main(argv=None):
    args = parse_args(argv)
    device = setup(args)
    started = time.time()
    corpus, vocab_size = load_pool_corpus(args.data_dir)
    precision = resolve_precision(device, "auto")
    info = machine(device)
    cutoffs = adaptive_cutoffs(vocab_size)
    head_share = float(np.mean(corpus.ids < cutoffs[0]))   # word ids are in order of frequency
    print(f"{info['cpu']} ({info.get('gpu', 'no GPU')}), {args.threads} threads; vocabulary "
          f"{vocab_size:,}, adaptive cutoffs {cutoffs} (the head holds {head_share:.1%} of the "
          f"pool's words); precision {precision}")

    runs = {softmax: Run(corpus, vocab_size, args, device, 0.7, precision, seed=0, softmax=softmax)
            for softmax in SOFTMAXES}
    for run in runs.values():
        run.train(args.warmup_steps)
    samples = {softmax: [] for softmax in runs}
    for pair in range(args.pairs):
        for softmax in (SOFTMAXES if pair % 2 == 0 else SOFTMAXES[::-1]):
            samples[softmax].append(runs[softmax].train(args.steps)["tokens_per_second"])
        print(f"  pair {pair + 1}/{args.pairs}: " + ", ".join(
            f"{softmax} {values[-1]:,.0f}" for softmax, values in samples.items()), flush=True)
    ratios = [a / f for a, f in zip(samples["adaptive"], samples["full"])]
    quartiles = np.percentile(ratios, [25, 50, 75])
    print()
    print_table([[softmax, f"{statistics.median(values):,.0f}", f"{min(values):,.0f}-{max(values):,.0f}",
                  f"{corpus.n_tokens() / statistics.median(values):.0f}"]
                 for softmax, values in samples.items()],
                ["softmax", "tokens/s (median)", "range", "s/epoch over the pool"])
    print(f"\nadaptive / full: {quartiles[1]:.2f} median of {args.pairs} pairs "
          f"(quartiles {quartiles[0]:.2f}, {quartiles[2]:.2f})")

    out = args.out or os.path.join(RESULTS_DIR, f"softmax_{device.type}.json")
    write_json({"benchmark": "softmax", "command": "python " + " ".join(sys.argv), "machine": info,
                "seconds": time.time() - started, "precision": precision,
                "config": {"embed_dim": args.embed_dim, "hidden_dim": args.hidden_dim,
                           "latent_dim": args.latent_dim, "batch_size": args.batch_size,
                           "vocab_size": vocab_size, "adaptive_cutoffs": cutoffs,
                           "head_share_of_words": head_share,
                           "pairs": args.pairs, "steps": args.steps},
                "samples": samples,
                "median_tokens_per_second": {k: statistics.median(v) for k, v in samples.items()},
                "adaptive_over_full": {"median": float(quartiles[1]), "per_pair": ratios,
                                       "quartiles": [float(quartiles[0]), float(quartiles[2])]}}, out)


if __name__ == "__main__":
    main()
