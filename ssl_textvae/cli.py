"""Command line over the public API: ``ssl-textvae fit|predict|evaluate|tune|pretrain``.

Each command adds its parser in an ``_add_<command>_parser`` function and runs in
``_run_<command>``; ``main`` only dispatches and turns input errors into a message
and exit status 2: bad input (an option, a file, a parameter) and a diverged training
run are one line on stderr, never a traceback, and warnings are one line each.
Training files are ``.csv`` or ``.jsonl`` tables (:func:`ssl_textvae.read_table`, by
``--text-column`` and ``--label-column``; a missing, empty, null or -1 label marks an
unlabeled row), or else ``label<TAB>text`` lines, where the label -1, an empty label or
a line without a tab marks an unlabeled text (:func:`ssl_textvae.read_labeled_file`
with ``allow_unlabeled=True``). Files are read as UTF-8 (a byte-order mark is dropped;
``--encoding`` for another) with ``\\n``, ``\\r\\n`` or ``\\r`` line ends.
"""

from __future__ import annotations

import json
import os
import sys
import warnings

from ._cli_args import NATURAL, POSITIVE, Parser, finite_float, one_line, one_line_warnings, parse_param
from ._cli_data import (TABLE_HELP as TRAIN_HELP, add_auto_vae_option, add_cv_option, add_table_options,
                        auto_vae_params, cross_validate, pretrain_texts, read_examples, read_pool)
from ._version import __version__


def _add_model_and_text_file(parser, model_help):
    parser.add_argument("model_dir", metavar="MODEL_DIR", help=model_help)
    parser.add_argument("text_file", metavar="TEXT_FILE",
                        help="a .csv or .jsonl file (its --text-column), else one text a line, or "
                             "label<TAB>text lines with --labeled")
    parser.add_argument("--labeled", action="store_true",
                        help="lines are label<TAB>text (a table: its --label-column is read)")
    add_table_options(parser)


# -- fit ------------------------------------------------------------------------------------
def _add_fit_parser(subparsers):
    parser = subparsers.add_parser(
        "fit", help="fit a classifier on a training file and save it",
        description="Fit BNVAEClassifier (a head on the means of a BN-VAE pretrained on every "
                    "text) or, with --fine-tune, FineTunedBNVAEClassifier, and save it to "
                    "MODEL_DIR. Settings are the estimator's parameters, as set_params names "
                    "them: --param vae__latent_dim=8 --param vae__max_epochs=5.")
    parser.add_argument("train", metavar="TRAIN_FILE", help=TRAIN_HELP)
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="where to save the fitted model")
    parser.add_argument("--fine-tune", action="store_true",
                        help="fine-tune the encoder with the labels (FineTunedBNVAEClassifier)")
    parser.add_argument("--vae", metavar="VAE_DIR",
                        help="a saved, pretrained BNVAE to reuse as it is (FrozenEstimator); "
                             "nothing is pretrained and vae__ parameters are refused")
    parser.add_argument("--unlabeled", metavar="FILE", help="more pretraining texts, one per line")
    parser.add_argument("--max-unlabeled", type=NATURAL, metavar="N",
                        help="use only the first N lines of --unlabeled")
    parser.add_argument("--param", type=parse_param, action="append", default=[],
                        metavar="NAME=VALUE", help="an estimator parameter (repeatable), e.g. "
                        "word_weight=2, estimator__C=10, vae__softmax=adaptive, vae__tokenizer=word")
    add_table_options(parser)
    add_auto_vae_option(parser)
    add_cv_option(parser)
    parser.set_defaults(run=_run_fit)


def _run_fit(args):
    from sklearn.frozen import FrozenEstimator

    from .estimators.bnvae import BNVAE
    from .estimators.classifier import BNVAEClassifier
    from .estimators._classifier_base import default_head, fit_or_reuse_vae
    from .estimators.fine_tuned import FineTunedBNVAEClassifier

    params = dict(args.param)
    if args.vae and (args.auto_vae or any(name.startswith("vae__") for name in params)):
        raise ValueError("--vae reuses a pretrained BNVAE as it is; its vae__ parameters cannot be "
                         "set, nor picked by --auto-vae.")
    texts, labels = read_examples(args.train, args)
    if args.auto_vae:
        params = auto_vae_params(texts, params)
    vae = FrozenEstimator(BNVAE.load(args.vae)) if args.vae else BNVAE()
    model = (FineTunedBNVAEClassifier if args.fine_tune else BNVAEClassifier)(vae=vae)
    if (not args.fine_tune and params.get("estimator") is None
            and any(name.startswith("estimator__") for name in params)):
        # --param estimator__C=1 tunes the default head: make it explicit (JSON cannot name one)
        params["estimator"] = default_head()
    model.set_params(**params)
    pool, report = read_pool(args.unlabeled, args.max_unlabeled), {}
    if args.cv:   # pretrained once on every text, then shared by the folds and the saved model
        pretrained, _ = fit_or_reuse_vae(model.vae, [t for t in texts if t.strip()], pool)
        model.set_params(vae=FrozenEstimator(pretrained))
        pool, report["cv_accuracy"] = None, cross_validate(model, texts, labels, args.cv,
                                                           pretrained.random_state)
    model.fit(texts, labels, unlabeled=pool)
    model.save(args.model_dir)
    n_labeled = sum(label != "-1" for label in labels)
    print(json.dumps({"model_dir": args.model_dir, "class": type(model).__name__,
                      "n_texts": len(texts), "n_labeled": n_labeled,
                      "classes": [str(c) for c in model.classes_], **report}, indent=2))
    return 0


# -- predict --------------------------------------------------------------------------------
def _add_predict_parser(subparsers):
    parser = subparsers.add_parser(
        "predict", help="predict the labels of a text file with a saved classifier",
        description="Print one predicted label per line of TEXT_FILE (one text a line, or "
                    "'label<TAB>text' lines with --labeled), with --proba the probability of "
                    "each class after a tab. Output line i is input line i: a blank line is "
                    "predicted as an empty text is in Python (one unknown token), with a "
                    "warning on stderr naming the blank lines.")
    _add_model_and_text_file(parser, "a classifier written by save()")
    parser.add_argument("--proba", action="store_true", help="also print class probabilities")
    parser.add_argument("--output", metavar="FILE",
                        help="write there instead of to stdout; a .csv or .jsonl FILE gets the rows of "
                             "a table TEXT_FILE with 'prediction' and 'probability' columns added")
    parser.set_defaults(run=_run_predict)


def _load_classifier(model_dir):
    from .loading import load

    model = load(model_dir)
    if not hasattr(model, "classes_"):
        raise ValueError(f"{model_dir!r} holds a {type(model).__name__}, not a classifier; fit "
                         "one with 'ssl-textvae fit'.")
    return model


def _read_texts(path, labeled, encoding="utf-8"):
    from .text.inputs import TextFile

    texts = [text for text in TextFile(path, labeled=labeled, encoding=encoding) if text.strip()]
    if not texts:
        raise ValueError(f"{path} holds no texts.")
    return texts


def _predict_lines(path, labeled, encoding):
    """Every line of ``path`` (blank ones too, so outputs line up), with a warning
    naming the blank lines."""
    from .text.inputs import TextFile

    texts = list(TextFile(path, labeled=labeled, encoding=encoding))
    if not texts:
        raise ValueError(f"{path} is empty; expected one text a line.")
    blank = [number for number, text in enumerate(texts, 1) if not text.strip()]
    if blank:
        shown = ", ".join(map(str, blank[:10])) + (", ..." if len(blank) > 10 else "")
        warnings.warn(f"{len(blank)} of {len(texts)} lines of {path} are blank (line {shown}); "
                      "each is predicted as an empty text, so the output keeps one line per "
                      "input line.", UserWarning)
    return texts


def _run_predict(args):
    from .text.tables import is_table, read_rows, row_texts, write_rows

    model = _load_classifier(args.model_dir)
    if is_table(args.text_file):
        rows = read_rows(args.text_file, args.encoding)
        texts = row_texts(rows, args.text_file, args.text_column)
    else:
        texts = _predict_lines(args.text_file, args.labeled, args.encoding)
    if args.output and is_table(args.output):
        if not is_table(args.text_file):
            raise ValueError(f"--output {args.output!r} is a table; so must TEXT_FILE be (.csv or .jsonl).")
        probabilities = model.predict_proba(texts)
        write_rows([dict(row, prediction=str(label), probability=round(float(p.max()), 4))
                    for (_, row), label, p in zip(rows, model.classes_[probabilities.argmax(1)],
                                                  probabilities)], args.output)
        return 0
    predicted = model.predict(texts)
    rows = [str(label) for label in predicted]
    if args.proba:
        probabilities = model.predict_proba(texts)
        header = "label\t" + "\t".join(f"p({c})" for c in model.classes_)
        rows = [header] + [label + "\t" + "\t".join(f"{p:.4f}" for p in row)
                           for label, row in zip(rows, probabilities)]
    text = "\n".join(rows) + "\n"
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text)
    else:
        sys.stdout.write(text)
    return 0


# -- evaluate -------------------------------------------------------------------------------
def _add_evaluate_parser(subparsers):
    parser = subparsers.add_parser(
        "evaluate", help="language-model metrics (and accuracy) of a saved model on a text file",
        description="Negative ELBO, reconstruction, KL, importance-weighted NLL and perplexity, "
                    "mutual information, active units and KL per dimension of the BNVAE in "
                    "MODEL_DIR (a classifier's pretrained one) on TEXT_FILE, as a table; for a "
                    "classifier with --labeled, also its accuracy.")
    _add_model_and_text_file(parser, "a directory written by save()")
    parser.add_argument("-k", "--n-importance-samples", type=POSITIVE, default=500,
                        help="samples of the importance-weighted NLL (default: 500)")
    parser.add_argument("--max-texts", type=POSITIVE, default=None,
                        help="evaluate the first N texts only")
    parser.add_argument("--random-state", type=NATURAL, default=0, help="seed of the z samples")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    parser.set_defaults(run=_run_evaluate)


def _run_evaluate(args):
    from .loading import load
    from .text.tables import is_table

    if args.labeled or is_table(args.text_file):
        texts, labels = read_examples(args.text_file, args, allow_unlabeled=False, labels=args.labeled)
    else:
        texts, labels = _read_texts(args.text_file, False, args.encoding), None
    model = load(args.model_dir)
    texts, labels = texts[:args.max_texts], labels and labels[:args.max_texts]
    vae = getattr(model, "vae_", model)
    results = vae.evaluate(texts, n_importance_samples=args.n_importance_samples,
                           random_state=args.random_state, verbose=1)
    if labels is not None and hasattr(model, "classes_"):
        labels = [type(model.classes_[0])(label) for label in labels]   # "1" -> 1 for int classes
        results["accuracy"] = float(model.score(texts, labels))
        print(f"accuracy ({type(model).__name__}): {results['accuracy']:.4f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)
    return 0


# -- tune -----------------------------------------------------------------------------------
def _add_tune_parser(subparsers):
    parser = subparsers.add_parser(
        "tune", help="tune gamma and latent_dim with Optuna (cross-validation on labeled rows)",
        description="Tune gamma and latent_dim (optionally the head's C) with Optuna. The score "
                    "is the head's accuracy under repeated stratified cross-validation on the "
                    "labeled rows of --train; never pass the test set. The study lives in "
                    "--storage (a SQLite file in --out by default), so rerunning the same "
                    "command resumes it; pretrained VAEs are kept in --out/models.")
    parser.add_argument("--train", required=True, help=TRAIN_HELP)
    parser.add_argument("--unlabeled", help="more pretraining texts, one per line")
    parser.add_argument("--max-unlabeled", type=NATURAL,
                        help="use only the first N lines of --unlabeled (a smaller budget)")
    parser.add_argument("--out", default="results/tune",
                        help="output folder: study.db, models/, best_params.json, trials.png")
    parser.add_argument("--storage", help="Optuna RDB URL (default: sqlite:///<out>/study.db); a "
                                          "PostgreSQL URL lets several workers share the study")
    parser.add_argument("--study-name", default="ssl-textvae", help="name of the study in the storage")
    parser.add_argument("--n-trials", type=POSITIVE, default=20,
                        help="finished trials the study should hold (a resumed study runs the rest)")
    parser.add_argument("--timeout", type=finite_float(True),
                        help="stop starting trials after this many seconds")
    parser.add_argument("--gamma-range", type=finite_float(False), nargs=2, metavar=("LOW", "HIGH"),
                        help="vae__gamma's range (default: default_search_space's)")
    parser.add_argument("--latent-dims", type=POSITIVE, nargs="+",
                        help="vae__latent_dim's choices (default: default_search_space's)")
    parser.add_argument("--tune-head", action="store_true",
                        help="also tune the LogisticRegression head's C (estimator__C)")
    parser.add_argument("--max-epochs", type=NATURAL, default=5)
    for option in ("--embed-dim", "--hidden-dim", "--batch-size"):
        parser.add_argument(option, type=POSITIVE, help="default: BNVAE's")
    parser.add_argument("--max-vocab-size", type=POSITIVE)
    parser.add_argument("--cv-splits", type=POSITIVE, default=5)
    parser.add_argument("--cv-repeats", type=POSITIVE, default=3)
    parser.add_argument("--random-state", type=NATURAL, default=0)
    parser.add_argument("--param", type=parse_param, action="append", default=[], metavar="NAME=VALUE",
                        help="a fixed parameter, as fit's --param names it (repeatable; wins over "
                             "the options above)")
    add_table_options(parser)
    add_auto_vae_option(parser)
    parser.add_argument("--heartbeat-interval", type=POSITIVE, default=30,
                        help="seconds; a trial silent for twice as long is marked failed")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.set_defaults(run=_run_tune)


def _run_tune(args):
    from .tuning import check_storage_url, default_search_space, save_results, tune

    if args.storage:   # before any file is read or folder made
        check_storage_url(args.storage, "--storage")
    texts, labels = read_examples(args.train, args)
    os.makedirs(args.out, exist_ok=True)
    storage = args.storage or "sqlite:///" + os.path.abspath(os.path.join(args.out, "study.db"))
    from .estimators.bnvae import BNVAE

    reference = BNVAE().get_params()   # its defaults, written once in its signature
    fixed = {"vae__max_epochs": args.max_epochs,
             **{"vae__" + name: reference[name] if getattr(args, name) is None else getattr(args, name)
                for name in ("embed_dim", "hidden_dim", "batch_size")}}
    if args.max_vocab_size is not None:
        fixed["vae__max_vocab_size"] = args.max_vocab_size
    # --auto-vae's picks replace the defaults of the options above; a --param wins over both
    fixed = {**fixed, **auto_vae_params(texts, dict(args.param))} if args.auto_vae else {**fixed, **dict(args.param)}
    given = {"gamma_range": args.gamma_range, "latent_dims": args.latent_dims}
    space = default_search_space(head=args.tune_head,
                                 **{name: value for name, value in given.items() if value is not None})
    study = tune(texts, labels, n_trials=args.n_trials, timeout=args.timeout, storage=storage,
                 study_name=args.study_name, search_space=space, fixed_params=fixed,
                 unlabeled=read_pool(args.unlabeled, args.max_unlabeled),
                 cv_splits=args.cv_splits, cv_repeats=args.cv_repeats,
                 random_state=args.random_state, model_dir=os.path.join(args.out, "models"),
                 heartbeat_interval=args.heartbeat_interval, verbose=0 if args.quiet else 1)
    paths = save_results(study, args.out)
    best = study.best_trial
    print(json.dumps({"best_trial": best.number, "best_value": best.value,
                      "best_params": best.params, "files": paths}, indent=2))
    return 0


# -- pretrain -------------------------------------------------------------------------------
def _add_pretrain_parser(subparsers):
    parser = subparsers.add_parser(
        "pretrain", help="pretrain a BNVAE on a text file or Arrow folder, on one or many processes",
        description="Pretrain a BNVAE on --texts and save it to --out (BNVAE.load and "
                    "'ssl-textvae fit --vae' read it). Runs as it is on one process, and under "
                    "'torchrun --nproc-per-node N' on N (gloo on CPUs, nccl on GPUs, one GPU a "
                    "process): vae batch_size is the global batch, split over the processes, "
                    "so the same settings train the same model on any number of them. A "
                    "checkpoint in --out/checkpoints after each epoch; rerunning the command "
                    "resumes, with any number of processes.")
    parser.add_argument("--texts", required=True, metavar="FILE_OR_ARROW_DIR",
                        help="a text file (one text a line) or a folder written by "
                             "datasets' save_to_disk")
    parser.add_argument("--out", required=True, metavar="MODEL_DIR", help="where to save the BNVAE")
    parser.add_argument("--text-column", help="the Arrow data set's text column (needed when it "
                                              "has several string columns)")
    parser.add_argument("--max-texts", type=POSITIVE, metavar="N", help="use only the first N texts")
    parser.add_argument("--param", type=parse_param, action="append", default=[],
                        metavar="NAME=VALUE", help="a BNVAE parameter, e.g. latent_dim=32 (repeatable)")
    parser.add_argument("--backend", default="auto", choices=("auto", "gloo", "nccl"),
                        help="torch.distributed backend under torchrun (auto: nccl on GPUs, else gloo)")
    parser.set_defaults(run=_run_pretrain)


def _run_pretrain(args):
    from .estimators.bnvae import BNVAE
    from .engine.distributed import current_shard, local_device, process_group, world_size_from_env

    params = dict(args.param)
    device = local_device(params.pop("device", "auto"))
    params.setdefault("checkpoint_dir", os.path.join(args.out, "checkpoints"))
    texts = pretrain_texts(args.texts, args.text_column, args.max_texts)
    with process_group(args.backend, device):
        shard = current_shard()
        if shard.rank != 0:
            params["verbose"] = 0   # one progress bar and one line per epoch, from rank 0
        vae = BNVAE(device=str(device)).set_params(**params).fit(texts)
        if shard.rank == 0:
            vae.set_params(device="auto")   # the saved model runs wherever it is loaded
            vae.save(args.out)
            last = vae.history_[-1] if vae.history_ else {}
            print(json.dumps({"model_dir": args.out, "processes": world_size_from_env(),
                              "device": str(device), "epochs": len(vae.history_),
                              "valid_loss": last.get("valid_loss"),
                              "valid_kl": last.get("valid_kl"),
                              "valid_active_units": last.get("valid_active_units")}, indent=2))
    return 0


def build_parser():
    parser = Parser(prog="ssl-textvae",
                                     description="Semi-supervised text classification with BN-VAE.")
    parser.add_argument("--version", action="version", version=f"ssl-textvae {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for add in (_add_fit_parser, _add_predict_parser, _add_evaluate_parser, _add_tune_parser,
                _add_pretrain_parser):
        add(subparsers)
    return parser


def main(argv=None):
    """Run the command line; 0 on success, 2 on bad input or diverged training."""
    from .engine.diagnostics import TrainingDivergedError

    args = build_parser().parse_args(argv)
    with one_line_warnings(args.command):
        try:
            return args.run(args)
        except (ValueError, TypeError, ImportError, OSError, TrainingDivergedError) as error:
            print(f"ssl-textvae {args.command}: error: {one_line(error)}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
