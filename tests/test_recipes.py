"""The recipes run end to end on tiny data: files written, numbers in range, errors clear; and
the folder keeps its shape: one shared helper module, each helper defined once."""

import ast
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import make_corpus

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
MAX_LINES = 400
ENTRY_POINT_NAMES = {"main", "build_parser", "parse_args"}   # every script may have its own


def load_recipe(name):
    """A recipe loaded as a script runs: its folder on ``sys.path``, so ``from common import ...`` works."""
    if str(RECIPES) not in sys.path:
        sys.path.insert(0, str(RECIPES))
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", RECIPES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def recipes_common():
    """``recipes/common.py`` as the recipes import it (the module a test must patch)."""
    if str(RECIPES) not in sys.path:
        sys.path.insert(0, str(RECIPES))
    import common

    return common


def write_labeled(path, texts, labels):
    path.write_text("".join(f"{label}\t{text}\n" for text, label in zip(texts, labels)), encoding="utf-8")


# -- the shape of recipes/ ----------------------------------------------------------------
def recipe_files():
    return sorted(RECIPES.glob("*.py"))


def test_no_helper_is_defined_in_two_recipes():
    """A function or class lives in one recipe module (shared ones in common.py); only the entry
    points of a script (``main``, ``build_parser``, ``parse_args``) repeat."""
    defined = {}
    for path in recipe_files():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name not in ENTRY_POINT_NAMES:
                defined.setdefault(node.name, []).append(path.name)
    twice = {name: files for name, files in defined.items() if len(files) > 1}
    assert not twice, f"defined in more than one recipe (move it to recipes/common.py): {twice}"


def test_recipes_import_each_other_only_through_common():
    """One import style: ``from common import ...`` (the script's folder is on sys.path); no
    recipe imports another recipe, none edits sys.path."""
    stems = {path.stem for path in recipe_files()}
    found = []
    for path in recipe_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            modules = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                       else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{path.name}: import {m}" for m in modules if m.split(".")[0] in stems - {"common"}]
            if isinstance(node, ast.ImportFrom) and node.module == "common" and node.level == 0:
                continue
            if isinstance(node, ast.Import) and any(alias.name == "common" for alias in node.names):
                found.append(f"{path.name}: 'import common' (use 'from common import ...')")
            if isinstance(node, ast.Attribute) and node.attr in ("insert", "append") and \
                    ast.unparse(node.value) == "sys.path":
                found.append(f"{path.name}: edits sys.path")
    assert not found, found


def test_every_recipe_is_under_the_line_limit():
    long = {p.name: n for p in recipe_files() if (n := len(p.read_text(encoding="utf-8").splitlines())) >= MAX_LINES}
    assert not long, f"recipes of {MAX_LINES} lines or more: {long}"


def retired_scripts():
    """``{name: commit}`` of the "Retired scripts" table of recipes/README.md."""
    text = (RECIPES / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Retired scripts"):]
    return dict(re.findall(r"^\| `(?:recipes/)?([\w/]+\.\w+)` \|.*\| `([0-9a-f]{7,40})` \|$", section, re.M))


def test_documented_recipes_exist_or_are_listed_as_retired():
    """Every ``recipes/NAME.py`` the READMEs, data cards and code name is in the folder, or in
    the "Retired scripts" table with a commit that holds it (``git show COMMIT:recipes/NAME.py``)."""
    retired = retired_scripts()
    assert {"yelp_low_label.py", "pretrain_and_classify.py"} <= set(retired)
    sources = [ROOT / "README.md", RECIPES / "README.md", ROOT / "benchmarks" / "README.md",
               *sorted((ROOT / "data_cards").glob("*.md")), *recipe_files(),
               *sorted((ROOT / "benchmarks").glob("*.py")), *sorted((ROOT / "ssl_textvae").rglob("*.py"))]
    missing = {f"{source.relative_to(ROOT)}: recipes/{name}"
               for source in sources if source.exists()
               for name in re.findall(r"recipes/(\w+\.py)", source.read_text(encoding="utf-8"))
               if not (RECIPES / name).exists() and name not in retired}
    assert not missing, sorted(missing)
    assert not set(retired) & {p.name for p in recipe_files()}, "a retired script is still in recipes/"
    git = subprocess.run(["git", "rev-parse", "--is-shallow-repository"], cwd=ROOT, capture_output=True, text=True)
    if git.returncode != 0 or git.stdout.strip() != "false":
        pytest.skip("not a full git checkout: the retired scripts' commits cannot be checked")
    for name, commit in retired.items():
        shown = subprocess.run(["git", "cat-file", "-e", f"{commit}:recipes/{name}"], cwd=ROOT, capture_output=True)
        assert shown.returncode == 0, f"commit {commit} does not hold recipes/{name}"


# -- recipes/common.py ----------------------------------------------------------------------
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


def test_yelp_loaders_read_the_splits_and_explain_a_missing_data_dir(fake_yelp_dir, tmp_path):
    common = recipes_common()
    data = common.load_yelp(fake_yelp_dir, [20, 60], splits=("test",), eval_size=10)
    assert len(data["test"][0]) == 10 and data[20][1].dtype.kind == "i" and len(data[60][0]) == 60
    assert common.largest_labeled(fake_yelp_dir) == 60
    corpus = common.pretraining_corpus(fake_yelp_dir, 60, pool_size=50)
    assert len(list(corpus)) == 50 + 60
    with pytest.raises(FileNotFoundError, match="check --data-dir"):
        common.load_split(tmp_path, "test")
    with pytest.raises(FileNotFoundError, match="check --data-dir"):
        common.load_pool(tmp_path)
    write_labeled(tmp_path / "short_yelp.valid.txt", ["a text"], ["pos"])
    with pytest.raises(ValueError, match="labels must be integers"):
        common.load_split(tmp_path, "valid")


def test_baselines_share_one_head_and_fit_tfidf_on_the_corpus_only():
    common = recipes_common()
    texts, y = make_corpus(80, seed=1)
    test_texts, y_test = make_corpus(40, seed=2)
    pool, _ = make_corpus(200, seed=3)
    vectorizer = common.fit_tfidf(pool)
    vocabulary = dict(vectorizer.vocabulary_)
    model = common.tfidf_lr(vectorizer, texts, y, seed=0)
    assert vectorizer.vocabulary_ == vocabulary                 # the labels never refit it
    assert 0.5 <= model.score(test_texts, y_test) <= 1
    assert common.chosen_c(model) in common.C_GRID and 0 <= common.cv_accuracy(model) <= 1
    separable = np.c_[y + 0.5 * np.random.default_rng(0).random(len(y)), np.ones(len(y))]
    dense = common.cv_head(y, seed=0).fit(separable, y)
    assert dense.steps[0][0] == "standardscaler" and common.cv_accuracy(dense) == 1.0
    np.testing.assert_array_equal(common.majority(np.array(["b", "a", "b", "a"]), 3), ["a", "a", "a"])


def test_selection_folds_never_hold_out_a_class_with_one_label():
    common = recipes_common()
    y = np.array(["a"] * 6 + ["b"] * 2 + ["c"])
    folds = common.selection_folds(y, seed=0)
    assert len(folds) == 5
    held_out = np.concatenate([valid for _, valid in folds])
    assert sorted(held_out) == list(range(8))           # every row of a and b once, never c
    for train, valid in folds:
        assert 8 in train and not set(train) & set(valid)
        assert set(y[valid]) <= set(y[train])
    with pytest.raises(ValueError, match="expected at least 5"):
        common.selection_folds(np.array(["a", "a", "b", "c", "d"]), seed=0)


def test_selection_folds_are_stratified_k_fold_where_every_class_has_two_labels():
    """What keeps the Yelp and pretrained-encoder folds as they were before the folds were shared."""
    from sklearn.model_selection import StratifiedKFold

    common = recipes_common()
    y = np.array([0, 1] * 20 + [1] * 7)
    for n_folds in (2, 5):
        ours = common.selection_folds(y, seed=3, n_folds=n_folds)
        theirs = StratifiedKFold(n_folds, shuffle=True, random_state=3).split(np.zeros(len(y)), y)
        for (train, valid), (train_sk, valid_sk) in zip(ours, theirs, strict=True):
            np.testing.assert_array_equal(train, train_sk)
            np.testing.assert_array_equal(valid, valid_sk)


def test_ensemble_averages_probabilities_and_refuses_models_with_other_classes():
    common = recipes_common()

    class Model:
        def __init__(self, classes, proba=None):
            self.classes_, self.proba = np.array(classes), proba

        def predict_proba(self, texts):
            return np.tile(self.proba, (len(texts), 1))

    ensemble = common.Ensemble([Model(["a", "b"], [0.9, 0.1]), Model(["a", "b"], [0.2, 0.8])])
    assert list(ensemble.predict(["x", "y"])) == ["a", "a"] and ensemble.score(["x"], ["b"]) == 0.0
    with pytest.raises(ValueError, match="share their classes"):
        common.Ensemble([Model(["a", "b"]), Model(["a", "c"])])


def test_beside_runs_a_job_in_another_process_at_half_the_threads_and_passes_its_errors_on():
    import os

    import torch

    common = recipes_common()
    pid, threads = common.beside(os.getpid), common.beside(torch.get_num_threads)
    assert pid.result(timeout=120) != os.getpid()
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert threads.result(timeout=120) == max(1, cpus // 2)
    with pytest.raises(ValueError, match="invalid literal"):
        common.beside(int, "not a number").result(timeout=120)


def test_reports_keep_the_command_and_write_json_atomically(tmp_path):
    common = recipes_common()
    assert common.command_line("yelp_table3.py", ["quick", "--data-dir", "a b"]) == \
        "python recipes/yelp_table3.py quick --data-dir 'a b'"
    common.write_json(tmp_path / "deep" / "out.json", {"rows": [1]})
    assert (tmp_path / "deep" / "out.json").read_text(encoding="utf-8") == '{\n  "rows": [\n    1\n  ]\n}\n'
    assert not list((tmp_path / "deep").glob(".*.tmp")) and common.read_json(tmp_path / "none", 7) == 7
    assert [common.mean_sd(v) for v in ([], [80.0], [80.0, 82.0])] == ["—", "80.0", "81.0 ± 1.4"]
    assert common.mean_sd([80.0, 82.0], count=True) == "81.0 ± 1.4 (2)"
    assert common.parse_params("tokenizer=word,max_vocab_size=30000") == {"tokenizer": "word",
                                                                         "max_vocab_size": 30000}
    with pytest.raises(Exception, match="expected name=value"):
        common.parse_params("tokenizer")


# -- the scripts ----------------------------------------------------------------------------
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
    text = recipe.comparison_report(runs, args, "cmd")
    assert "mean 71.00 plain, 71.50 under torchrun 1 (+0.50), 72.50 under torchrun 2 (+1.50)" in text
    assert "spread of the plain run across seeds 2.00 points" in text
