"""Which pretraining settings pay on a small pool, measured without the test set.

For one data set of ``../shared/data/<name>/split/`` (``pool.txt``, ``train.<N>.tsv``), each
setting pretrains a BN-VAE on the pool and, after every epoch, scores a logistic
regression on the frozen posterior means of the N labeled texts by stratified 5-fold
cross-validation (the labeled rows only; ``test.tsv`` is never read). A setting is
``ssl_textvae.presets.auto_vae``'s choice with some parameters overridden::

    python recipes/pool_settings.py sms_spam --setting auto --setting tokenizer=word \
        --setting hidden_dim=256,embed_dim=128

Writes ``recipes/figures/pool_settings_<name>.json`` (per setting and epoch: seconds and
cross-validated accuracy; the command line).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ssl_textvae.presets import auto_vae
from common import DATA_DIR, FIGURES, command_line, load_set, parse_params, write_json


def parse_setting(text):
    """``auto`` (``auto_vae``'s choice as it is) or ``name=value,name=value`` overriding it."""
    return {} if text == "auto" else parse_params(text)


def means_cv_accuracy(vae, texts, y, seed):
    """Stratified 5-fold accuracy of ``StandardScaler`` + ``LogisticRegression`` (C = 1) on the
    frozen means of the labeled texts."""
    folds = StratifiedKFold(min(5, int(np.unique(y, return_counts=True)[1].min())), shuffle=True,
                            random_state=seed)
    head = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return float(cross_val_score(head, vae.transform(texts), y, cv=folds).mean())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="data set folder under --data-dir")
    parser.add_argument("--data-dir", default=str(DATA_DIR))
    parser.add_argument("--labels", type=int, default=1000)
    parser.add_argument("--setting", type=parse_setting, action="append", dest="settings")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    command = command_line("pool_settings.py", argv)
    data = load_set(args.data_dir, args.name, (args.labels,), test=False)
    texts, y = data[args.labels]
    results = []
    for setting in args.settings or [{}]:
        vae = auto_vae(data["pool"], random_state=args.seed, verbose=0, **setting)
        epochs = []

        def record(fitted, entry):
            epochs.append({"epoch": entry["epoch"], "seconds": round(entry["seconds"], 1),
                           "valid_loss": round(entry["valid_loss"], 3),
                           "cv_accuracy": round(100 * means_cv_accuracy(fitted, texts, y, args.seed), 2)})
            print(f"{setting or 'auto'} epoch {entry['epoch']}: {epochs[-1]}", flush=True)

        start = time.perf_counter()
        vae.fit(data["pool"], epoch_callback=record)
        results.append({"setting": setting, "params": {k: v for k, v in vae.get_params().items()
                                                       if k in ("tokenizer", "max_vocab_size", "min_frequency",
                                                                "embed_dim", "hidden_dim", "max_epochs",
                                                                "max_length")},
                        "seconds": round(time.perf_counter() - start, 1), "epochs": epochs})
    path = Path(args.out or FIGURES / f"pool_settings_{args.name}.json")
    write_json(path, {"data_set": args.name, "labels": args.labels, "seed": args.seed,
                      "score": "stratified 5-fold CV accuracy (%) of StandardScaler + "
                               "LogisticRegression on the frozen means of the labeled texts",
                      "results": results, "command": command})
    print(f"Wrote {path}.")


if __name__ == "__main__":
    main()
