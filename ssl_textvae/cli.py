"""Command line over the public API: ``ssl-textvae <command> ...``.

Each command adds its parser in its own ``_add_<command>_parser`` function and
runs in ``_run_<command>``; ``main`` only dispatches.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys


def add_evaluate_parser(subparsers):
    parser = subparsers.add_parser(
        "evaluate", help="language-model metrics of a saved model on a text file",
        description="Negative ELBO, reconstruction, KL, importance-weighted NLL and perplexity, "
                    "mutual information, active units and KL per dimension of a saved BNVAE "
                    "or BNVAEClassifier on TEXT_FILE. Prints a table.")
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="a directory written by save()")
    parser.add_argument("text_file", metavar="TEXT_FILE",
                        help="one text a line, or label<TAB>text lines with --labeled")
    parser.add_argument("--labeled", action="store_true",
                        help="lines are label<TAB>text (the label is ignored)")
    parser.add_argument("-k", "--n-importance-samples", type=int, default=500,
                        help="samples of the importance-weighted NLL (default: 500)")
    parser.add_argument("--max-texts", type=int, default=None,
                        help="evaluate the first N texts only")
    parser.add_argument("--random-state", type=int, default=0, help="seed of the z samples")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    parser.set_defaults(run=run_evaluate)


def run_evaluate(args):
    from .data import TextFile
    from .estimator import BNVAE, BNVAEClassifier
    from .persistence import CONFIG

    if args.n_importance_samples < 1:
        raise SystemExit(f"error: -k must be >= 1, got {args.n_importance_samples}.")
    config_path = os.path.join(args.model_dir, CONFIG)
    if not os.path.isfile(config_path):
        raise SystemExit(f"error: {config_path!r} not found; MODEL_DIR must be written by save().")
    with open(config_path, encoding="utf-8") as handle:
        kind = json.load(handle).get("class")
    model = BNVAEClassifier.load(args.model_dir).vae_ if kind == "BNVAEClassifier" else \
        BNVAE.load(args.model_dir)
    texts = [text for text in TextFile(args.text_file, labeled=args.labeled) if text.strip()]
    if args.max_texts is not None:
        texts = texts[:args.max_texts]
    results = model.evaluate(texts, n_importance_samples=args.n_importance_samples,
                             random_state=args.random_state, verbose=1)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)
    return 0


def read_training_file(path, encoding="utf-8"):
    """Texts and string labels of a training file: ``label<TAB>text`` per line; a
    line without a tab, or with label -1, is an unlabeled text (label "-1")."""
    texts, labels = [], []
    with open(path, encoding=encoding) as handle:
        for line in handle:
            line = line.rstrip("\n")
            if not line.strip():
                continue
            label, text = line.split("\t", 1) if "\t" in line else ("-1", line)
            texts.append(text)
            labels.append(label.strip() or "-1")
    if not texts:
        raise ValueError(f"{path} holds no texts; expected 'label<TAB>text' lines.")
    return texts, labels


def _add_tune_parser(subparsers):
    parser = subparsers.add_parser(
        "tune", help="tune gamma and latent_dim with Optuna (cross-validation on labeled rows)",
        description="Tune gamma and latent_dim (optionally the head's C) with Optuna. The score "
                    "is the head's accuracy under repeated stratified cross-validation on the "
                    "labeled rows of --train; never pass the test set. The study lives in "
                    "--storage (a SQLite file in --out by default), so rerunning the same "
                    "command resumes it; pretrained VAEs are kept in --out/models.")
    parser.add_argument("--train", required=True,
                        help="training file, 'label<TAB>text' per line; label -1 or no tab = unlabeled")
    parser.add_argument("--unlabeled", help="more pretraining texts, one per line")
    parser.add_argument("--max-unlabeled", type=int,
                        help="use only the first N lines of --unlabeled (a smaller budget)")
    parser.add_argument("--out", default="results/tune",
                        help="output folder: study.db, models/, best_params.json, trials.png")
    parser.add_argument("--storage", help="Optuna RDB URL (default: sqlite:///<out>/study.db); a "
                                          "PostgreSQL URL lets several workers share the study")
    parser.add_argument("--study-name", default="ssl-textvae", help="name of the study in the storage")
    parser.add_argument("--n-trials", type=int, default=20,
                        help="finished trials the study should hold (a resumed study runs the rest)")
    parser.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    parser.add_argument("--gamma-range", type=float, nargs=2, default=[0.1, 1.5],
                        metavar=("LOW", "HIGH"))
    parser.add_argument("--latent-dims", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--tune-head", action="store_true",
                        help="also tune the LogisticRegression head's C (estimator__C)")
    parser.add_argument("--max-epochs", type=int, default=5)
    parser.add_argument("--embed-dim", type=int, default=128)
    parser.add_argument("--hidden-dim", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-vocab-size", type=int)
    parser.add_argument("--cv-splits", type=int, default=5)
    parser.add_argument("--cv-repeats", type=int, default=3)
    parser.add_argument("--random-state", type=int, default=0)
    parser.add_argument("--heartbeat-interval", type=int, default=30,
                        help="seconds; a trial silent for twice as long is marked failed")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.set_defaults(run=_run_tune)


def _run_tune(args):
    from .data import TextFile
    from .tuning import default_search_space, save_results, tune

    texts, labels = read_training_file(args.train)
    unlabeled = None
    if args.unlabeled:
        unlabeled = TextFile(args.unlabeled)
        if args.max_unlabeled is not None:
            unlabeled = list(itertools.islice(unlabeled, args.max_unlabeled))
    os.makedirs(args.out, exist_ok=True)
    storage = args.storage or "sqlite:///" + os.path.abspath(os.path.join(args.out, "study.db"))
    fixed = {"max_epochs": args.max_epochs, "embed_dim": args.embed_dim,
             "hidden_dim": args.hidden_dim, "batch_size": args.batch_size}
    if args.max_vocab_size is not None:
        fixed["max_vocab_size"] = args.max_vocab_size
    space = default_search_space(head=args.tune_head, gamma_range=args.gamma_range,
                                 latent_dims=args.latent_dims)
    study = tune(texts, labels, n_trials=args.n_trials, timeout=args.timeout, storage=storage,
                 study_name=args.study_name, search_space=space, fixed_params=fixed,
                 unlabeled=unlabeled, cv_splits=args.cv_splits, cv_repeats=args.cv_repeats,
                 random_state=args.random_state, model_dir=os.path.join(args.out, "models"),
                 heartbeat_interval=args.heartbeat_interval, verbose=0 if args.quiet else 1)
    paths = save_results(study, args.out)
    best = study.best_trial
    print(json.dumps({"best_trial": best.number, "best_value": best.value,
                      "best_params": best.params, "files": paths}, indent=2))
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="ssl-textvae",
                                     description="Semi-supervised text classification with BN-VAE.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_evaluate_parser(subparsers)
    _add_tune_parser(subparsers)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, TypeError, ImportError, OSError) as error:
        print(f"ssl-textvae {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
