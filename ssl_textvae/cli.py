"""The ``ssl-textvae`` command line, a thin layer over the public API.

Each subcommand has one function that adds its parser and one that runs it.
"""

from __future__ import annotations

import argparse
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
    return results


def build_parser():
    parser = argparse.ArgumentParser(prog="ssl-textvae", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    add_evaluate_parser(subparsers)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    args.run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
