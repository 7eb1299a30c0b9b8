"""The recipes run end to end on tiny data: files written, numbers in range, errors clear."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import make_corpus

import ssl_textvae
from ssl_textvae import BNVAE

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
TINY_ARGS = ["--max-epochs", "1", "--latent-dim", "4", "--embed-dim", "16", "--hidden-dim", "32",
             "--verbose", "0"]


def load_recipe(name):
    if str(RECIPES) not in sys.path:   # as when a recipe runs as a script: its folder on sys.path
        sys.path.insert(0, str(RECIPES))
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", RECIPES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def yelp_recipe():
    return load_recipe("yelp_low_label")


def write_labeled(path, texts, labels):
    path.write_text("".join(f"{label}\t{text}\n" for text, label in zip(texts, labels)), encoding="utf-8")


@pytest.fixture()
def fake_yelp_dir(tmp_path):
    """The file names of short Yelp, filled with the synthetic corpus."""
    data = tmp_path / "data"
    data.mkdir()
    texts, labels = make_corpus(60, seed=1)
    write_labeled(data / "short_yelp.train.60.txt", texts, labels)
    write_labeled(data / "short_yelp.train.20.txt", texts[:20], labels[:20])
    write_labeled(data / "short_yelp.test.txt", *make_corpus(60, seed=2))
    pool, _ = make_corpus(200, seed=3)
    (data / "short_yelp.unlabeled.txt").write_text("\n".join(pool) + "\n", encoding="utf-8")
    return data


def run_yelp(recipe, data_dir, out, seeds, *extra):
    return recipe.main(["--data-dir", str(data_dir), "--quick", "--budgets", "20", "60",
                        "--pool-size", "150", "--self-training-size", "40", "--seeds", *seeds,
                        "--out-dir", str(out), *TINY_ARGS, *extra])


def test_yelp_recipe_writes_results_table_and_plot(yelp_recipe, fake_yelp_dir, tmp_path):
    out = tmp_path / "run"
    output = run_yelp(yelp_recipe, fake_yelp_dir, out, ["0"], "--save-vae")
    for name in ("results.json", "results.md", "accuracy_vs_labels.png"):
        assert (out / name).stat().st_size > 0
    saved = json.loads((out / "results.json").read_text())
    assert saved["ssl_textvae_version"] == output["ssl_textvae_version"]
    assert saved["argv"][0] == "recipes/yelp_low_label.py" and "--quick" in saved["argv"]
    assert saved["settings"]["vae"]["latent_dim"] == 4 and saved["settings"]["pool_size"] == 150
    assert saved["settings"]["vae"]["gamma"] == 0.7   # from recipes/configs/short_yelp.json
    assert saved["pretraining"]["n_texts"] == 150 + 60
    assert set(saved["results"]) == {"majority", "tfidf_lr", "plain_vae_lr", "bnvae_lr",
                                     "bnvae_self_training", "bnvae_fine_tuned"}
    assert BNVAE.load(out / "bnvae_seed0").transform(["good food"]).shape == (1, 4)
    for method in saved["results"].values():
        for budget in ("20", "60"):
            entry = method[budget]
            assert entry["n"] == 1 and entry["std"] is None
            assert 0 <= entry["accuracies"][0] <= 1
            assert entry["mean"] == pytest.approx(100 * entry["accuracies"][0])
    test_labels = np.asarray([int(line.split("\t")[0]) for line in
                              (fake_yelp_dir / "short_yelp.test.txt").read_text().splitlines()])
    majority_of_20 = np.bincount([int(line.split("\t")[0]) for line in (
        fake_yelp_dir / "short_yelp.train.20.txt").read_text().splitlines()]).argmax()
    assert saved["results"]["majority"]["20"]["mean"] == pytest.approx(
        100 * np.mean(test_labels == majority_of_20))
    table = (out / "results.md").read_text()
    assert "| BN-VAE + LR |" in table and "| Plain VAE (gamma 0) + LR |" in table
    assert "| BN-VAE, encoder fine-tuned |" in table and "Fine-tuned:" in table
    assert saved["command"] in table and "no standard deviation" in table
    assert saved["full_run_estimate"]["seconds_per_epoch"] > 0


def test_yelp_recipe_takes_the_softmax_from_the_command_line(yelp_recipe, fake_yelp_dir):
    args = yelp_recipe.build_parser().parse_args(["--data-dir", str(fake_yelp_dir), "--softmax",
                                                  "adaptive"])
    assert yelp_recipe.resolve_settings(args)["vae"]["softmax"] == "adaptive"
    default = yelp_recipe.build_parser().parse_args(["--data-dir", str(fake_yelp_dir)])
    assert "softmax" not in yelp_recipe.resolve_settings(default)["vae"]   # BNVAE's default: full
    with pytest.raises(SystemExit):
        yelp_recipe.build_parser().parse_args(["--softmax", "sampled"])


@pytest.mark.slow
def test_yelp_recipe_reports_spread_over_seeds(yelp_recipe, fake_yelp_dir, tmp_path):
    saved = run_yelp(yelp_recipe, fake_yelp_dir, tmp_path / "run", ["0", "1"])
    for method in saved["results"].values():
        assert all(entry["n"] == 2 and entry["std"] is not None for entry in method.values())
    assert saved["results"]["majority"]["20"]["std"] == 0   # the majority does not depend on seeds
    assert len(saved["pretraining"]["histories"]) == 4      # two seeds x (BN-VAE, plain VAE)
    assert " ± " in (tmp_path / "run" / "results.md").read_text()


def test_yelp_recipe_explains_a_missing_data_dir(yelp_recipe, tmp_path):
    with pytest.raises(FileNotFoundError, match="check --data-dir"):
        yelp_recipe.main(["--data-dir", str(tmp_path), "--quick", "--out-dir", str(tmp_path / "out")])


def test_yelp_recipe_refuses_a_bad_budget(yelp_recipe, fake_yelp_dir, tmp_path):
    with pytest.raises(ValueError, match="Budgets must be positive"):
        yelp_recipe.main(["--data-dir", str(fake_yelp_dir), "--budgets", "0", "--out-dir", str(tmp_path)])


def test_yelp_recipe_tune_without_tuning_module_is_a_clear_error(yelp_recipe, fake_yelp_dir, tmp_path,
                                                                 monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ssl_textvae.tuning", None)   # import now raises ImportError
    write_labeled(fake_yelp_dir / "short_yelp.valid.txt", *make_corpus(20, seed=5))
    with pytest.raises(SystemExit, match="--tune needs ssl_textvae.tuning"):
        yelp_recipe.main(["--data-dir", str(fake_yelp_dir), "--budgets", "20", "--tune", "2",
                          "--out-dir", str(tmp_path / "out"), *TINY_ARGS])


def test_prepare_short_yelp_copies_files_and_rebuilds_the_pool(tmp_path):
    import random

    prepare = load_recipe("prepare_short_yelp")
    short, shen, out = tmp_path / "short", tmp_path / "shen", tmp_path / "out"
    short.mkdir()
    shen.mkdir()
    for name in prepare.LABELED:
        texts = ["held out a", "held out b"] if name in ("valid", "test") else [f"{name} text"]
        write_labeled(short / f"short_yelp.{name}.txt", texts, [1] * len(texts))
    shen_lines = []
    for index, name in enumerate(prepare.SHEN_FILES):
        lines = [f"sentence {index} {j}" for j in range(5)] + ["held out a"]
        (shen / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        shen_lines += lines
    prepare.main(["--out-dir", str(out), "--short-yelp-source", str(short), "--shen-source", str(shen)])
    for name in prepare.LABELED:
        file = f"short_yelp.{name}.txt"
        assert (out / file).read_bytes() == (short / file).read_bytes()
    expected = [line for line in shen_lines if line != "held out a"]
    random.Random(20200427).shuffle(expected)
    assert (out / "short_yelp.unlabeled.txt").read_text().splitlines() == expected


@pytest.mark.slow
def test_prepare_short_yelp_reproduces_the_stored_pool(tmp_path):
    prepare = load_recipe("prepare_short_yelp")
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    if not (shared / "yelp_shen2017").is_dir():
        pytest.skip("the shared short Yelp and Shen data are not on this machine")
    digest = prepare.main(["--out-dir", str(tmp_path), "--short-yelp-source",
                           str(shared / "short_yelp_li2019"), "--shen-source", str(shared / "yelp_shen2017")])
    assert digest == prepare.POOL_SHA256


class FakeStudy:
    best_params = {"vae__gamma": 0.3, "vae__latent_dim": 6, "estimator__C": 2.0}
    best_value = 0.75


def fake_tuning(monkeypatch, calls):
    import sys
    import types

    module = types.ModuleType("ssl_textvae.tuning")

    def tune(texts, y, **kwargs):
        calls.append((list(texts), np.asarray(y), kwargs))
        return FakeStudy()

    module.tune = tune
    monkeypatch.setitem(sys.modules, "ssl_textvae.tuning", module)


def test_yelp_recipe_takes_the_tuned_gamma_and_latent_dim(yelp_recipe, fake_yelp_dir, tmp_path,
                                                          monkeypatch):
    calls = []
    fake_tuning(monkeypatch, calls)
    write_labeled(fake_yelp_dir / "short_yelp.valid.txt", *make_corpus(30, seed=5))
    saved = yelp_recipe.main(["--data-dir", str(fake_yelp_dir), "--budgets", "20", "--tune", "3",
                              "--pool-size", "100", "--self-training-size", "0",
                              "--out-dir", str(tmp_path / "out"), *TINY_ARGS])
    (texts, y, kwargs), = calls
    assert len(texts) == 30 and kwargs["n_trials"] == 3          # tuned on valid, never on test
    assert "vae__gamma" not in kwargs["fixed_params"] and kwargs["fixed_params"]["vae__embed_dim"] == 16
    assert saved["settings"]["vae"]["gamma"] == 0.3 and saved["settings"]["vae"]["latent_dim"] == 6
    assert "tuned here with 3 trials" in (tmp_path / "out" / "results.md").read_text()
    assert "bnvae_self_training" not in saved["results"]


def test_yelp_distributed_compares_one_process_with_torchrun_on_the_same_settings(tmp_path):
    recipe = load_recipe("yelp_distributed")
    args = recipe.argparse.Namespace(max_texts=500, epochs=2, processes=[1, 2])
    plain = recipe.pretrain_command(1, tmp_path / "pool.txt", tmp_path / "out", 3, args, "plain")
    two = recipe.pretrain_command(2, tmp_path / "pool.txt", tmp_path / "out", 3, args)
    assert "torch.distributed.run" not in plain and "--nproc-per-node=2" in two
    assert plain[plain.index("pretrain"):] == two[two.index("pretrain"):]   # the same pretraining either way
    assert "batch_size=32" in two and "random_state=3" in two and "max_epochs=2" in two
    runs = [{"seed": s, "launcher": launcher, "processes": p, "seconds": 1.0, "valid_kl": 8.0, "kl_bound": 7.84,
             "active_units": 32, "accuracy": {"100": acc, "1000": acc + 5}}
            for s, launcher, p, acc in [(0, "plain", 1, 70.0), (0, "torchrun", 1, 70.5), (0, "torchrun", 2, 71.0),
                                        (1, "plain", 1, 72.0), (1, "torchrun", 1, 72.5), (1, "torchrun", 2, 74.0)]]
    text = recipe.report(runs, args, "cmd")
    assert "mean 71.00 plain, 71.50 under torchrun 1 (+0.50), 72.50 under torchrun 2 (+1.50)" in text
    assert "spread of the plain run across seeds 2.00 points" in text
