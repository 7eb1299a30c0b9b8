"""recipes/yelp_table3.py and yelp_pretrain.py end to end on tiny data: both protocols, the
combined table, the pretraining curve and the quick run."""

import json
import sys
from pathlib import Path

import pytest

from conftest import TINY, make_corpus

from ssl_textvae import BNVAE

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
TINY_VAE = {k: v for k, v in TINY.items() if k not in ("random_state", "verbose", "max_epochs")}


class FakeEncoder:
    """Stands in for the sentence encoder: a count of the positive words as the embedding."""

    def encode(self, texts, batch_size=None):
        import numpy as np
        from conftest import POSITIVE

        return np.asarray([[sum(w in POSITIVE for w in t.split()), len(t)] for t in texts], dtype=float)


@pytest.fixture(scope="module")
def table3(tmp_path_factory):
    sys.path.insert(0, str(RECIPES))   # the recipes import common.py, as when run as scripts
    try:
        import common
        import yelp_pretrain
        import yelp_table3
    finally:
        sys.path.remove(str(RECIPES))
    patch = pytest.MonkeyPatch()
    patch.setattr(yelp_table3, "PAPER_FINE_TUNING", dict(yelp_table3.PAPER_FINE_TUNING, fine_tuning_max_epochs=2))
    patch.setattr(yelp_table3, "PAPER_VAE", dict(yelp_table3.PAPER_VAE, **TINY_VAE))
    patch.setattr(yelp_pretrain, "PAPER_VAE", dict(yelp_pretrain.PAPER_VAE, **TINY_VAE))
    patch.setattr(yelp_table3, "SINGLE_MODEL_FROM", 60)
    patch.setattr(yelp_table3, "SELF_TRAINING", {"pool_sentences": 50, "per_labeled": 1})
    patch.setattr(common, "sentence_encoder", lambda: FakeEncoder())
    yield yelp_table3, yelp_pretrain
    patch.undo()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    data = tmp_path_factory.mktemp("short_yelp")
    for name, (n, seed) in {"train.60": (60, 1), "valid": (80, 4), "test": (80, 2)}.items():
        texts, labels = make_corpus(n, seed=seed)
        (data / f"short_yelp.{name}.txt").write_text(
            "".join(f"{label}\t{text}\n" for text, label in zip(texts, labels)), encoding="utf-8")
    lines = (data / "short_yelp.train.60.txt").read_text().splitlines(keepends=True)
    (data / "short_yelp.train.20.txt").write_text("".join(lines[:20]), encoding="utf-8")
    pool, _ = make_corpus(300, seed=3)
    (data / "short_yelp.unlabeled.txt").write_text("\n".join(pool) + "\n", encoding="utf-8")
    return data


@pytest.fixture(scope="module")
def pretrained(table3, data_dir, tmp_path_factory):
    _, yelp_pretrain = table3
    runs = tmp_path_factory.mktemp("runs")
    args = ["--seed", "0", "--max-epochs", "2", "--data-dir", str(data_dir), "--run-dir", str(runs),
            "--curves-dir", str(runs / "curves"), "--largest-labeled", "60", "--verbose", "0"]
    yelp_pretrain.main(args)
    return runs


def test_pretraining_writes_a_loadable_snapshot_per_epoch(pretrained):
    seed = pretrained / "seed0"
    assert [p.name for p in sorted(seed.glob("epoch*"))] == ["epoch001", "epoch002"]
    first = BNVAE.load(seed / "epoch001")
    assert len(first.history_) == 1 and first.gamma == 0.7
    assert BNVAE.load(seed / "final").transform(["good food"]).shape == (1, TINY["latent_dim"])
    assert len((seed / "progress.jsonl").read_text().splitlines()) == 2


def test_a_resumed_pretraining_keeps_every_epoch_in_its_snapshots(table3, data_dir, tmp_path):
    _, yelp_pretrain = table3
    args = ["--seed", "0", "--data-dir", str(data_dir), "--run-dir", str(tmp_path), "--verbose", "0",
            "--curves-dir", str(tmp_path / "curves"), "--largest-labeled", "60"]
    yelp_pretrain.main([*args, "--max-epochs", "1"])
    curve = json.loads((tmp_path / "curves" / "seed0.json").read_text())
    assert [record["epoch"] for record in curve["epochs"]] == [1]
    yelp_pretrain.main([*args, "--max-epochs", "2"])          # resumes from epoch 1's checkpoint
    second = BNVAE.load(tmp_path / "seed0" / "epoch002")
    assert [record["epoch"] for record in second.history_] == [1, 2]
    curve = json.loads((tmp_path / "curves" / "seed0.json").read_text())
    assert [record["epoch"] for record in curve["epochs"]] == [1, 2]   # appended, epoch 1 kept
    assert curve["epochs"][0]["command"].endswith("--max-epochs 1")
    assert curve["epochs"][1]["command"].endswith("--max-epochs 2")


def test_pretraining_writes_each_epochs_validation_figures(pretrained, data_dir, table3, tmp_path):
    curve = json.loads((pretrained / "curves" / "seed0.json").read_text())
    assert curve["run"]["seed"] == 0 and curve["run"]["settings"]["gamma"] == 0.7
    assert [record["epoch"] for record in curve["epochs"]] == [1, 2]
    for record in curve["epochs"]:
        assert {"valid_loss", "valid_kl", "train_loss", "seconds"} <= set(record)
        assert record["command"].startswith("python recipes/yelp_pretrain.py --seed 0")
    assert not list((pretrained / "curves").glob(".*.tmp"))   # written through a renamed temporary
    # Another run (other sizes) into the same curve file replaces it instead of mixing epochs.
    _, yelp_pretrain = table3
    yelp_pretrain.main(["--seed", "0", "--max-epochs", "1", "--data-dir", str(data_dir),
                        "--run-dir", str(tmp_path), "--curves-dir", str(pretrained / "curves"),
                        "--largest-labeled", "20", "--pool-size", "50", "--hidden-dim", "16", "--verbose", "0",
                        "--optimizer", "adam", "--lr", "0.001", "--batch-size", "8"])   # another schedule
    curve = json.loads((pretrained / "curves" / "seed0.json").read_text())
    assert [record["epoch"] for record in curve["epochs"]] == [1]
    assert curve["run"]["pool_size"] == 50 and curve["run"]["settings"]["hidden_dim"] == 16
    assert {k: curve["run"]["settings"][k] for k in ("optimizer", "lr", "batch_size")} == \
        {"optimizer": "adam", "lr": 0.001, "batch_size": 8}
    final = BNVAE.load(tmp_path / "seed0" / "final")
    assert (final.hidden_dim, final.optimizer, final.lr, final.batch_size) == (16, "adam", 0.001, 8)


def test_evaluate_then_combine_gives_the_table3_json(table3, data_dir, pretrained, tmp_path):
    yelp_table3, _ = table3
    seeds = tmp_path / "seeds"
    common = ["--data-dir", str(data_dir), "--budgets", "20", "60"]
    model = str(pretrained / "seed0" / "epoch002")
    for seed in (0, 1):
        yelp_table3.main(["evaluate", *common, "--seed", str(seed), "--model", model,
                          "--out", str(seeds / f"seed{seed}.json")])
    # Budgets run separately on the same model join one record; another model replaces it.
    yelp_table3.main(["evaluate", "--data-dir", str(data_dir), "--budgets", "20", "--seed", "2", "--model",
                      str(pretrained / "seed0" / "epoch001"), "--out", str(seeds / "seed2.json")])
    yelp_table3.main(["evaluate", "--data-dir", str(data_dir), "--budgets", "60", "--seed", "2", "--model",
                      str(pretrained / "seed0" / "epoch001"), "--protocols", "paper", "--out", str(seeds / "seed2.json")])
    seed2 = json.loads((seeds / "seed2.json").read_text())
    assert set(seed2["rows"]["paper/bnvae_fine_tuned"]) == {"20", "60"}
    assert set(seed2["rows"]["few-label/bnvae_fine_tuned"]) == {"20"} and len(seed2["commands"]) == 2
    (seeds / "seed2.json").unlink()
    yelp_table3.main(["combine", "--seed-dir", str(seeds), "--out-prefix", str(tmp_path / "table3")])
    table = json.loads((tmp_path / "table3.json").read_text())
    assert set(table["protocol"]) == {"paper", "few-label"}
    assert table["protocol"]["paper"]["selection_data"].startswith("short_yelp.valid.txt")
    expected = {"paper/bnvae_fine_tuned", "few-label/bnvae_frozen_lr", "few-label/bnvae_fine_tuned",
                "few-label/bnvae_self_training", "few-label/tfidf_lr", "few-label/majority",
                "few-label/minilm_lr"}
    assert expected <= set(table["rows"])
    for row, values in table["rows"].items():
        assert set(values) <= {"20", "60"}
        assert all(len(accuracies) == 2 and all(0 <= a <= 100 for a in accuracies)
                   for accuracies in values.values()), row
    assert "20" in table["rows"]["few-label/bnvae_self_training"]
    assert "60" not in table["rows"]["few-label/bnvae_self_training"]   # SINGLE_MODEL_FROM
    assert [s["seed"] for s in table["seeds"]] == [0, 1]
    assert "--seed 1" in table["seeds"][1]["commands"][0]
    markdown = (tmp_path / "table3.md").read_text()
    assert " pretraining epochs, " in markdown and " min, validation KL" in markdown   # minutes per seed
    assert "| paper/bnvae_fine_tuned |" in markdown
    assert "BN-VAE (paper)" not in markdown   # the paper's row only beside its own budgets
    assert (tmp_path / "table3.png").stat().st_size > 0


def test_curve_reads_validation_only_and_resumes(table3, data_dir, pretrained, tmp_path):
    yelp_table3, _ = table3
    out = tmp_path / "curve.json"
    args = ["curve", "--data-dir", str(data_dir), "--budgets", "20", "60", "--seed", "0",
            "--run-dir", str(pretrained), "--out", str(out)]
    valid_texts = (data_dir / "short_yelp.valid.txt").read_text().splitlines()
    selected_on = []
    original_fit = yelp_table3.FineTunedBNVAEClassifier.fit

    def recording_fit(self, X, y, validation_data=None):
        selected_on.append([] if validation_data is None else list(validation_data[0]))
        return original_fit(self, X, y, validation_data=validation_data)

    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(yelp_table3.FineTunedBNVAEClassifier, "fit", recording_fit)
    try:
        yelp_table3.main([*args, "--epochs", "1", "3"])        # epoch 3 does not exist: skipped
    finally:
        monkeypatch.undo()
    points = json.loads(out.read_text())["points"]
    assert [p["epoch"] for p in points] == [1]
    assert set(points[0]["accuracy"]) == {f"{row}/{n}" for row in ("frozen_lr", "fine_tuned", "paper")
                                          for n in (20, 60)}
    assert points[0]["valid_active_units"] is not None
    # The paper protocol selects on the validation file's first half only (scored on the second);
    # the few-label folds select on labeled rows, never on the validation file.
    first_half = [line.split("\t", 1)[1] for line in valid_texts[:len(valid_texts) // 2]]
    assert first_half in selected_on
    assert all(chosen == first_half or not set(chosen) & set(first_half) for chosen in selected_on)
    args.remove("60")                                       # fewer budgets later
    yelp_table3.main([*args, "--epochs", "1", "2"])        # epoch 1 kept, epoch 2 added
    assert [p["epoch"] for p in json.loads(out.read_text())["points"]] == [1, 2]


def test_time_to_accuracy_applies_the_stored_schedule_rule(tmp_path, monkeypatch):
    sys.path.insert(0, str(RECIPES))
    try:
        import yelp_time_to_accuracy as tta
    finally:
        sys.path.remove(str(RECIPES))

    def point(epoch, minutes, a100, a1000, kl=8.5, units=32):
        return {"epoch": epoch, "pretraining_minutes": minutes, "valid_kl": kl, "valid_active_units": units,
                "accuracy": {"fine_tuned/100": a100, "fine_tuned/1000": a1000, "paper/100": a100 + 1}}

    paper = [point(2, 20, 83.0, 89.0), point(6, 53, 87.5, 91.2)]

    def run(candidate, name):
        schedules = {key: dict(schedule, curve=tmp_path / f"{key}-{name}.json") for key, schedule in tta.SCHEDULES.items()}
        for key, points in ((tta.REFERENCE, paper), ("adaptive softmax", candidate)):
            schedules[key]["curve"].write_text(json.dumps({"points": points}))
        monkeypatch.setattr(tta, "SCHEDULES", schedules)
        tta.main(["--out-prefix", str(tmp_path / name)])
        return json.loads((tmp_path / f"{name}.json").read_text())

    better = run([point(4, 30, 86.0, 90.0), point(12, 58, 88.0, 91.5), point(16, 75, 95.0, 95.0)], "better")
    assert better["stored"] == "adaptive softmax" and better["schedules"]["adaptive softmax"]["judged_epoch"] == 12
    assert better["stored_pretraining"] == {"softmax": "adaptive", "max_epochs": 12}   # gpu_run.py reads it
    assert (tmp_path / "better.png").stat().st_size > 0 and "**adaptive softmax**" in (tmp_path / "better.md").read_text()
    # Better on the mean but worse at 1,000 labels: the paper schedule stays.
    assert run([point(12, 58, 90.0, 91.0)], "one_worse")["stored"] == tta.REFERENCE
    # Only a point past the budget is better: judged within the budget, so the paper schedule stays.
    assert run([point(8, 40, 86.0, 90.0), point(16, 75, 95.0, 95.0)], "late")["stored"] == tta.REFERENCE
    # Better, but under the KL bound or with an inactive unit: not taken.
    assert run([point(12, 58, 88.0, 91.5, kl=7.0)], "collapsed")["stored"] == tta.REFERENCE
    assert run([point(12, 58, 88.0, 91.5, units=31)], "inactive")["stored"] == tta.REFERENCE


def test_quick_run_writes_the_few_label_table(table3, data_dir, tmp_path, monkeypatch):
    yelp_table3, _ = table3
    # SetFit at the quick run's SetFit budget only, on the same labels (faked: no model download)
    seen = []
    monkeypatch.setitem(yelp_table3.QUICK, "setfit_budgets", [20])
    monkeypatch.setattr(yelp_table3, "missing", lambda module: None)
    monkeypatch.setattr(yelp_table3, "setfit", lambda texts, y, test, seed: seen.append(len(texts)) or (88.5, 1.0))
    yelp_table3.main(["quick", "--data-dir", str(data_dir), "--budgets", "20", "60", "--verbose", "0", "--serial",
                      "--out-prefix", str(tmp_path / "quick")])
    quick = json.loads((tmp_path / "quick.json").read_text())
    assert set(quick["protocol"]) == {"few-label"}
    assert quick["protocol"]["few-label"]["pretraining"]["softmax"] == "adaptive"
    assert not any(row.startswith("paper/") for row in quick["rows"])
    assert quick["seconds"]["total"] >= quick["seconds"]["pretraining"] > 0
    assert seen == [20] and quick["rows"]["few-label/setfit"] == {"20": [88.5]}
    # The pool's minutes follow the machine kind's time target: bf16 where it runs, else fp32.
    from ssl_textvae import presets
    assert quick["pool"]["minutes"] == yelp_table3.QUICK["pretrain_minutes"][presets.native_precision()]


def test_each_subcommand_keeps_its_own_default_budgets(table3):
    yelp_table3, _ = table3
    parser = yelp_table3.build_parser()
    assert parser.parse_args(["evaluate", "--seed", "0", "--model", "m"]).budgets == [100, 500, 1000, 2000, 10000]
    assert parser.parse_args(["curve", "--seed", "0", "--epochs", "1"]).budgets == [100, 1000]
    assert parser.parse_args(["quick"]).budgets == [100, 500, 1000]
