"""The command line on CSV and JSON Lines files (ssl_textvae.text.tables): fit, predict, evaluate,
tune by column name, unlabeled rows, --auto-vae, --cv, and errors naming file, line and column."""

import csv
import json

import numpy as np
import pytest

import ssl_textvae
from ssl_textvae import read_table
from ssl_textvae.cli import main

from conftest import make_corpus

TINY_VAE = ["vae__embed_dim=8", "vae__hidden_dim=16", "vae__latent_dim=4", "vae__max_epochs=1",
            "vae__batch_size=16", "vae__verbose=0", "vae__random_state=0", "vae__tokenizer=word"]
PARAMS = [argument for name in TINY_VAE for argument in ("--param", name)]
TUNE_PARAMS = [argument for name in TINY_VAE if "latent_dim" not in name and "random_state" not in name for argument in ("--param", name)]


def rows(n=120, n_labeled=40, seed=31):
    texts, labels = make_corpus(n, seed=seed)
    names = np.where(np.asarray(labels) == 1, "positive", "negative")
    return [{"body": text, "queue": str(name) if i < n_labeled else ""}
            for i, (text, name) in enumerate(zip(texts, names))]


def write(path, table):
    if path.suffix == ".csv":
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(table[0]))
            writer.writeheader()
            writer.writerows(table)
    else:   # JSON Lines: unlabeled rows with a null label, -1, or no label at all
        lines = [dict(row, queue=row["queue"] or [None, -1, "-1"][i % 3]) for i, row in enumerate(table)]
        for line in [line for line, row in zip(lines, table) if not row["queue"]][-5:]:
            line.pop("queue", None)
        path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


COLUMNS = ["--text-column", "body", "--label-column", "queue"]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_fit_predict_evaluate_tune_on_a_table(tmp_path, capsys, suffix):
    train = write(tmp_path / f"tickets{suffix}", rows())
    model_dir = tmp_path / "model"
    assert main(["fit", str(train), str(model_dir), *COLUMNS, *PARAMS, "--param", "word_weight=1.5",
                 "--cv", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_texts"] == 120 and report["n_labeled"] == 40
    assert report["classes"] == ["negative", "positive"]
    assert set(report["cv_accuracy"]) == {"BNVAEClassifier", "majority", "tfidf_lr"}
    assert all(len(s["folds"]) == 2 and 0 <= s["mean"] <= 1 for s in report["cv_accuracy"].values())
    model = ssl_textvae.load(model_dir)
    assert model.word_weight == 1.5 and model.words_ is not None

    new = write(tmp_path / f"new{suffix}", [{"body": row["body"], "queue": ""} for row in rows(12, 0, 32)])
    assert main(["predict", str(model_dir), str(new), "--text-column", "body"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 12 and set(lines) <= {"negative", "positive"}   # one line per row
    out = tmp_path / f"predictions{suffix}"
    assert main(["predict", str(model_dir), str(new), "--text-column", "body", "--output", str(out)]) == 0
    texts, predictions = read_table(out, "body", "prediction")
    assert texts == [row["body"] for row in rows(12, 0, 32)] and predictions == lines

    test = write(tmp_path / f"test{suffix}", rows(30, 30, 33))
    assert main(["evaluate", str(model_dir), str(test), *COLUMNS, "--labeled", "-k", "2",
                 "--json", str(tmp_path / "metrics.json")]) == 0
    assert 0 <= json.loads((tmp_path / "metrics.json").read_text())["accuracy"] <= 1
    capsys.readouterr()

    assert main(["tune", "--train", str(train), *COLUMNS, "--out", str(tmp_path / "tune"),
                 "--n-trials", "1", "--latent-dims", "4", "--cv-splits", "2", "--cv-repeats", "1",
                 "--quiet", *TUNE_PARAMS]) == 0
    assert set(json.loads(capsys.readouterr().out)["best_params"]) == {"vae__gamma", "vae__latent_dim"}


def test_missing_and_minus_one_labels_are_unlabeled(tmp_path):
    path = tmp_path / "rows.jsonl"
    table = [{"text": "a b", "label": 1}, {"text": "c d", "label": None}, {"text": "e f"},
             {"text": "g h", "label": ""}, {"text": "i j", "label": -1}, {"text": "k l", "label": 2.0}]
    path.write_text("".join(json.dumps(row) + "\n" for row in table), encoding="utf-8")
    assert read_table(path) == (["a b", "c d", "e f", "g h", "i j", "k l"], ["1", "-1", "-1", "-1", "-1", "2"])
    csv_path = tmp_path / "rows.csv"
    csv_path.write_text("\ufefftext,label\na b,x\nc d,\ne f,-1\n", encoding="utf-8")   # a BOM too
    assert read_table(csv_path) == (["a b", "c d", "e f"], ["x", "-1", "-1"])


def test_auto_vae_picks_settings_from_the_texts_and_params_win(tmp_path, capsys, monkeypatch):
    from ssl_textvae import _cli_data

    raw = ["Call me back, please.", "Free entry!! Text WIN now.", "ok, see you (later)"] * 10
    picked = _cli_data.auto_vae_params(raw, {})
    assert picked["vae__tokenizer"] == "bpe" and picked["vae__hidden_dim"] == 128
    given = _cli_data.auto_vae_params(raw, {"vae__tokenizer": "word", "vae__hidden_dim": 32})
    assert given["vae__tokenizer"] == "word" and given["vae__hidden_dim"] == 32
    assert given["vae__max_vocab_size"] == 30_000   # pre-tokenized: the word tokenizer's picks
    train = write(tmp_path / "tickets.csv", rows())
    assert main(["fit", str(train), str(tmp_path / "m"), *COLUMNS, "--auto-vae", *PARAMS]) == 0
    model = ssl_textvae.load(tmp_path / "m")
    assert model.get_params()["vae__latent_dim"] == 4 and model.get_params()["vae__min_frequency"] == 2


def test_errors_name_the_file_line_and_column(tmp_path, capsys):
    train = write(tmp_path / "tickets.csv", rows())
    assert main(["fit", str(train), str(tmp_path / "m"), *PARAMS]) == 2
    assert "no column 'text'; its columns are ['body', 'queue']. Pick one with text_column " \
           "(--text-column)" in capsys.readouterr().err
    table = rows()
    table[3]["body"] = " "
    write(train, table)
    assert main(["fit", str(train), str(tmp_path / "m"), *COLUMNS, *PARAMS]) == 2
    assert "tickets.csv, line 5, column 'body': expected a non-empty text, got ' '" in capsys.readouterr().err
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "a", "label": 1}\n[1, 2]\n{not json\n')
    with pytest.raises(ValueError, match="broken.jsonl, line 2: expected a JSON object, got list"):
        read_table(broken)
    broken.write_text('{"text": "a", "label": 1}\n{not json\n')
    with pytest.raises(ValueError, match="broken.jsonl, line 2: not valid JSON"):
        read_table(broken)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text,label\ngood food,1\ncaf\u00e9 cr\u00e8me,0\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"line 3 holds the byte 0xe9"):
        read_table(latin)
    assert read_table(latin, encoding="latin-1")[0][1] == "caf\u00e9 cr\u00e8me"
    assert main(["fit", str(write(tmp_path / "t.csv", rows())), str(tmp_path / "m"), *COLUMNS, *PARAMS,
                 "--cv", "1"]) == 2
    assert "--cv must be at least 2" in capsys.readouterr().err
    unlabeled = write(tmp_path / "test.csv", rows(30, 20, 33))
    assert main(["evaluate", str(tmp_path / "m"), str(unlabeled), *COLUMNS, "--labeled"]) == 2
    assert "test.csv, line 22, column 'queue': no label" in capsys.readouterr().err
