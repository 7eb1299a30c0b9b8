"""One process against N: the same BN-VAE pretraining on short Yelp, through ``ssl-textvae
pretrain`` as it is and under ``torchrun --nproc-per-node N``, then the same checks on both.

For each seed, the paper's model (``PAPER_VAE`` of ``recipes/common.py``: latent 32, gamma 0.7,
SGD, global batch 32) is pretrained on the first ``--max-texts`` pool sentences for ``--epochs``
epochs, once in one process (the package's fast CPU path) and once in N gloo processes of
batch 32 / N each. Reported per run: wall time, the validation KL against the bound
latent_dim * gamma^2 / 2, active units, and the validation accuracy (never test) of a logistic
regression on the frozen means at 100 and 1,000 labels (C by cross-validation on the labels).
The difference between one and N processes is set against the spread across seeds.

    python recipes/yelp_distributed.py                       # 2 seeds, 20,000 sentences, 1 epoch
    python recipes/yelp_distributed.py --seeds 0 1 2 --max-texts 50000 --epochs 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.frozen import FrozenEstimator

from ssl_textvae import BNVAE, BNVAEClassifier
from common import (FIGURES, PAPER_VAE, YELP_DATA_DIR, YELP_POOL, command_line, cv_head, load_yelp, write_json,
                    write_markdown)

BUDGETS = (100, 1000)


def pretrain_command(processes, pool, out, seed, args, launcher="torchrun"):
    params = {**PAPER_VAE, "max_epochs": args.epochs, "random_state": seed, "verbose": 0}
    tail = ["pretrain", "--texts", str(pool), "--out", str(out), "--max-texts", str(args.max_texts)]
    tail += [arg for name, value in params.items() for arg in ("--param", f"{name}={value}")]
    if launcher == "plain":
        return [sys.executable, "-m", "ssl_textvae.cli", *tail]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
            "-m", "ssl_textvae.cli", *tail]


def run(launcher, processes, seed, args, workdir):
    out = Path(workdir) / f"seed{seed}_{launcher}{processes}"
    command = pretrain_command(processes, Path(args.data_dir) / YELP_POOL, out, seed, args, launcher)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env)
    return BNVAE.load(out), time.perf_counter() - start


def check(vae, data, seed):
    record = vae.history_[-1]
    bound = vae.latent_dim * vae.gamma ** 2 / 2
    result = {"valid_kl": record["valid_kl"], "kl_bound": bound,
              "active_units": record["valid_active_units"], "accuracy": {}}
    valid_texts, y_valid = data["valid"]
    valid_means = vae.transform(valid_texts)
    for budget in BUDGETS:
        texts, y = data[budget]
        head = BNVAEClassifier(vae=FrozenEstimator(vae), estimator=cv_head(y, seed)).fit(texts, y)
        result["accuracy"][str(budget)] = round(100 * head.estimator_.score(valid_means, y_valid), 2)
    return result


def comparison_report(results, args, command):
    lines = ["# One process against several: short-Yelp pretraining (validation, never test)", "",
             f"Command: `{command}`. The paper's model, {args.max_texts:,} pool sentences, "
             f"{args.epochs} epoch(s), global batch 32, one thread a process. `plain`: "
             "`ssl-textvae pretrain` in one process (the package's fast CPU update, `ClippedSGD`); "
             "`torchrun N`: the same command under torchrun (DDP, torch's own clipping and SGD step).", "",
             "| seed | run | wall s | validation KL (bound) | active units | "
             + " | ".join(f"frozen LR @ {b}" for b in BUDGETS) + " |",
             "|---|---|---:|---:|---:|" + "---:|" * len(BUDGETS)]
    for row in results:
        lines.append(f"| {row['seed']} | {row['launcher']} {row['processes']} | {row['seconds']:.0f} | "
                     f"{row['valid_kl']:.2f} ({row['kl_bound']:.2f}) | {row['active_units']} | "
                     + " | ".join(f"{row['accuracy'][str(b)]:.2f}" for b in BUDGETS) + " |")
    lines.append("")
    plain = [r for r in results if r["launcher"] == "plain"]
    for budget in BUDGETS:
        one = [r["accuracy"][str(budget)] for r in plain]
        parts = []
        for n in args.processes:
            many = [r["accuracy"][str(budget)] for r in results if r["launcher"] == "torchrun" and r["processes"] == n]
            parts.append(f"{np.mean(many):.2f} under torchrun {n} ({np.mean(many) - np.mean(one):+.2f})")
        lines.append(f"- {budget} labels: mean {np.mean(one):.2f} plain, " + ", ".join(parts)
                     + f"; spread of the plain run across seeds {np.ptp(one):.2f} points (max - min).")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=str(YELP_DATA_DIR))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--processes", type=int, nargs="+", default=[2],
                        help="process counts run under torchrun, each against the plain one-process run")
    parser.add_argument("--max-texts", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--out-prefix", default=str(FIGURES / "yelp_distributed"))
    args = parser.parse_args(argv)
    command = command_line("yelp_distributed.py", argv)
    data = load_yelp(args.data_dir, BUDGETS, splits=("valid",))
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for seed in args.seeds:
            for launcher, processes in [("plain", 1)] + [("torchrun", n) for n in args.processes]:
                vae, seconds = run(launcher, processes, seed, args, workdir)
                row = {"seed": seed, "launcher": launcher, "processes": processes, "seconds": seconds,
                       **check(vae, data, seed)}
                print(json.dumps(row), flush=True)
                results.append(row)
    payload = {"command": command, "settings": {**PAPER_VAE, "max_texts": args.max_texts, "epochs": args.epochs},
               "runs": results}
    write_json(args.out_prefix + ".json", payload)
    write_markdown(args.out_prefix + ".md", comparison_report(results, args, command).splitlines())


if __name__ == "__main__":
    main()
