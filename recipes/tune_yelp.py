"""Tune gamma and latent_dim on short Yelp with 100 labels (Optuna, CPU budget).

Budget (so that 8+ trials fit in minutes on 2 CPU cores): the VAE is pretrained on
the 100 labeled texts plus the first --pool-size (20,000) sentences of the
unlabeled pool, for --max-epochs (1) epoch, with embed_dim 64, hidden_dim 128 and
a 10,000-word vocabulary, batches of 64, one torch thread: far smaller than the paper's models, so the accuracies
rank settings under this budget, not the paper's numbers. The score is the
head's accuracy under 5-fold stratified cross-validation repeated 3 times on the
100 labeled texts; the valid and test files are not read.

    python recipes/tune_yelp.py --n-trials 8

The study is a SQLite file in --out, so rerunning the command resumes it. The
best parameters and the trial plot are copied to recipes/figures/.
"""

import argparse
import os
import shutil
import sys

import torch

from ssl_textvae.tuning import save_results, tune
from common import FIGURES, REPO_ROOT, YELP_DATA_DIR, load_pool, load_split


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=str(YELP_DATA_DIR))
    parser.add_argument("--labels", type=int, default=100, choices=[100, 500, 1000, 2000, 10000])
    parser.add_argument("--pool-size", type=int, default=20_000)
    parser.add_argument("--n-trials", type=int, default=8)
    parser.add_argument("--timeout", type=float, help="seconds; stop starting trials after that")
    parser.add_argument("--max-epochs", type=int, default=1)
    parser.add_argument("--random-state", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1 avoids stalls when other jobs share the cores)")
    parser.add_argument("--out", default=str(REPO_ROOT / "results" / "tune_yelp"))
    parser.add_argument("--figures", default=str(FIGURES))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    texts, labels = load_split(args.data_dir, f"train.{args.labels}")
    pool = load_pool(args.data_dir, args.pool_size)
    os.makedirs(args.out, exist_ok=True)
    study = tune(texts, labels, n_trials=args.n_trials,
                 timeout=args.timeout, unlabeled=pool, random_state=args.random_state,
                 storage="sqlite:///" + os.path.join(os.path.abspath(args.out), "study.db"),
                 study_name=f"short-yelp-{args.labels}", model_dir=os.path.join(args.out, "models"),
                 fixed_params={"vae__max_epochs": args.max_epochs, "vae__embed_dim": 64,
                               "vae__hidden_dim": 128, "vae__max_vocab_size": 10_000,
                               "vae__batch_size": 64})
    paths = save_results(study, args.out)
    os.makedirs(args.figures, exist_ok=True)
    stem = f"tune_yelp{args.labels}"
    shutil.copy(paths["best_params"], os.path.join(args.figures, f"{stem}_best_params.json"))
    shutil.copy(paths["plot"], os.path.join(args.figures, f"{stem}_trials.png"))
    print(f"best trial {study.best_trial.number}: accuracy {study.best_value:.4f}, "
          f"{study.best_params}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
