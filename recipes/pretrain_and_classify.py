"""Pretrain a BN-VAE once on the short-Yelp pool, then classify with 100 and 10k labels.

The check of the core package: test accuracy of a logistic regression on the latent
means, next to the majority class and the same head on an untrained model's means.

    python recipes/pretrain_and_classify.py --data-dir ../shared/data/short_yelp_li2019

Writes results/pretrain_and_classify/results.json (figures, parameters, command line).
"""

import argparse
import json
import os
import sys
import time

import numpy as np
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression

from ssl_textvae import BNVAE, BNVAEClassifier, __version__
from yelp_data import load_pool, load_split


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="../shared/data/short_yelp_li2019")
    parser.add_argument("--out", default="results/pretrain_and_classify")
    parser.add_argument("--budgets", type=int, nargs="+", default=[100, 10000])
    parser.add_argument("--pool-size", type=int, default=None,
                        help="use the first N pool sentences (default: all 175,606)")
    parser.add_argument("--max-epochs", type=int, default=2)
    parser.add_argument("--gamma", type=float, default=0.7)
    parser.add_argument("--latent-dim", type=int, default=32)
    parser.add_argument("--random-state", type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    pool = load_pool(args.data_dir, args.pool_size or None)
    test_texts, test_labels = load_split(args.data_dir, "test")
    params = dict(gamma=args.gamma, latent_dim=args.latent_dim, random_state=args.random_state)

    start = time.perf_counter()
    # A checkpoint per epoch: rerunning the same command after an interruption resumes.
    vae = BNVAE(max_epochs=args.max_epochs, checkpoint_dir=os.path.join(args.out, "checkpoint"),
                **params).fit(pool)
    pretrain_seconds = time.perf_counter() - start
    untrained = BNVAE(max_epochs=0, verbose=0, **params).fit(pool)

    head = LogisticRegression(max_iter=2000)
    majority = float(np.mean(test_labels == np.bincount(test_labels).argmax()))
    rows = []
    for budget in args.budgets:
        texts, labels = load_split(args.data_dir, f"train.{budget}")
        row = {"labels": budget, "majority": majority}
        for name, model in (("bnvae", vae), ("untrained", untrained)):
            classifier = BNVAEClassifier(vae=FrozenEstimator(model), estimator=head).fit(texts, labels)
            row[name] = classifier.score(test_texts, test_labels)
        rows.append(row)
        print(f"{budget:>6} labels: BN-VAE {row['bnvae']:.2%}, untrained {row['untrained']:.2%}, "
              f"majority {majority:.2%}")

    last = vae.history_[-1]
    report = {"rows": rows, "pretrain_seconds": pretrain_seconds, "history": vae.history_,
              "valid_kl": last["valid_kl"], "valid_active_units": last["valid_active_units"],
              "kl_bound": args.latent_dim * args.gamma**2 / 2, "params": vae.get_params(),
              "head": repr(head), "ssl_textvae_version": __version__, "command": sys.argv}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as handle:
        json.dump(report, handle, indent=2, default=str)
    print(f"pretraining {pretrain_seconds:.0f}s; valid KL {last['valid_kl']:.2f} "
          f"(bound {report['kl_bound']:.2f}), active units {last['valid_active_units']}")
    return report


if __name__ == "__main__":
    main()
