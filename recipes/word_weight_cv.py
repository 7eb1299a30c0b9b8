"""How much word features add to the latent means, by cross-validation on the labeled rows only.

For each data set of ``few_label_benchmark.py`` (its ``make_splits.py`` folders) and each label
budget: repeated stratified k-fold accuracy (k = min(5, smallest class), 2 repeats; classes with
one label left out, as in tuning) of a logistic-regression head on

- the means alone (``word_weight=0``, the paper's head),
- the means beside TF-IDF word features at each ``--weights`` value (``BNVAEClassifier(word_weight=w)``
  fitted on each fold's labeled rows and the pool as -1 rows: its TF-IDF fitted on both, the means
  standardized on the fold's labeled rows),
- the TF-IDF words alone (fitted on the fold's labeled rows),

at each C of ``--Cs``. The VAE is the default one ``few_label_benchmark.py --vae-dir DIR`` kept for
the set; no test text is read. ``word_weight=2`` and the tuned study's first head trials were
picked by this comparison on a smaller grid (weights up to 2, C up to 100) before the script
existed; its committed run, on this wider grid, puts weight 4 ahead on banking77
(``recipes/README.md``)::

    python recipes/word_weight_cv.py --vae-dir ~/runs/few_label_vaes --sets banking77 snips
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import RepeatedStratifiedKFold
from sklearn.pipeline import make_pipeline

from ssl_textvae import BNVAE, BNVAEClassifier
from common import (DATA_DIR, FEW_LABEL_SETS, FIGURES, command_line, in_shared_classes, load_set, tfidf_vectorizer,
                    vae_path, write_json)


def scorable(texts, y):
    """The labeled rows of classes with 2 labels or more (cross-validation needs 2)."""
    texts, y = np.asarray(texts, dtype=object), np.asarray(y)
    keep = in_shared_classes(y)
    return list(texts[keep]), y[keep]


def cv_table(vae, pool, texts, y, weights, Cs, seed):
    """{feature name: {C: mean cross-validated accuracy (%)}} on ``texts``: each fold fits
    ``BNVAEClassifier`` on its labeled rows plus the pool as -1 rows (the TF-IDF is fitted on
    both, as a saved model's is); the words alone are TF-IDF + logistic regression."""
    texts, y = scorable(texts, y)
    k = max(2, min(5, int(np.unique(y, return_counts=True)[1].min())))
    folds = list(RepeatedStratifiedKFold(n_splits=k, n_repeats=2, random_state=seed).split(texts, y))
    frozen = FrozenEstimator(vae)
    models = {   # name: (model for C, whether the pool joins each fold as -1 rows)
        "means": (lambda C: BNVAEClassifier(vae=frozen, estimator=LogisticRegression(C=C, max_iter=2000)), True),
        "words": (lambda C: make_pipeline(tfidf_vectorizer(), LogisticRegression(C=C, max_iter=2000)), False)}
    for weight in weights:
        models[f"means + words x{weight:g}"] = (lambda C, weight=weight: BNVAEClassifier(
            vae=frozen, word_weight=weight, estimator=LogisticRegression(C=C, max_iter=2000)), True)
    table = {}
    with warnings.catch_warnings():   # lbfgs at large C on a few labels: convergence warnings
        warnings.simplefilter("ignore")
        for name, (build, with_pool) in models.items():
            table[name] = {f"{C:g}": round(100 * np.mean([
                fold_score(build(C), texts, y, train, test, pool if with_pool else [])
                for train, test in folds]), 2) for C in Cs}
    return table, {"n_scored": len(y), "folds": k}


def fold_score(model, texts, y, train, test, pool):
    """Accuracy on the ``test`` rows of ``model`` fitted on the ``train`` rows and ``pool`` (-1)."""
    pool = list(pool)
    unlabeled = "-1" if isinstance(y[0], str) else -1
    model.fit([texts[i] for i in train] + pool, list(y[train]) + [unlabeled] * len(pool))
    return model.score([texts[i] for i in test], y[test])


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vae-dir", required=True,
                        help="where few_label_benchmark.py --vae-dir kept <set>-seed<S>")
    parser.add_argument("--data-dir", default=str(DATA_DIR))
    parser.add_argument("--sets", nargs="+", default=list(FEW_LABEL_SETS),
                        help=f"default: {' '.join(FEW_LABEL_SETS)}")
    parser.add_argument("--budgets", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--weights", type=float, nargs="+", default=[0.5, 1.0, 2.0, 4.0])
    parser.add_argument("--Cs", type=float, nargs="+", default=[0.1, 1.0, 10.0, 100.0, 1000.0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-prefix", default=str(FIGURES / "word_weight_cv"))
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    command = command_line("word_weight_cv.py", argv)
    result = {"command": command, "seed": args.seed, "tables": {}}
    lines = ["# Cross-validated accuracy (%) on the labeled rows: means, words, both", "",
             f"Command: `{command}`. Rows: head features; columns: C of the logistic regression.", ""]
    for name in args.sets:
        path = vae_path(args.vae_dir, name, args.seed)
        if not (path / "config.json").is_file():
            raise SystemExit(f"No VAE in {path}: run few_label_benchmark.py --vae-dir {args.vae_dir} "
                             f"--sets {name} first.")
        vae = BNVAE.load(path)
        vae.set_params(verbose=0)
        data = load_set(args.data_dir, name, args.budgets, test=False)
        for budget in args.budgets:
            table, facts = cv_table(vae, data["pool"], *data[budget], args.weights, args.Cs, args.seed)
            result["tables"][f"{name}/{budget}"] = {**facts, "accuracy": table}
            Cs = list(next(iter(table.values())))
            lines += [f"## {name}, {budget} labels ({facts['n_scored']} scored, {facts['folds']}-fold x 2)", "",
                      "| features | " + " | ".join(f"C={c}" for c in Cs) + " |",
                      "|---|" + "---:|" * len(Cs)]
            lines += [f"| {feature} | " + " | ".join(f"{v:.1f}" for v in row.values()) + " |"
                      for feature, row in table.items()]
            lines.append("")
            print("\n".join(lines[-len(table) - 4:]), flush=True)
    prefix = Path(args.out_prefix)
    write_json(prefix.with_suffix(".json"), result)
    prefix.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
