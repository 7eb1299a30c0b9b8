"""Train each posterior-collapse remedy with the same budget on short Yelp and compare them.

Remedies (all the same BNVAE, one switch each): BN-VAE (gamma), plain VAE, autoencoder,
linear KL annealing, cyclical annealing (Fu et al. 2019), free bits (Li et al. 2019), and
BN-VAE with linear annealing. For each: IW-NLL, perplexity, KL, mutual information and
active units on test sentences, KL and active units on validation sentences (BN-VAE's
bound latent_dim * gamma^2 / 2), training seconds, and the test accuracy of a logistic
regression on the posterior means fitted on 100 labels.

    python recipes/compare_remedies.py --quick            # a few minutes on 2 CPU cores
    python recipes/compare_remedies.py                    # reference budget (hours on CPU)

Writes OUT/remedies.md, OUT/remedies.json (rows, budgets, per-epoch history, the command
line) and OUT/kl_per_epoch.png.
"""

import argparse
import os
import time

from sklearn.linear_model import LogisticRegression

from ssl_textvae import BNVAE, __version__
from common import YELP_DATA_DIR, command_line, load_pool, load_split, pyplot, write_json

REMEDIES = ("bnvae", "vae", "autoencoder", "kl_annealing", "cyclical", "free_bits",
            "bnvae+annealing")
QUICK = dict(pool_size=2_500, max_epochs=2, embed_dim=64, hidden_dim=128, latent_dim=16,
             n_importance_samples=20, n_eval=300)
REFERENCE = dict(pool_size=None, max_epochs=20, embed_dim=128, hidden_dim=512, latent_dim=32,
                 n_importance_samples=500, n_eval=10_000)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=str(YELP_DATA_DIR))
    parser.add_argument("--out", default=None,
                        help="output folder (default: results/compare_remedies[_quick])")
    parser.add_argument("--quick", action="store_true",
                        help=f"small budget: {QUICK}")
    parser.add_argument("--remedies", nargs="+", choices=REMEDIES, default=list(REMEDIES))
    parser.add_argument("--pool-size", type=int, help="first N pool sentences (default: all)")
    parser.add_argument("--max-epochs", type=int)
    parser.add_argument("--embed-dim", type=int)
    parser.add_argument("--hidden-dim", type=int)
    parser.add_argument("--latent-dim", type=int)
    parser.add_argument("--n-importance-samples", type=int, help="k of the IW-NLL")
    parser.add_argument("--n-eval", type=int, help="test and validation sentences for the metrics")
    parser.add_argument("--gamma", type=float, default=0.7)
    parser.add_argument("--free-bits", type=float, default=0.5, help="nats per dimension")
    parser.add_argument("--kl-cycles", type=int, default=4)
    parser.add_argument("--n-labels", type=int, default=100, choices=[100, 500, 1000, 2000, 10000])
    parser.add_argument("--random-state", type=int, default=0)
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else REFERENCE).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.out = args.out or ("results/compare_remedies_quick" if args.quick else
                            "results/compare_remedies")
    return args


def remedy_params(name, args, steps_per_epoch):
    """The switches of each remedy. Annealing ramps over the first half of training."""
    warmup = max(1, args.max_epochs * steps_per_epoch // 2)
    return {
        "bnvae": dict(gamma=args.gamma),
        "vae": dict(gamma=0),
        "autoencoder": dict(gamma=0, objective="autoencoder"),
        "kl_annealing": dict(gamma=0, kl_schedule="linear", kl_start=0.0, kl_warmup_steps=warmup),
        "cyclical": dict(gamma=0, kl_schedule="cyclical", kl_cycles=args.kl_cycles,
                         kl_cycle_ratio=0.5),
        "free_bits": dict(gamma=0, free_bits=args.free_bits),
        "bnvae+annealing": dict(gamma=args.gamma, kl_schedule="linear", kl_start=0.0,
                                kl_warmup_steps=warmup),
    }[name]


def run_remedy(name, params, pool, splits, args):
    vae = BNVAE(**params)
    start = time.perf_counter()
    vae.fit(pool)
    seconds = time.perf_counter() - start
    test = vae.evaluate(splits["test_eval"][0], n_importance_samples=args.n_importance_samples,
                        random_state=args.random_state, verbose=0)
    # KL and active units need no importance samples: one keeps the validation pass cheap
    valid = vae.evaluate(splits["valid_eval"][0], n_importance_samples=1,
                         random_state=args.random_state, verbose=0)
    head = LogisticRegression(max_iter=2000).fit(vae.transform(splits["labeled"][0]),
                                                 splits["labeled"][1])
    accuracy = head.score(vae.transform(splits["test"][0]), splits["test"][1])
    gamma = params.get("gamma") or 0.0
    return {
        "remedy": name, "params": {k: v for k, v in params.items() if k.startswith(("gamma", "kl_", "free", "obj"))},
        "iw_nll": test["iw_nll"], "perplexity": test["perplexity"], "neg_elbo": test["neg_elbo"],
        "kl": test["kl"], "mutual_information": test["mutual_information"],
        "active_units": test["active_units"], "valid_kl": float(valid["kl"]),
        "valid_active_units": int(valid["active_units"]),
        "kl_bound": args.latent_dim * gamma**2 / 2 if gamma else None,
        "train_seconds": seconds, "accuracy": accuracy, "epochs": len(vae.history_),
        "kl_per_dim_test": test["kl_per_dim"],
        "history": [{k: r[k] for k in ("epoch", "train_kl", "valid_kl", "valid_loss", "kl_weight",
                                       "seconds") if k in r} for r in vae.history_],
    }


def markdown_table(rows, args):
    head = (f"| remedy | IW-NLL (k={args.n_importance_samples}) | PPL | -ELBO | KL | MI | AU | "
            f"valid KL (bound) | valid AU | train s | acc ({args.n_labels} labels) |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        bound = f" (>= {r['kl_bound']:.2f})" if r["kl_bound"] is not None else ""
        lines.append(
            f"| {r['remedy']} | {r['iw_nll']:.2f} | {r['perplexity']:.1f} | {r['neg_elbo']:.2f} | "
            f"{r['kl']:.2f} | {r['mutual_information']:.2f} | {r['active_units']}/{args.latent_dim} | "
            f"{r['valid_kl']:.2f}{bound} | {r['valid_active_units']}/{args.latent_dim} | "
            f"{r['train_seconds']:.0f} | {100 * r['accuracy']:.1f}% |")
    return "\n".join(lines)


def plot_kl(rows, path):
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6, 4))
    for r in rows:
        epochs = [h["epoch"] for h in r["history"]]
        axis.plot(epochs, [h["valid_kl"] for h in r["history"]], marker="o", label=r["remedy"])
    axis.set_xlabel("epoch")
    axis.set_ylabel("KL per sentence on the validation split (nats)")
    axis.set_title("KL per epoch, one line per remedy")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    pool = list(load_pool(args.data_dir, args.pool_size))
    splits = {"labeled": load_split(args.data_dir, f"train.{args.n_labels}"),
              "test": load_split(args.data_dir, "test"),
              "test_eval": load_split(args.data_dir, "test", args.n_eval),
              "valid_eval": load_split(args.data_dir, "valid", args.n_eval)}
    shared = dict(embed_dim=args.embed_dim, hidden_dim=args.hidden_dim, latent_dim=args.latent_dim,
                  max_epochs=args.max_epochs, random_state=args.random_state, verbose=1)
    n_train = len(pool) - round(BNVAE().validation_fraction * len(pool))
    steps_per_epoch = -(-n_train // BNVAE().batch_size)
    rows = []
    for name in args.remedies:
        params = dict(shared, **remedy_params(name, args, steps_per_epoch))
        print(f"== {name}: {params}", flush=True)
        rows.append(run_remedy(name, params, pool, splits, args))
        print(markdown_table(rows[-1:], args), flush=True)

    budget = {k: getattr(args, k) for k in ("pool_size", "max_epochs", "embed_dim", "hidden_dim",
                                            "latent_dim", "n_importance_samples", "n_eval",
                                            "gamma", "free_bits", "kl_cycles", "n_labels",
                                            "random_state")}
    budget["n_pool_used"] = len(pool)
    budget["annealing_warmup_steps"] = max(1, args.max_epochs * steps_per_epoch // 2)
    command = command_line("compare_remedies.py", argv)
    notes = (f"IW-NLL, PPL, -ELBO, KL, MI and AU on the first {args.n_eval} test sentences; valid KL "
             f"and AU on the first {args.n_eval} validation sentences (the bound is latent_dim * "
             f"gamma^2 / 2); accuracy of a logistic regression on the means of short_yelp.train."
             f"{args.n_labels} over all 10,000 test sentences. Pretraining on the first "
             f"{len(pool)} pool sentences, {args.max_epochs} epoch(s), dims {args.embed_dim}/"
             f"{args.hidden_dim}/{args.latent_dim}.")
    table = markdown_table(rows, args)
    with open(os.path.join(args.out, "remedies.md"), "w", encoding="utf-8") as handle:
        handle.write(f"# Collapse remedies on short Yelp\n\n`{command}`\n\n{table}\n\n{notes}\n")
    write_json(os.path.join(args.out, "remedies.json"), {"command": command, "ssl_textvae_version": __version__,
                                                         "budget": budget, "notes": notes, "rows": rows})
    plot_kl(rows, os.path.join(args.out, "kl_per_epoch.png"))
    print(table)
    print(notes)
    print(f"Wrote {args.out}/remedies.md, remedies.json, kl_per_epoch.png")


if __name__ == "__main__":
    main()
