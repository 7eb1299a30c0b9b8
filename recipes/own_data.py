"""Your own texts: a few labeled, many unlabeled -> a saved semi-supervised classifier.

Input is a CSV or JSON Lines file with a text column and a label column, in UTF-8 (or
the ``--encoding`` given); a row whose label is missing, empty, null or "-1" is
unlabeled. The recipe

1. pretrains one BN-VAE on every text (labeled and unlabeled; labels are not used),
2. reports cross-validated accuracy of the head on the labeled rows (the pretrained
   VAE is shared by all folds), next to a majority-class and a TF-IDF + logistic
   regression baseline cross-validated on the same folds,
3. fits the head on all labeled rows and saves the model with ``BNVAEClassifier.save``.

``--fine-tune`` also cross-validates the encoder fine-tuned with the labels
(``FineTunedBNVAEClassifier``, on the same folds) and saves that model instead.
``--word-weight W`` (beyond the paper) also cross-validates the head over the means beside
TF-IDF word features (``BNVAEClassifier(word_weight=W)``), and saves that model unless
``--fine-tune``: try it where classes differ in a word or two (intents, polarity).

``--predict FILE --model DIR`` labels the texts of another file with a saved model.

Examples
--------
    python recipes/own_data.py tickets.csv --text-column body --label-column queue --model-dir model/
    python recipes/own_data.py --predict new_tickets.csv --text-column body --model model/ \
        --output predictions.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.dummy import DummyClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import ssl_textvae
from ssl_textvae import BNVAE, BNVAEClassifier, FineTunedBNVAEClassifier
from ssl_textvae.features import check_word_weight
from ssl_textvae.model import SOFTMAXES
from ssl_textvae.presets import data_dependent_params, describe_texts

UNLABELED = "-1"
VAE_OPTIONS = {"gamma": float, "latent_dim": int, "embed_dim": int, "hidden_dim": int,
               "max_epochs": int, "batch_size": int, "lr": float, "max_vocab_size": int,
               "min_frequency": int, "max_length": int}


def build_parser():
    parser = argparse.ArgumentParser(
        description="Semi-supervised text classification on your own CSV or JSONL file: pretrain a "
                    "BN-VAE on all texts, cross-validate a head on the labeled ones, save the model.")
    parser.add_argument("data", nargs="?", help="CSV (.csv, .tsv) or JSON Lines (.jsonl, .json) file")
    parser.add_argument("--text-column", default="text", help="column with the texts (default: text)")
    parser.add_argument("--label-column", default="label",
                        help="column with the labels; missing, empty, null or -1 = unlabeled "
                             "(default: label)")
    parser.add_argument("--model-dir", default="own_data_model",
                        help="where to save the fitted model (default: %(default)s)")
    parser.add_argument("--report", default=None,
                        help="write the cross-validation report as JSON here (default: "
                             "<model-dir>/report.json)")
    parser.add_argument("--cv", type=folds, default=5, help="cross-validation folds, at least 2 "
                                                            "(default: 5)")
    parser.add_argument("--encoding", default="utf-8",
                        help="the data files' text encoding, for example latin-1 or cp1252 "
                             "(default: utf-8)")
    parser.add_argument("--C", type=float, default=1.0,
                        help="inverse regularization of the logistic-regression head (default: 1.0)")
    parser.add_argument("--word-weight", type=float, default=0.0, metavar="W",
                        help="also cross-validate the head with TF-IDF word features beside the "
                             "means, weighted W (> 0; with C from --C), and save that model")
    parser.add_argument("--tune", type=int, default=0, metavar="N_TRIALS",
                        help="tune the VAE with ssl_textvae.tuning first (needs optuna)")
    parser.add_argument("--tokenizer", choices=("auto", "word", "bpe"), default="auto",
                        help="'bpe' for raw text, 'word' for pre-tokenized text; 'auto' (default) "
                             "picks one from the texts (ssl_textvae.presets)")
    parser.add_argument("--lowercase", action="store_true", help="lowercase texts before tokenizing")
    for name, kind in VAE_OPTIONS.items():
        parser.add_argument("--" + name.replace("_", "-"), type=kind, default=None,
                            help=f"BNVAE {name} (default: picked from the texts by "
                             "ssl_textvae.presets, else the package default)")
    parser.add_argument("--softmax", choices=SOFTMAXES, default=None,
                        help="BNVAE softmax: 'adaptive' pretrains faster, another model than the "
                             "paper's (default: the package default, full)")
    parser.add_argument("--fine-tune", action="store_true",
                        help="also cross-validate the encoder fine-tuned with the labels "
                             "(FineTunedBNVAEClassifier) and save that model instead of the head")
    parser.add_argument("--random-state", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--verbose", type=int, default=1)
    parser.add_argument("--predict", metavar="FILE", default=None,
                        help="predict the texts of FILE with the model in --model instead of fitting")
    parser.add_argument("--model", default=None, help="saved model directory for --predict")
    parser.add_argument("--output", default=None,
                        help="--predict writes FILE's rows plus 'prediction' and 'probability' "
                             "columns here (default: print them)")
    return parser


def folds(text):
    """``--cv``: an int >= 2."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be an int >= 2 (cross-validation needs at least 2 "
                                         f"folds), got {text!r}")
    return value


# -- reading and writing rows ---------------------------------------------------------------
def read_rows(path, encoding="utf-8"):
    """Rows of a CSV / TSV (header line) or JSON Lines file in ``encoding``, as a list of
    dicts; a file in another encoding is a ``ValueError`` that says how to read it."""
    try:
        return _read_rows(Path(path), encoding)
    except UnicodeDecodeError:
        number, byte = undecodable_line(path, encoding)
        name = "UTF-8" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
        raise ValueError(f"{path} is not {name} (line {number} holds the byte 0x{byte}). Pass the "
                         "file's encoding, for example --encoding latin-1 (or cp1252), or save it "
                         "as UTF-8.") from None


def undecodable_line(path, encoding):
    """(line number, first undecodable byte as hex) of ``path``; (None, None) if none."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            try:
                raw.decode(encoding)
            except UnicodeDecodeError as error:
                return number, raw[error.start:error.start + 1].hex()
    return None, None


def _read_rows(path, encoding):
    if not path.is_file():
        raise FileNotFoundError(f"No such file: {path}.")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        rows = []
        with open(path, encoding=encoding) as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path}, line {number}: not valid JSON ({error.msg}); expected "
                                     "one JSON object a line.") from None
                if not isinstance(row, dict):
                    raise ValueError(f"{path}, line {number}: expected a JSON object, got "
                                     f"{type(row).__name__}.")
                rows.append(row)
        return rows
    if suffix in (".csv", ".tsv"):
        utf8 = encoding.lower().replace("_", "-") in ("utf-8", "utf8")
        with open(path, encoding="utf-8-sig" if utf8 else encoding, newline="") as handle:   # BOM
            return list(csv.DictReader(handle, delimiter="\t" if suffix == ".tsv" else ","))
    raise ValueError(f"Cannot read {path.name!r}: expected a .csv, .tsv, .jsonl or .json (JSON Lines) file.")


def column(rows, name, path, required=True):
    if rows and required and not any(name in row for row in rows):
        raise ValueError(f"{path}: no column {name!r}; columns are {sorted(rows[0])}. Pick one with "
                         f"--text-column / --label-column.")
    return [row.get(name) for row in rows]


def split_rows(rows, text_column, label_column, path):
    """Texts and string labels (``"-1"`` for unlabeled); rows without text are an error."""
    if not rows:
        raise ValueError(f"{path} has no rows.")
    texts = column(rows, text_column, path)
    for number, text in enumerate(texts, 1):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{path}, row {number}: the {text_column!r} value is {text!r}; every row "
                             "needs a non-empty text.")
    labels = []
    for value in column(rows, label_column, path):
        if value is None or (isinstance(value, str) and not value.strip()):
            labels.append(UNLABELED)
        elif isinstance(value, float) and value.is_integer():
            labels.append(str(int(value)))
        else:
            labels.append(str(value).strip())
    return texts, np.asarray(labels)


def write_rows(rows, path):
    path = Path(path)
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        with open(path, "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row) + "\n")
        return
    with open(path, "w", encoding="utf-8", newline="") as handle:
        fields = list(dict.fromkeys(key for row in rows for key in row))
        writer = csv.DictWriter(handle, fieldnames=fields, delimiter="\t" if path.suffix == ".tsv" else ",")
        writer.writeheader()
        writer.writerows(rows)


# -- fitting --------------------------------------------------------------------------------
def vae_params(args):
    """The BNVAE parameters given on the command line."""
    params = {"lowercase": args.lowercase}
    if args.tokenizer != "auto":
        params["tokenizer"] = args.tokenizer
    params.update({name: getattr(args, name) for name in VAE_OPTIONS if getattr(args, name) is not None})
    if args.softmax is not None:
        params["softmax"] = args.softmax
    return params


def resolved_vae_params(args, texts):
    """``ssl_textvae.presets``' settings for ``texts`` (model size, vocabulary, epochs,
    tokenizer), with every setting given on the command line winning."""
    description = describe_texts(texts)
    if args.tokenizer != "auto":
        description["pretokenized"] = args.tokenizer == "word"
    return {**data_dependent_params(description), **vae_params(args)}


def tuned_params(args, texts, labels, unlabeled, params):
    try:
        from ssl_textvae.tuning import tune
    except ImportError as error:
        raise SystemExit(f"--tune needs ssl_textvae.tuning and optuna, which could not be imported "
                         f"({error}); run without --tune to use the defaults.") from None
    study = tune(texts, labels, n_trials=args.tune, random_state=args.random_state,
                 fixed_params={f"vae__{k}": v for k, v in params.items()}, unlabeled=unlabeled or None)
    best = {k[len("vae__"):]: v for k, v in study.best_params.items() if k.startswith("vae__")}
    print(f"Tuning: best parameters {study.best_params} (score {study.best_value:.4f}).")
    return {**params, **best}, {"n_trials": args.tune, "best_params": dict(study.best_params),
                                "best_value": float(study.best_value)}


def fit(args):
    start = time.perf_counter()
    check_word_weight(args.word_weight)    # before minutes of pretraining, not inside a fold
    rows = read_rows(args.data, args.encoding)
    texts, labels = split_rows(rows, args.text_column, args.label_column, args.data)
    labeled = labels != UNLABELED
    labeled_texts = [text for text, keep in zip(texts, labeled) if keep]
    unlabeled_texts = [text for text, keep in zip(texts, labeled) if not keep]
    y = labels[labeled]
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise ValueError(f"Found {len(classes)} class(es) among {len(y)} labeled rows; need at least 2.")
    n_splits = int(min(args.cv, counts.min()))
    if n_splits < 2:
        raise ValueError(f"Every class needs at least 2 labeled rows for cross-validation; class "
                         f"{classes[counts.argmin()]!r} has {counts.min()}.")
    print(f"{len(texts):,} rows: {len(y):,} labeled ({dict(zip(classes.tolist(), counts.tolist()))}), "
          f"{len(unlabeled_texts):,} unlabeled.")

    params = resolved_vae_params(args, texts)
    tuning = None
    if args.tune:
        params, tuning = tuned_params(args, labeled_texts, y, unlabeled_texts, params)
    vae = BNVAE(**params, device=args.device, random_state=args.random_state,
                verbose=args.verbose).fit(texts)
    head = make_pipeline(StandardScaler(), LogisticRegression(C=args.C, max_iter=2000))
    folds = StratifiedKFold(n_splits, shuffle=True, random_state=args.random_state)
    means = vae.transform(labeled_texts)
    scores = {
        "bnvae_lr": cross_val_score(head, means, y, cv=folds),
        "majority": cross_val_score(DummyClassifier(strategy="most_frequent"), means, y, cv=folds),
        "tfidf_lr": cross_val_score(make_pipeline(
            TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, lowercase=True),
            LogisticRegression(C=10.0, max_iter=2000)), np.asarray(labeled_texts, dtype=object), y, cv=folds),
    }
    if args.word_weight:
        # Scored like the TF-IDF row: each fold fits its words on its own labeled texts.
        with_words = BNVAEClassifier(vae=FrozenEstimator(vae), word_weight=args.word_weight,
                                     estimator=LogisticRegression(C=args.C, max_iter=2000))
        scores["bnvae_words_lr"] = cross_val_score(with_words, np.asarray(labeled_texts, dtype=object),
                                                   y, cv=folds)
    if args.fine_tune:
        fine_tuned = FineTunedBNVAEClassifier(FrozenEstimator(vae), random_state=args.random_state,
                                              device=args.device, verbose=0)
        scores["bnvae_fine_tuned"] = cross_val_score(fine_tuned, np.asarray(labeled_texts, dtype=object),
                                                     y, cv=folds)
        classifier = fine_tuned.fit(labeled_texts, y)
    elif args.word_weight:   # the saved model's words come from every text, the unlabeled too
        classifier = with_words.fit(labeled_texts + unlabeled_texts,
                                    np.concatenate([y.astype(object), np.full(len(unlabeled_texts), "-1",
                                                                              dtype=object)]))
    else:
        classifier = BNVAEClassifier(vae=FrozenEstimator(vae), estimator=head)
        classifier.fit(labeled_texts, y)
    classifier.save(args.model_dir)

    names = {"bnvae_lr": "BN-VAE + logistic regression", "majority": "majority class",
             "tfidf_lr": "TF-IDF + logistic regression (C=10)",
             "bnvae_fine_tuned": "BN-VAE encoder fine-tuned",
             "bnvae_words_lr": f"BN-VAE means + words (weight {args.word_weight})"}
    print(f"\n{n_splits}-fold cross-validated accuracy on the {len(y):,} labeled rows "
          "(the VAE saw every text, unlabeled, during pretraining):")
    for key, values in scores.items():
        print(f"  {names[key]:<38} {values.mean() * 100:5.1f} ± {values.std() * 100:.1f} %")
    report = {
        "command": shlex.join(["python", "recipes/own_data.py", *args.argv]),
        "ssl_textvae_version": ssl_textvae.__version__,
        "data": str(args.data), "n_rows": len(texts), "n_labeled": int(len(y)),
        "n_unlabeled": len(unlabeled_texts),
        "class_counts": dict(zip(classes.tolist(), counts.tolist())),
        "cv_folds": n_splits, "vae_params": vae.get_params(), "tuning": tuning,
        "head": f"StandardScaler + LogisticRegression(C={args.C}) on the posterior means",
        "word_weight": args.word_weight,
        "saved_model": type(classifier).__name__,
        "cv_accuracy": {key: {"mean": float(v.mean()), "std": float(v.std()), "folds": v.tolist()}
                        for key, v in scores.items()},
        "model_dir": str(args.model_dir), "seconds": time.perf_counter() - start,
    }
    report_path = Path(args.report) if args.report else Path(args.model_dir) / "report.json"
    report_path.write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    print(f"Saved the model to {args.model_dir} and the report to {report_path}.")
    return report


def predict(args):
    if not args.model:
        raise SystemExit("--predict needs --model DIR, a directory written by this recipe.")
    classifier = ssl_textvae.load(args.model)
    if not hasattr(classifier, "classes_"):
        raise ValueError(f"{args.model} holds a {type(classifier).__name__}, not a classifier.")
    rows = read_rows(args.predict, args.encoding)
    texts = column(rows, args.text_column, args.predict)
    for number, text in enumerate(texts, 1):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{args.predict}, row {number}: the {args.text_column!r} value is {text!r}; "
                             "every row needs a non-empty text.")
    probabilities = classifier.predict_proba(texts)
    predictions = classifier.classes_[probabilities.argmax(axis=1)]
    output = [dict(row, prediction=str(label), probability=round(float(p.max()), 4))
              for row, label, p in zip(rows, predictions, probabilities)]
    if args.output:
        write_rows(output, args.output)
        print(f"Wrote {len(output):,} predictions to {args.output}.")
    else:
        for row in output:
            print(f"{row['prediction']}\t{row['probability']:.3f}\t{row[args.text_column]}")
    return output


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.predict:
        return predict(args)
    if not args.data:
        parser.error("give a data file to fit on, or --predict FILE --model DIR")
    return fit(args)


if __name__ == "__main__":
    main()
