"""CVAE, CVAE (BOW) and BN-CVAE on DailyDialog under one budget (Zhu et al., ACL 2020,
section 5.2, with DailyDialog standing in for Switchboard).

    python recipes/dailydialog_bncvae.py --quick          # a few minutes on 2 CPU cores
    python recipes/dailydialog_bncvae.py --train-pairs 16000 --max-epochs 4 --run-name ...

Validation and test dialogues that repeat a training dialogue line for line are dropped
(the data README lists 69 and 93). The epoch of each model is chosen on validation pairs;
the test split is only scored. Writes results/<run>/results.json, results.md (the table),
kl_per_epoch.png and samples.md (sampled responses for a few test contexts), each with
the command line.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time

import numpy as np

from ssl_textvae import BNCVAE, __version__
from ssl_textvae.dialogue import dialogue_pairs, fit_word_vectors

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.join(HERE, "..", "..", "shared", "data", "dailydialog_li2017")
MODELS = {"CVAE": dict(gamma=0.0, bow=False), "CVAE (BOW)": dict(gamma=0.0, bow=True),
          "BN-CVAE": dict(bow=False)}
QUICK = dict(train_pairs=4000, valid_pairs=400, test_pairs=1000, test_contexts=100, max_epochs=2,
             embed_dim=64, utterance_dim=64, context_dim=128, decoder_dim=128, latent_dim=16)


def read_split(data_dir, split):
    """Dialogues of a split, each its raw line and its list of turns."""
    with open(os.path.join(data_dir, f"dialogues_{split}.txt"), encoding="utf-8") as handle:
        lines = [line.rstrip("\n") for line in handle]
    return [(line, [t.strip() for t in line.split("__eou__")[:-1] if t.strip()]) for line in lines]


def load_data(data_dir, max_context, rng, train_pairs, valid_pairs, test_pairs, test_contexts):
    train = read_split(data_dir, "train")
    seen = {line for line, _ in train}
    splits, dropped = {}, {}
    for split in ("validation", "test"):
        dialogues = read_split(data_dir, split)
        kept = [turns for line, turns in dialogues if line not in seen]
        dropped[split] = len(dialogues) - len(kept)
        splits[split] = dialogue_pairs(kept, max_context)
    splits["train"] = dialogue_pairs([turns for _, turns in train], max_context)

    def sample(pairs, n):
        if not n or n >= len(pairs[1]):
            return pairs
        index = np.sort(rng.choice(len(pairs[1]), n, replace=False))
        return [pairs[0][i] for i in index], [pairs[1][i] for i in index]

    data = {"train": sample(splits["train"], train_pairs), "validation": sample(splits["validation"], valid_pairs),
            "test": sample(splits["test"], test_pairs)}
    data["test_generation"] = sample(data["test"], test_contexts)
    counts = {name: len(pairs[1]) for name, pairs in data.items()}
    counts.update({f"all_{name}": len(pairs[1]) for name, pairs in splits.items()})
    return data, dropped, counts, [u for _, turns in train for u in turns]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=DEFAULT_DATA)
    parser.add_argument("--quick", action="store_true", help="a few minutes on 2 CPU cores: " + str(QUICK))
    parser.add_argument("--run-name", default=None)
    parser.add_argument("--out-dir", default=None, help="default: results/<run-name>")
    parser.add_argument("--train-pairs", type=int, default=0, help="training pairs sampled (0: all)")
    parser.add_argument("--valid-pairs", type=int, default=2000, help="validation pairs for epoch selection")
    parser.add_argument("--test-pairs", type=int, default=0, help="test pairs for likelihood (0: all)")
    parser.add_argument("--test-contexts", type=int, default=500, help="test contexts for sampled responses")
    parser.add_argument("--n-samples", type=int, default=5, help="responses sampled per test context")
    parser.add_argument("--max-epochs", type=int, default=10)
    parser.add_argument("--n-iter-no-change", type=int, default=3)
    parser.add_argument("--gamma", type=float, default=0.5, help="BN-CVAE's fixed BN scale")
    parser.add_argument("--kl-warmup-steps", type=int, default=0,
                        help="linear KL annealing over this many steps, for every model (0: none)")
    parser.add_argument("--latent-dim", type=int, default=32)
    parser.add_argument("--embed-dim", type=int, default=128)
    parser.add_argument("--utterance-dim", type=int, default=128)
    parser.add_argument("--context-dim", type=int, default=256)
    parser.add_argument("--decoder-dim", type=int, default=256)
    parser.add_argument("--max-context", type=int, default=5)
    parser.add_argument("--max-vocab-size", type=int, default=10000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=1)
    parser.add_argument("--report-from", default=None, metavar="RESULTS_JSON",
                        help="only rewrite results.md (beside it) from a results.json this script wrote")
    args = parser.parse_args(argv)
    if args.report_from:
        with open(args.report_from, encoding="utf-8") as handle:
            record = json.load(handle)
        with open(os.path.join(os.path.dirname(args.report_from), "results.md"), "w", encoding="utf-8") as out:
            out.write(report(record, argparse.Namespace(**record["args"])))
        return
    if args.quick:
        explicit = {a.lstrip("-").split("=")[0].replace("-", "_") for a in (argv or sys.argv[1:])}
        for key, value in QUICK.items():
            if key not in explicit:
                setattr(args, key, value)
    run_name = args.run_name or ("dailydialog_quick" if args.quick else "dailydialog")
    out_dir = args.out_dir or os.path.join(HERE, "..", "results", run_name)
    os.makedirs(out_dir, exist_ok=True)
    command = "python recipes/dailydialog_bncvae.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))

    start = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    data, dropped, counts, train_utterances = load_data(
        args.data_dir, args.max_context, rng, args.train_pairs, args.valid_pairs, args.test_pairs,
        args.test_contexts)
    print(f"pairs: {counts}; dropped duplicates of training dialogues: {dropped}", flush=True)
    vectors = fit_word_vectors([u.lower() for u in train_utterances], dim=100, random_state=args.seed)
    common = dict(latent_dim=args.latent_dim, embed_dim=args.embed_dim, utterance_dim=args.utterance_dim,
                  context_dim=args.context_dim, decoder_dim=args.decoder_dim, max_context=args.max_context,
                  max_vocab_size=args.max_vocab_size, batch_size=args.batch_size, lr=args.lr,
                  max_epochs=args.max_epochs, n_iter_no_change=args.n_iter_no_change,
                  kl_warmup_steps=args.kl_warmup_steps,
                  random_state=args.seed, verbose=args.verbose)
    results, samples = {}, {}
    shown = data["test_generation"][0][:5]
    for name in args.models:
        params = dict(common, **MODELS[name])
        params.setdefault("gamma", args.gamma)
        began = time.perf_counter()
        model = BNCVAE(**params).fit(*data["train"], validation_data=data["validation"])
        seconds = time.perf_counter() - began
        test = model.evaluate(*data["test"], n_samples=0)
        generation = model.evaluate(*data["test_generation"], n_samples=args.n_samples, word_vectors=vectors,
                                    random_state=args.seed)
        picked = np.sort(np.random.default_rng(args.seed).choice(len(data["train"][1]),
                                                                 min(2000, len(data["train"][1])), replace=False))
        on_train = model.evaluate([data["train"][0][i] for i in picked], [data["train"][1][i] for i in picked],
                                  n_samples=0)
        results[name] = {"params": model.get_params(), "train_seconds": seconds, "history": model.history_,
                         "best_epoch": int(np.argmin([h["valid_loss"] for h in model.history_])) + 1,
                         "test": test, "test_generation": generation,
                         "train_posterior_kl": on_train["posterior_kl"],
                         "train_sample": f"a seeded random sample of {len(picked):,} training pairs"}
        samples[name] = model.generate(shown, n_samples=3, random_state=args.seed)
        print(f"{name}: {seconds:.0f}s, test KL(q||p) {test['kl']:.2f}, PPL {test['perplexity']:.1f}, "
              f"BLEU-4 P/R {generation['bleu4_precision']:.3f}/{generation['bleu4_recall']:.3f}", flush=True)
    total = time.perf_counter() - start
    record = {"command": command, "ssl_textvae_version": __version__, "args": vars(args), "pairs": counts,
              "dropped_duplicates": dropped, "seconds": total, "results": results,
              "word_vectors": "PPMI-SVD, 100 dimensions, fitted on the lowercased training utterances"}
    with open(os.path.join(out_dir, "results.json"), "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=2)
    with open(os.path.join(out_dir, "results.md"), "w", encoding="utf-8") as handle:
        handle.write(report(record, args))
    with open(os.path.join(out_dir, "samples.md"), "w", encoding="utf-8") as handle:
        handle.write(samples_report(shown, data["test_generation"][1][:5], samples, command))
    plot(results, args, os.path.join(out_dir, "kl_per_epoch.png"))
    print(f"wrote {out_dir} in {total:.0f}s")


ROWS = [("KL(q‖p)", "test", "kl", 2), ("KL(p‖N(0,I))", "test", "prior_kl", 2),
        ("KL(q‖N(0,I))", "test", "posterior_kl", 2), ("−ELBO / pair", "test", "loss", 2),
        ("PPL (reconstruction)", "test", "perplexity", 1), ("PPL (ELBO bound)", "test", "elbo_perplexity", 1)]
ROWS += [(f"BLEU-{n} {kind[0].upper()}", "test_generation", f"bleu{n}_{kind}", 3)
         for n in range(1, 5) for kind in ("precision", "recall")]
ROWS += [(f"{label} {kind[0].upper()}", "test_generation", f"{key}_{kind}", 3)
         for label, key in (("A-bow", "a_bow"), ("E-bow", "e_bow")) for kind in ("precision", "recall")]
ROWS += [("distinct-1", "test_generation", "distinct1", 3), ("distinct-2", "test_generation", "distinct2", 3),
         ("mean length (words)", "test_generation", "mean_length", 1)]
LOWER_IS_BETTER = {"loss", "perplexity", "elbo_perplexity"}


def report(record, args):
    results, names = record["results"], list(record["results"])
    budget = f"{record['pairs']['train']:,} training pairs, at most {args.max_epochs} epochs"
    warmup = getattr(args, "kl_warmup_steps", 0)
    annealing = f"KL annealing over {warmup} steps" if warmup else "no KL annealing"
    lines = [f"# DailyDialog: CVAE, CVAE (BOW), BN-CVAE ({'quick budget: ' if args.quick else ''}{budget})", "",
             "```bash", record["command"], "```", "",
             f"Pairs: {record['pairs']}. Dropped validation/test dialogues that repeat a training dialogue: "
             f"{record['dropped_duplicates']}. Each model: the same training pairs, at most {args.max_epochs} "
             f"epochs, the epoch with the best validation −ELBO kept; latent {args.latent_dim}, BN-CVAE gamma "
             f"{args.gamma} (bound latent·γ²/2 = {args.latent_dim * args.gamma ** 2 / 2:.2f}), "
             f"{annealing}, "
             f"{args.n_samples} responses sampled per test context (z ~ p(z|c), greedy decoding). "
             f"Embedding scores use {record['word_vectors']}. Wall time {record['seconds'] / 60:.1f} min, "
             "1 thread.", "",
             "| metric | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for label, part, key, digits in ROWS:
        values = [results[n][part].get(key) for n in names]
        if any(v is None for v in values):
            continue
        best = (min if key in LOWER_IS_BETTER else max)(values) if not key.endswith("kl") else None
        cells = [f"**{v:.{digits}f}**" if best is not None and v == best else f"{v:.{digits}f}" for v in values]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("| KL(q‖N(0,I)), training batches, train mode, best epoch | " + " | ".join(
        f"{results[n]['history'][results[n]['best_epoch'] - 1]['train_posterior_kl']:.2f}" for n in names) + " |")
    lines.append("| KL(q‖N(0,I)), training pairs, eval mode | "
                 + " | ".join(f"{results[n]['train_posterior_kl']:.2f}" for n in names) + " |")
    lines.append("| best epoch / epochs run | " + " | ".join(
        f"{results[n]['best_epoch']} / {len(results[n]['history'])}" for n in names) + " |")
    lines.append("| training time (s) | " + " | ".join(f"{results[n]['train_seconds']:.0f}" for n in names) + " |")
    lines += ["", "Bold: the best value of the row (KL rows are not ranked). P/R: precision/recall over the "
              "sampled responses against the one DailyDialog reference. PPL of the reconstruction uses one "
              "z ~ q(z|c, y), as Zhao et al. report it; the ELBO bound adds KL(q‖p).", ""]
    lines += ["## The paper's claims, checked", ""]
    lines += [f"- {n}: test KL(q‖p) = {results[n]['test']['kl']:.2f} nats" for n in names]
    if "BN-CVAE" in results:
        bn = results["BN-CVAE"]
        bound = bn["test"]["kl_bound"]
        batches = bn["history"][bn["best_epoch"] - 1]["train_posterior_kl"]
        sample = bn.get("train_sample", "the first 2,000 sampled training pairs in file order")
        lines.append(f"- BN-CVAE's bound: latent·γ²/2 = {bound:.2f} nats. The batch norm guarantees it for "
                     f"KL(q‖N(0,I)) in expectation over training batches (train mode, batch statistics): "
                     f"{batches:.2f} at the kept epoch, {'above' if batches >= bound else 'BELOW'} it. In eval "
                     f"mode (running statistics recalibrated on training pairs) it is {bn['train_posterior_kl']:.2f} "
                     f"on {sample} and {bn['test']['posterior_kl']:.2f} on the test pairs, where it is not "
                     "guaranteed.")
    return "\n".join(lines) + "\n"


def samples_report(contexts, references, samples, command):
    lines = ["# Sampled responses for the first test contexts", "", "```bash", command, "```", ""]
    for i, (context, reference) in enumerate(zip(contexts, references)):
        lines += [f"## Context {i + 1}", ""] + [f"> {u}  " for u in context] + ["", f"Reference: *{reference}*", ""]
        for name, rows in samples.items():
            lines += [f"- {name}: " + " / ".join(f"“{s}”" for s in rows[i])]
        lines.append("")
    return "\n".join(lines)


def plot(results, args, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, result in results.items():
        epochs = [h["epoch"] for h in result["history"]]
        axes[0].plot(epochs, [h["valid_kl"] for h in result["history"]], marker="o", label=name)
        axes[1].plot(epochs, [h["valid_posterior_kl"] for h in result["history"]], marker="o", label=name)
    axes[1].axhline(args.latent_dim * args.gamma ** 2 / 2, color="grey", linestyle="--",
                    label=f"BN bound {args.latent_dim}·{args.gamma}²/2")
    axes[0].set(title="validation KL(q(z|c,y) ‖ p(z|c))", xlabel="epoch", ylabel="nats")
    axes[1].set(title="validation KL(q(z|c,y) ‖ N(0,I))", xlabel="epoch", ylabel="nats")
    for axis in axes:
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
