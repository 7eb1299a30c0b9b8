"""Short Yelp with 100 to 10,000 labels: BN-VAE against its baselines, one table and one plot.

Protocol (printed with every run and stored in ``results.json``):

1. Pretrain a BN-VAE (the stored or tuned ``gamma`` and ``latent_dim``) and a plain
   VAE (``gamma = 0``, otherwise identical) once per seed on the unlabeled pool plus
   the texts (not the labels) of the largest labeled subset.
2. For each budget, fit the head on the posterior means of that labeled subset:
   standardization and logistic regression whose ``C`` is chosen by stratified
   cross-validation on the subset itself (``LogisticRegressionCV``).
3. Baselines on the same splits: majority class, and TF-IDF (fitted on the same
   pool plus labeled texts) with the same cross-validated logistic regression.
   Optionally self-training (scikit-learn's ``SelfTrainingClassifier``) on BN-VAE
   means with unlabeled pool sentences, reported as its own row.
   And the BN-VAE's encoder fine-tuned with the labels
   (``FineTunedBNVAEClassifier``: Adam, early stopping on 10% of the subset), its own row.
4. Report test accuracy: mean and standard deviation over seeds. A seed changes
   the VAE pretraining (initialization, batch order, dropout, validation split)
   and the folds that choose ``C``; with one seed no deviation is reported.

Examples
--------
    python recipes/yelp_low_label.py --quick          # under 10 minutes on 2 CPU cores
    python recipes/yelp_low_label.py                  # whole pool, 3 seeds (hours on CPU)
    python recipes/yelp_low_label.py --tune 20        # search gamma / latent_dim first
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.dummy import DummyClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.semi_supervised import SelfTrainingClassifier

import ssl_textvae
from ssl_textvae import SOFTMAXES, BNVAE, BNVAEClassifier, ConcatTexts, FineTunedBNVAEClassifier
from yelp_data import load_pool, load_split

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data" / "short_yelp_li2019"
DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "short_yelp.json"
BUDGETS = (100, 500, 1000, 2000, 10000)
METHOD_LABELS = {
    "majority": "Majority class",
    "tfidf_lr": "TF-IDF + LR",
    "plain_vae_lr": "Plain VAE (gamma 0) + LR",
    "bnvae_lr": "BN-VAE + LR",
    "bnvae_self_training": "BN-VAE + LR, self-training",
    "bnvae_fine_tuned": "BN-VAE, encoder fine-tuned",
}
C_GRID = np.logspace(-3, 3, 7)   # 0.001 ... 1000, the values of C the heads choose from
VAE_OVERRIDES = ("gamma", "latent_dim", "embed_dim", "hidden_dim", "max_epochs", "batch_size", "lr",
                 "softmax")


# -- command line -------------------------------------------------------------------------
def build_parser():
    parser = argparse.ArgumentParser(
        description="Short Yelp low-label recipe: BN-VAE, plain VAE, TF-IDF + LR and majority "
                    "class at 100 to 10,000 labels; writes results.json, results.md and a plot.")
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR),
                        help="folder with short_yelp.{train.N,valid,test,unlabeled}.txt "
                             "(default: %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help="the config's 'quick' budget: a pool subset, 1 epoch, 1 seed")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG),
                        help="stored configuration JSON (default: %(default)s)")
    parser.add_argument("--tune", type=int, default=0, metavar="N_TRIALS",
                        help="tune gamma and latent_dim with ssl_textvae.tuning on the labeled "
                             "validation set first (N_TRIALS trials; 0 uses the stored config)")
    parser.add_argument("--tune-storage", default=None,
                        help="Optuna storage URL for --tune, so a study resumes")
    parser.add_argument("--budgets", type=int, nargs="+", default=list(BUDGETS),
                        help="labeled subset sizes (default: %(default)s)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="VAE pretraining seeds (default: from the config)")
    parser.add_argument("--pool-size", type=int, default=None,
                        help="pretrain on the first N pool sentences (default: from the config; "
                             "the config's null is the whole pool)")
    parser.add_argument("--self-training-size", type=int, default=None,
                        help="unlabeled pool sentences for the self-training row (0 leaves it out)")
    for name in VAE_OVERRIDES:
        kind = {"gamma": float, "lr": float, "softmax": str}.get(name, int)
        parser.add_argument("--" + name.replace("_", "-"), type=kind, default=None,
                            choices=SOFTMAXES if name == "softmax" else None,
                            help=f"override the config's VAE {name}")
    parser.add_argument("--no-fine-tune", dest="fine_tune", action="store_false",
                        help="leave out the row of the BN-VAE encoder fine-tuned with the labels")
    parser.add_argument("--save-vae", action="store_true",
                        help="also save each seed's pretrained BN-VAE (BNVAE.save) under the "
                             "results folder, e.g. for benchmarks/bench_encode.py --model")
    parser.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda' (default: auto)")
    parser.add_argument("--run-name", default=None,
                        help="results go to results/<run-name>/ (default: yelp_low_label_quick "
                             "or yelp_low_label_full)")
    parser.add_argument("--out-dir", default=None, help="write results here instead")
    parser.add_argument("--verbose", type=int, default=1, help="0 silent, 1 progress bars")
    return parser


def resolve_settings(args):
    """The configuration that runs: stored config, then quick budget, then command-line overrides."""
    with open(args.config, encoding="utf-8") as handle:
        config = json.load(handle)
    mode = "quick" if args.quick else "full"
    budget = config.get(mode, {})
    vae = dict(config["vae"])
    vae.update(budget.get("vae", {}))
    vae.update({name: getattr(args, name) for name in VAE_OVERRIDES if getattr(args, name) is not None})
    settings = {
        "mode": mode,
        "config_file": os.path.relpath(args.config, REPO_ROOT) if _inside(args.config, REPO_ROOT)
        else args.config,
        "config_source": config.get("source", "unknown"),
        "vae": vae,
        "pool_size": args.pool_size if args.pool_size is not None else budget.get("pool_size"),
        "seeds": args.seeds if args.seeds is not None else budget.get("seeds", [0]),
        "self_training_size": (args.self_training_size if args.self_training_size is not None
                               else budget.get("self_training_size", 0)),
        "budgets": sorted(set(args.budgets)),
        "fine_tune": args.fine_tune,
    }
    for budget_size in settings["budgets"]:
        if budget_size <= 0:
            raise ValueError(f"Budgets must be positive integers; got {budget_size}.")
    if settings["pool_size"] is not None and settings["pool_size"] < 1:
        raise ValueError(f"--pool-size must be at least 1; got {settings['pool_size']}.")
    return settings


def _inside(path, root):
    try:
        Path(path).resolve().relative_to(root)
        return True
    except ValueError:
        return False


# -- data ---------------------------------------------------------------------------------
def count_tokens(texts):
    """Tokens the decoder predicts: whitespace words plus one end-of-sentence per text."""
    n_texts = n_words = 0
    for text in texts:
        n_texts += 1
        n_words += len(text.split())
    return n_texts, n_words + n_texts


# -- models -------------------------------------------------------------------------------
def make_head(y, seed, scale=True):
    """Logistic regression with C chosen by stratified k-fold CV on the labeled subset:
    standardized dense features (posterior means, lbfgs), or sparse TF-IDF as it is
    (``scale=False``, liblinear, which is several times faster there)."""
    n_splits = int(min(5, np.bincount(y).min()))
    if n_splits < 2:
        raise ValueError("Every class needs at least 2 labeled examples for cross-validating C; "
                         f"got class counts {np.bincount(y).tolist()}.")
    search = LogisticRegressionCV(Cs=C_GRID, cv=StratifiedKFold(n_splits, shuffle=True, random_state=seed),
                                  scoring="accuracy", l1_ratios=(0.0,), use_legacy_attributes=False,
                                  max_iter=2000, solver="lbfgs" if scale else "liblinear")
    return make_pipeline(StandardScaler(), search) if scale else search


def chosen_c(head):
    search = head[-1] if hasattr(head, "steps") else head
    return float(np.ravel(search.C_)[0])


def pretrain(vae_params, gamma, seed, corpus, device, verbose):
    params = dict(vae_params, gamma=gamma)
    start = time.perf_counter()
    vae = BNVAE(**params, device=device, random_state=seed, verbose=verbose).fit(corpus)
    return vae, time.perf_counter() - start


def evaluate_vae(name, vae, seed, splits, test_means, results, unlabeled_means=None,
                 fine_tune=False):
    """Fit one head per budget on a pretrained VAE and record test accuracy."""
    test_texts, y_test = splits["test"]
    for budget in splits["budgets"]:
        texts, y = splits[budget]
        if fine_tune:
            tuned = FineTunedBNVAEClassifier(FrozenEstimator(vae), random_state=seed,
                                             verbose=0).fit(texts, y)
            record(results, "bnvae_fine_tuned", budget, float(tuned.score(test_texts, y_test)),
                   {"best_epoch": tuned.best_epoch_, "epochs": len(tuned.history_)})
        head = make_head(y, seed)
        classifier = BNVAEClassifier(vae=FrozenEstimator(vae), estimator=head).fit(texts, y)
        accuracy = float(classifier.estimator_.score(test_means, y_test))
        record(results, name, budget, accuracy, {"C": chosen_c(classifier.estimator_)})
        if unlabeled_means is not None:
            base = make_pipeline(StandardScaler(), LogisticRegression(
                C=chosen_c(classifier.estimator_), max_iter=2000))
            features = np.vstack([classifier.transform(texts), unlabeled_means])
            targets = np.concatenate([y, np.full(len(unlabeled_means), -1)])
            self_training = SelfTrainingClassifier(base, threshold=0.9, max_iter=10).fit(features, targets)
            record(results, "bnvae_self_training", budget,
                   float(self_training.score(test_means, y_test)),
                   {"pseudo_labeled": int((self_training.labeled_iter_ > 0).sum())})


def record(results, method, budget, accuracy, extra=None):
    entry = results.setdefault(method, {}).setdefault(str(budget), {"accuracies": [], "details": []})
    entry["accuracies"].append(accuracy)
    entry["details"].append(extra or {})


def summarize(results):
    for method in results.values():
        for entry in method.values():
            values = np.asarray(entry["accuracies"]) * 100
            entry["mean"] = float(values.mean())
            entry["std"] = float(values.std(ddof=1)) if len(values) > 1 else None
            entry["n"] = len(values)


# -- reporting ----------------------------------------------------------------------------
def format_cell(entry):
    if entry is None:
        return "—"
    if entry["std"] is None:
        return f"{entry['mean']:.1f}"
    return f"{entry['mean']:.1f} ± {entry['std']:.1f}"


def markdown_report(output):
    settings, results = output["settings"], output["results"]
    budgets = settings["budgets"]
    lines = [
        f"# Short Yelp test accuracy (%) by number of labels ({settings['mode']} run)",
        "",
        "Command: `" + output["command"] + "`",
        "",
        "| method | " + " | ".join(f"{b:,}" for b in budgets) + " |",
        "|---|" + "---:|" * len(budgets),
    ]
    for method, label in METHOD_LABELS.items():
        if method in results:
            cells = [format_cell(results[method].get(str(b))) for b in budgets]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    n_seeds = len(settings["seeds"])
    vae = settings["vae"]
    pool = ("the whole pool" if settings["pool_size"] is None
            else f"the first {settings['pool_size']:,} pool sentences")
    lines += [
        "",
        "What was done:",
        f"- Pretraining: {pool} plus the texts of `train.{max(budgets)}` "
        f"({output['pretraining']['n_texts']:,} texts, {output['pretraining']['n_tokens']:,} tokens), "
        f"{vae['max_epochs']} epoch(s) at most, SGD lr {vae['lr']}, batch {vae['batch_size']}, "
        f"latent {vae['latent_dim']}, embed {vae['embed_dim']}, hidden {vae['hidden_dim']}. "
        f"BN-VAE gamma {vae['gamma']}; plain VAE gamma 0, all else equal. "
        f"Configuration: {output['configuration_origin']}.",
        "- Head: standardized posterior means (mu), logistic regression with C chosen by stratified "
        "5-fold CV on the labeled subset (`LogisticRegressionCV`, C from 0.001 to 1000, 7 values). TF-IDF + LR uses the "
        "same CV on TF-IDF of words and word pairs fitted on the same pretraining texts.",
    ]
    if "bnvae_fine_tuned" in results:
        lines.append("- Fine-tuned: `FineTunedBNVAEClassifier` with its defaults: the BN-VAE's encoder and a "
                     "linear layer on its means (started from a logistic regression on the frozen means), "
                     "trained with Adam (lr 1e-3, no dropout) on the labeled subset; the epoch is picked "
                     "on a stratified 10% of the subset held out for that (early stopping, patience 3).")
    if "bnvae_self_training" in results:
        lines.append(f"- Self-training: scikit-learn `SelfTrainingClassifier` (threshold 0.9, 10 rounds) on "
                     f"BN-VAE means of the labeled subset plus the first "
                     f"{settings['self_training_size']:,} pool sentences, with the C chosen above.")
    lines.append(f"- Seeds: {settings['seeds']} (each seed pretrains both VAEs anew and reshuffles the CV "
                 "folds). " + ("Cells are mean ± standard deviation over seeds." if n_seeds > 1 else
                               "One seed, so no standard deviation is reported."))
    lines.append("- The labeled subsets are nested prefixes of one draw (data_cards/short_yelp.md); "
                 "the pool is a substitute, so numbers are not directly comparable with the paper.")
    timing = output["timing"]
    lines += [
        f"- Wall time {timing['total_seconds']:.0f} s; pretraining "
        f"{timing['pretraining_seconds']:.0f} s at {timing['tokens_per_second']:,.0f} tokens/s "
        f"on {output['environment']['device_description']}.",
    ]
    estimate = output.get("full_run_estimate")
    if estimate and estimate["seconds_at_most"]:
        lines.append(f"- Full run, estimated from this run's rate (not measured): "
                     f"{estimate['seconds_per_epoch'] / 60:.0f} min per epoch over the whole pool, at most "
                     f"{estimate['seconds_at_most'] / 3600:.1f} h of pretraining for "
                     f"{estimate['pretraining_runs']} runs x {estimate['epochs_at_most']} epochs.")
    lines += [
        "",
        f"ssl_textvae {output['ssl_textvae_version']}, {output['timestamp']}.",
    ]
    return "\n".join(lines) + "\n"


def plot(output, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budgets = output["settings"]["budgets"]
    figure, axes = plt.subplots(figsize=(6.4, 4.4))
    for method, label in METHOD_LABELS.items():
        entries = output["results"].get(method)
        if not entries:
            continue
        means = [entries[str(b)]["mean"] for b in budgets]
        errors = [entries[str(b)]["std"] or 0.0 for b in budgets]
        style = "--" if method == "majority" else "-"
        axes.errorbar(budgets, means, yerr=errors, label=label, marker="o", linestyle=style, capsize=3)
    axes.set_xscale("log")
    axes.set_xticks(budgets)
    axes.set_xticklabels([f"{b:,}" for b in budgets])
    axes.set_xlabel("labeled examples")
    axes.set_ylabel("test accuracy (%)")
    axes.set_title(f"Short Yelp ({output['settings']['mode']} run)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def estimate_full_cost(output, data_dir):
    """Pretraining seconds of the full run on this machine, scaled from this run's wall time
    per token and epoch (an estimate: the rate differs with load and corpus)."""
    with open(DEFAULT_CONFIG, encoding="utf-8") as handle:
        config = json.load(handle)
    per_token = output["timing"]["seconds_per_token_epoch"]
    pool_texts, pool_tokens = count_tokens(load_pool(data_dir))
    tokens = pool_tokens + output["pretraining"]["n_tokens_labeled"]
    epochs = config["vae"]["max_epochs"]
    n_runs = 2 * len(config["full"]["seeds"])   # BN-VAE and plain VAE per seed
    return {"corpus_tokens": tokens, "epochs_at_most": epochs, "pretraining_runs": n_runs,
            "seconds_per_epoch": per_token * tokens if per_token else None,
            "seconds_at_most": n_runs * epochs * per_token * tokens if per_token else None,
            "note": "estimate, scaled from this run's measured pretraining wall time per token and "
                    "epoch; heads and evaluation passes not included; early stopping may end sooner"}


# -- main ---------------------------------------------------------------------------------
def main(argv=None):
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    settings = resolve_settings(args)
    run_name = args.run_name or f"yelp_low_label_{settings['mode']}"
    out_dir = Path(args.out_dir) if args.out_dir else REPO_ROOT / "results" / run_name
    arguments = list(sys.argv[1:] if argv is None else argv)
    command = shlex.join(["python", "recipes/yelp_low_label.py", *arguments])

    splits = {"budgets": settings["budgets"], "test": load_split(args.data_dir, "test")}
    for budget in settings["budgets"]:
        splits[budget] = load_split(args.data_dir, f"train.{budget}")
    pool = load_pool(args.data_dir, settings["pool_size"])
    largest_texts = splits[max(settings["budgets"])][0]
    corpus = ConcatTexts(pool, largest_texts)
    n_texts, n_tokens = count_tokens(corpus)
    print(f"Pretraining corpus: {n_texts:,} texts ({n_tokens:,} tokens); test: "
          f"{len(splits['test'][0]):,}; budgets {settings['budgets']}; seeds {settings['seeds']}.")

    origin = f"stored ({settings['config_file']}, source: {settings['config_source']})"
    tuning = None
    if args.tune:
        tuning = run_tuning(args, settings, pool)
        origin = f"tuned here with {args.tune} trials on the labeled validation set"
    print(f"Configuration: {origin}; VAE parameters {settings['vae']}.")

    results, timing, histories = {}, {"pretraining_seconds": 0.0, "training_seconds": 0.0,
                                         "trained_tokens": 0.0, "epochs": 0}, {}
    test_texts, y_test = splits["test"]
    for budget in settings["budgets"]:
        y = splits[budget][1]
        majority = DummyClassifier(strategy="most_frequent").fit(np.zeros((len(y), 1)), y)
        for _ in settings["seeds"]:
            record(results, "majority", budget, float(majority.score(np.zeros((len(y_test), 1)), y_test)))

    vectorizer = TfidfVectorizer(token_pattern=r"\S+", ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    vectorizer.fit(corpus)
    test_tfidf = vectorizer.transform(test_texts)
    for seed in settings["seeds"]:
        for budget in settings["budgets"]:
            texts, y = splits[budget]
            head = make_head(y, seed, scale=False).fit(vectorizer.transform(texts), y)
            record(results, "tfidf_lr", budget, float(head.score(test_tfidf, y_test)), {"C": chosen_c(head)})
    print("Baselines done: " + ", ".join(
        f"{b}: TF-IDF {np.mean(results['tfidf_lr'][str(b)]['accuracies']) * 100:.1f}"
        for b in settings["budgets"]))

    unlabeled_for_self_training = None
    if settings["self_training_size"]:
        unlabeled_for_self_training = load_pool(args.data_dir, settings["self_training_size"])
    for seed in settings["seeds"]:
        for name, gamma in (("bnvae_lr", settings["vae"]["gamma"]), ("plain_vae_lr", 0.0)):
            print(f"Pretraining {METHOD_LABELS[name]} (gamma {gamma}), seed {seed} ...")
            vae, seconds = pretrain(settings["vae"], gamma, seed, corpus, args.device, args.verbose)
            timing["pretraining_seconds"] += seconds
            timing["epochs"] += len(vae.history_)
            timing["training_seconds"] += sum(epoch["seconds"] for epoch in vae.history_)
            timing["trained_tokens"] += sum(epoch["seconds"] * epoch["tokens_per_second"]
                                            for epoch in vae.history_)
            histories[f"{name}_seed{seed}"] = vae.history_
            test_means = vae.transform(test_texts)
            unlabeled_means = None
            if name == "bnvae_lr" and unlabeled_for_self_training is not None:
                unlabeled_means = vae.transform(unlabeled_for_self_training)
            evaluate_vae(name, vae, seed, splits, test_means, results, unlabeled_means,
                         fine_tune=settings["fine_tune"] and name == "bnvae_lr")
            if args.save_vae and name == "bnvae_lr":
                vae.save(out_dir / f"bnvae_seed{seed}")
            print("  " + ", ".join(f"{b}: {results[name][str(b)]['accuracies'][-1] * 100:.1f}"
                                   for b in settings["budgets"]))
    summarize(results)

    timing["total_seconds"] = time.perf_counter() - start
    timing["tokens_per_second"] = (timing["trained_tokens"] / timing["training_seconds"]
                                   if timing["training_seconds"] else None)
    # Wall seconds of pretraining (training, validation, recalibration) per corpus token and epoch.
    timing["seconds_per_token_epoch"] = (timing["pretraining_seconds"] / (n_tokens * timing["epochs"])
                                         if timing["epochs"] else None)
    output = {
        "recipe": "yelp_low_label",
        "command": command,
        "argv": ["recipes/yelp_low_label.py", *arguments],
        "ssl_textvae_version": ssl_textvae.__version__,
        "timestamp": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "data_dir": str(args.data_dir),
        "settings": settings,
        "configuration_origin": origin,
        "tuning": tuning,
        "head": ("StandardScaler + LogisticRegressionCV(C in 1e-3..1e3, 7 values, stratified 5-fold, accuracy, lbfgs) "
                 "on mu; TF-IDF: the same CV with liblinear"),
        "pretraining": {"n_texts": n_texts, "n_tokens": n_tokens,
                        "n_tokens_labeled": count_tokens(largest_texts)[1], "histories": histories},
        "results": results,
        "timing": timing,
        "environment": environment(args.device),
    }
    if settings["mode"] == "quick" and settings["pool_size"] is not None:
        output["full_run_estimate"] = estimate_full_cost(output, args.data_dir)

    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "results.json", "w", encoding="utf-8") as handle:
        json.dump(output, handle, indent=2)
    report = markdown_report(output)
    (out_dir / "results.md").write_text(report, encoding="utf-8")
    plot(output, out_dir / "accuracy_vs_labels.png")
    print()
    print(report)
    print(f"Wrote {out_dir / 'results.json'}, results.md and accuracy_vs_labels.png.")
    return output


def run_tuning(args, settings, pool):
    try:
        from ssl_textvae.tuning import tune
    except ImportError as error:
        raise SystemExit("--tune needs ssl_textvae.tuning (and optuna), which could not be imported "
                         f"({error}). Install optuna, or run without --tune to use the stored "
                         "configuration.") from None
    texts, y = load_split(args.data_dir, "valid")
    fixed = {f"vae__{k}": v for k, v in settings["vae"].items() if k not in ("gamma", "latent_dim")}
    study = tune(texts, y, n_trials=args.tune, storage=args.tune_storage, study_name="short_yelp",
                 random_state=0, fixed_params=fixed, unlabeled=pool)
    best = dict(study.best_params)   # vae__gamma, vae__latent_dim: BNVAEClassifier's names
    settings["vae"].update({k[len("vae__"):]: v for k, v in best.items()
                            if k in ("vae__gamma", "vae__latent_dim")})
    return {"n_trials": args.tune, "best_params": best, "best_value": float(study.best_value),
            "labeled_data": "short_yelp.valid.txt"}


def environment(device):
    import torch

    cuda = torch.cuda.is_available() and device != "cpu"
    description = (torch.cuda.get_device_name(0) if cuda
                   else f"CPU ({os.cpu_count()} cores visible, torch threads: {torch.get_num_threads()})")
    return {"python": platform.python_version(), "torch": torch.__version__,
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "platform": platform.platform(), "device_description": description}


if __name__ == "__main__":
    main()
