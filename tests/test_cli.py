"""The command line end to end on a tiny corpus: fit, predict, evaluate, tune, --version."""

import json
import os
import subprocess
import sys

import pytest

import ssl_textvae
from ssl_textvae.cli import main

from conftest import make_corpus

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_VAE = ["vae__embed_dim=8", "vae__hidden_dim=16", "vae__latent_dim=4", "vae__max_epochs=1",
            "vae__batch_size=16", "vae__verbose=0", "vae__random_state=0"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    texts, labels = make_corpus(160, seed=21)
    lines = [f"{label}\t{text}" if index < 40 else (text if index % 2 else f"-1\t{text}")
             for index, (text, label) in enumerate(zip(texts, labels))]   # both unlabeled forms
    (folder / "train.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    test_texts, test_labels = make_corpus(30, seed=22)
    (folder / "test.txt").write_text("".join(f"{label}\t{text}\n" for text, label in
                                             zip(test_texts, test_labels)), encoding="utf-8")
    (folder / "new.txt").write_text("\n".join(test_texts[:5]) + "\n", encoding="utf-8")
    return folder


def _params(names):
    return [argument for name in names for argument in ("--param", name)]


def test_fit_predict_evaluate_tune(files, capsys):
    model_dir = files / "model"
    assert main(["fit", str(files / "train.txt"), str(model_dir), *_params(TINY_VAE)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["class"] == "BNVAEClassifier" and report["n_labeled"] == 40
    model = ssl_textvae.load(model_dir)
    assert model.get_params()["vae__latent_dim"] == 4 and list(model.classes_) == ["0", "1"]

    assert main(["predict", str(model_dir), str(files / "new.txt"), "--proba"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "label\tp(0)\tp(1)" and len(lines) == 6
    assert all(line.split("\t")[0] in {"0", "1"} for line in lines[1:])

    out = files / "metrics.json"
    assert main(["evaluate", str(model_dir), str(files / "test.txt"), "--labeled", "-k", "2",
                 "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "negative ELBO per text" in printed and "accuracy (BNVAEClassifier)" in printed
    saved = json.loads(out.read_text())
    assert saved["n_texts"] == 30 and 0 <= saved["accuracy"] <= 1

    # the pretrained VAE reused as it is for a second head: same means, nothing pretrained
    model.vae_.save(files / "vae")
    assert main(["fit", str(files / "train.txt"), str(files / "model2"), "--vae", str(files / "vae"),
                 "--param", "estimator=null"]) == 0
    capsys.readouterr()
    again = ssl_textvae.load(files / "model2")
    assert again.vae_.history_ == model.vae_.history_
    assert main(["fit", str(files / "train.txt"), str(files / "tuned"), "--fine-tune", "--vae",
                 str(files / "vae"), "--param", "fine_tuning_max_epochs=1", "--param", "verbose=0"]) == 0
    assert json.loads(capsys.readouterr().out)["class"] == "FineTunedBNVAEClassifier"
    assert main(["predict", str(files / "tuned"), str(files / "test.txt"), "--labeled"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 30

    tune_dir = files / "tune"
    assert main(["tune", "--train", str(files / "train.txt"), "--out", str(tune_dir), "--n-trials",
                 "1", "--max-epochs", "1", "--embed-dim", "8", "--hidden-dim", "16",
                 "--batch-size", "16", "--latent-dims", "4", "--gamma-range", "0.5", "0.6",
                 "--cv-splits", "2", "--cv-repeats", "1", "--quiet"]) == 0
    assert set(json.loads(capsys.readouterr().out)["best_params"]) == {"vae__gamma", "vae__latent_dim"}
    assert (tune_dir / "best_params.json").exists()


def test_errors_are_a_message_and_status_2(files, capsys, tmp_path):
    assert main(["predict", str(tmp_path), str(files / "new.txt")]) == 2
    assert "config.json' not found" in capsys.readouterr().err
    assert main(["fit", str(files / "train.txt"), str(tmp_path / "m"), "--param", "vae__nope=1"]) == 2
    assert "Invalid parameter 'nope'" in capsys.readouterr().err
    assert main(["fit", str(files / "train.txt"), str(tmp_path / "m"), "--vae", str(tmp_path),
                 "--param", "vae__latent_dim=2"]) == 2
    assert "its vae__ parameters cannot be set" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["fit", str(files / "train.txt"), str(tmp_path / "m"), "--param", "no-equals-sign"])
    assert "expected NAME=VALUE" in capsys.readouterr().err


def test_a_file_that_is_not_utf8_is_a_message_that_says_how_to_fix(files, capsys, tmp_path):
    latin = tmp_path / "latin.txt"
    latin.write_bytes((files / "train.txt").read_bytes() + "1\tcaf\u00e9 cr\u00e8me\n".encode("latin-1"))
    assert main(["fit", str(latin), str(tmp_path / "model"), *_params(TINY_VAE)]) == 2
    error = capsys.readouterr().err
    assert "latin.txt' is not valid utf-8 text: line 161 holds the byte 0xe9" in error
    assert "iconv -f latin1 -t utf-8" in error
    assert main(["fit", str(files / "train.txt"), str(tmp_path / "model"), "--unlabeled", str(latin),
                 *_params(TINY_VAE)]) == 2   # a streamed pool
    assert "latin.txt' is not valid utf-8 text: line 161" in capsys.readouterr().err


def test_tune_quiet_prints_only_the_result(files, capfd, tmp_path):
    """--quiet: no progress bars, no line per trial, no Optuna INFO log (spied on
    Optuna's logger, whose handler may hold a stream pytest does not capture)."""
    import logging

    records = []

    class Spy(logging.Handler):
        def emit(self, record):
            records.append(record)

    spy = Spy(level=logging.DEBUG)
    logger = logging.getLogger("optuna")
    logger.addHandler(spy)
    try:
        status = main(["tune", "--train", str(files / "train.txt"), "--out", str(tmp_path / "tune"),
                       "--n-trials", "2", "--max-epochs", "1", "--embed-dim", "8", "--hidden-dim",
                       "16", "--batch-size", "16", "--latent-dims", "4", "--gamma-range", "0.5",
                       "0.6", "--cv-splits", "2", "--cv-repeats", "1", "--quiet"])
    finally:
        logger.removeHandler(spy)
    out, err = capfd.readouterr()
    assert status == 0
    assert set(json.loads(out)["best_params"]) == {"vae__gamma", "vae__latent_dim"}   # the result
    assert err == ""
    assert [record.getMessage() for record in records if record.levelno < logging.WARNING] == []


def test_version_through_the_module_entry_point():
    result = subprocess.run([sys.executable, "-m", "ssl_textvae.cli", "--version"], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == f"ssl-textvae {ssl_textvae.__version__}"


PRETRAIN = ["embed_dim=8", "hidden_dim=16", "latent_dim=4", "max_epochs=1", "batch_size=16",
            "verbose=0", "random_state=0"]


def test_pretrain_reads_a_text_file_or_an_arrow_folder_and_writes_a_loadable_bnvae(files, capsys):
    import datasets

    texts = (files / "new.txt").read_text(encoding="utf-8").splitlines() + make_corpus(120, seed=23)[0]
    (files / "pool.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    datasets.Dataset.from_dict({"text": texts, "source": ["a"] * len(texts)}).save_to_disk(files / "arrow")
    from_file, from_arrow = files / "pretrained_file", files / "pretrained_arrow"
    assert main(["pretrain", "--texts", str(files / "pool.txt"), "--out", str(from_file),
                 *_params(PRETRAIN)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["processes"] == 1 and report["epochs"] == 1
    assert main(["pretrain", "--texts", str(files / "arrow"), "--text-column", "text",
                 "--out", str(from_arrow), *_params(PRETRAIN)]) == 0
    capsys.readouterr()
    first, second = ssl_textvae.load(from_file), ssl_textvae.BNVAE.load(from_arrow)
    assert os.path.exists(from_file / "checkpoints" / "checkpoint.pt")
    assert first.get_params()["device"] == "auto"
    assert [(r["train_loss"], r["valid_loss"]) for r in first.history_] == \
        [(r["train_loss"], r["valid_loss"]) for r in second.history_]   # the same texts
    assert first.transform(texts[:3]).shape == (3, 4)
    # the classifiers take it as it is
    assert main(["fit", str(files / "train.txt"), str(files / "head"), "--vae", str(from_file)]) == 0


@pytest.mark.parametrize("arguments, message", [
    (["--texts", "missing.txt"], "neither a text file nor a folder"),
    (["--texts", "ARROW", "--text-column", "body"], "Column 'body' not in"),
    (["--texts", "ARROW"], "has 2 string columns"),
    (["--texts", "POOL", "--param", "lr=-1"], "'lr' parameter of BNVAE"),
    (["--texts", "POOL", "--param", "batch_size=1"], "batch_size"),
])
def test_pretrain_errors_are_messages(files, tmp_path, capsys, arguments, message):
    import datasets

    pool, arrow = tmp_path / "pool.txt", tmp_path / "arrow"
    pool.write_text("\n".join(make_corpus(20)[0]) + "\n", encoding="utf-8")
    datasets.Dataset.from_dict({"text": ["a b"] * 8, "title": ["c"] * 8}).save_to_disk(arrow)
    arguments = [{"ARROW": str(arrow), "POOL": str(pool)}.get(a, a) for a in arguments]
    assert main(["pretrain", "--out", str(tmp_path / "model"), *arguments]) == 2
    assert message in capsys.readouterr().err
