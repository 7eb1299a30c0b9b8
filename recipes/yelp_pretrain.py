"""Long, resumable BN-VAE pretraining on short Yelp, one seed at a time, with a snapshot per epoch.

The paper pretrains for up to 100 epochs; on a 2-core CPU one epoch over the pool takes minutes,
so a run spans sessions. Each epoch writes a checkpoint (``RUN_DIR/seed<S>/checkpoint``), from
which a killed run resumes bit-exactly, and a loadable snapshot (``RUN_DIR/seed<S>/epoch<NNN>``,
``BNVAE.load``), which ``recipes/yelp_table3.py`` evaluates for the accuracy-against-epochs curve
and the final table. Keep ``RUN_DIR`` outside the work tree (default ``~/runs/yelp_table3``).

Settings are the paper's short-Yelp ones (``PAPER_VAE`` in ``recipes/common.py``; Zhu et al. 2020
and the official code's ``config_short_yelp``): embeddings 128, LSTMs of 512, latent 32, gamma 0.7, SGD lr 1.0, gradient
clipping 5, batch 32, learning rate halved after 5 epochs without a better validation ELBO (best
weights reloaded), stop after 5 halvings.

Each epoch's validation figures (its history record and the command) are also appended, atomically,
to a small JSON in the repository, ``recipes/figures/yelp_pretrain_curves/seed<S>.json`` (``--curves-dir``):
a lost run folder loses minutes of training, not the curve.

``--pool-size`` and the model sizes (``--embed-dim``, ``--hidden-dim``, ``--latent-dim``) change the
paper's settings; ``benchmarks/gpu_run.py`` uses them to fit a time budget and for its dry run.
``--optimizer``, ``--lr`` and ``--batch-size`` give the other schedules of the time-to-accuracy
comparison (``recipes/yelp_time_to_accuracy.py``); give such a run its own ``--run-dir`` and
``--curves-dir``.

Examples
--------
    OMP_NUM_THREADS=1 python recipes/yelp_pretrain.py --seed 0 --max-epochs 40
    python recipes/yelp_pretrain.py --seed 0 --max-epochs 40    # rerun: resumes where it stopped
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ssl_textvae import BNVAE
from common import FIGURES, PAPER_VAE, YELP_DATA_DIR, command_line, pretraining_corpus, read_json, write_json

DEFAULT_RUN_DIR = Path.home() / "runs" / "yelp_table3"
DEFAULT_CURVES_DIR = FIGURES / "yelp_pretrain_curves"
# The paper's settings a run may change: the model's sizes and, for other schedules, the optimizer
CHANGEABLE = {"embed_dim": int, "hidden_dim": int, "latent_dim": int, "optimizer": str, "lr": float, "batch_size": int}


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--max-epochs", type=int, default=40,
                        help="stop after this many epochs at most (default: %(default)s; the plateau "
                             "schedule may stop sooner); a rerun with a larger value continues")
    parser.add_argument("--data-dir", default=str(YELP_DATA_DIR))
    parser.add_argument("--run-dir", default=str(DEFAULT_RUN_DIR),
                        help="checkpoints and snapshots go to RUN_DIR/seed<S>/ (default: %(default)s)")
    parser.add_argument("--curves-dir", default=str(DEFAULT_CURVES_DIR),
                        help="each epoch's validation figures go to CURVES_DIR/seed<S>.json "
                             "(default: %(default)s)")
    parser.add_argument("--pool-size", type=int, default=None,
                        help="pretrain on the first N pool sentences (default: the whole pool); "
                             "the texts of train.10000 join them either way")
    parser.add_argument("--largest-labeled", type=int, default=10000,
                        help="the labeled subset whose texts join the pool (default: %(default)s)")
    for name, kind in CHANGEABLE.items():
        parser.add_argument("--" + name.replace("_", "-"), type=kind, default=None,
                            help="default: the paper's (PAPER_VAE)")
    parser.add_argument("--softmax", choices=("full", "adaptive"), default="full")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--verbose", type=int, default=1)
    return parser


def earlier_epochs(progress):
    """The epoch records an interrupted run already wrote to ``progress.jsonl`` (the last of each)."""
    if not progress.exists():
        return []
    records = {}
    for line in progress.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        record.pop("time", None)
        records[record["epoch"]] = record
    return [records[epoch] for epoch in sorted(records)]


def seed_dir(run_dir, seed, softmax="full"):
    return Path(run_dir) / (f"seed{seed}" if softmax == "full" else f"seed{seed}_{softmax}")


def append_curve(path, record, command, run):
    """Add one epoch's history record (with the command that trained it) to the curve file.

    A file written by another run (another run folder or settings) is replaced, not mixed in;
    a resumed run replaces the epochs it trains again."""
    curve = read_json(path)
    if curve is None or curve.get("run") != run:
        curve = {"run": run, "epochs": []}
    curve["epochs"] = [r for r in curve["epochs"] if r["epoch"] < record["epoch"]]
    curve["epochs"].append({**record, "command": command})
    write_json(path, curve)


def main(argv=None):
    args = build_parser().parse_args(argv)
    out = seed_dir(args.run_dir, args.seed, args.softmax)
    out.mkdir(parents=True, exist_ok=True)
    command = command_line("yelp_pretrain.py", argv)
    history = earlier_epochs(out / "progress.jsonl")   # a resumed run's snapshots keep every epoch
    sizes = {name: getattr(args, name) for name in CHANGEABLE if getattr(args, name) is not None}
    settings = {**PAPER_VAE, **sizes, "softmax": args.softmax}
    curve_path = Path(args.curves_dir) / f"{out.name}.json"
    run = {"seed": args.seed, "run_dir": str(out), "settings": settings, "pool_size": args.pool_size,
           "largest_labeled": args.largest_labeled}

    def snapshot(vae, record):
        history[:] = [r for r in history if r["epoch"] < record["epoch"]] + [record]
        vae.history_ = list(history)         # save() stores the history; fit sets it at the end
        vae.save(out / f"epoch{record['epoch']:03d}")
        with open(out / "progress.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"time": time.time(), **record}) + "\n")
        append_curve(curve_path, record, command, run)

    vae = BNVAE(**settings, max_epochs=args.max_epochs, device=args.device,
                checkpoint_dir=str(out / "checkpoint"), random_state=args.seed, verbose=args.verbose)
    (out / "command.txt").write_text(command + "\n", encoding="utf-8")
    vae.fit(pretraining_corpus(args.data_dir, args.largest_labeled, args.pool_size), epoch_callback=snapshot)
    vae.save(out / "final")
    print(f"Pretrained seed {args.seed} for {len(vae.history_)} epochs; snapshots in {out}.")


if __name__ == "__main__":
    main()
