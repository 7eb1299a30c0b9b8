"""benchmarks/gpu_run.py: its dry run (the same steps as on a GPU, on the CPU at a tiny size)
writes at most 8 valid JSON files under 16 MiB each; the pool plan fits the budget."""

import importlib.util
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "benchmarks" / "gpu_run.py"
DATA_DIR = REPO_ROOT.parent / "shared" / "data" / "short_yelp_li2019"
needs_data = pytest.mark.skipif(not (DATA_DIR / "short_yelp.unlabeled.txt").exists(),
                                reason="needs the short-Yelp files in ../shared/data")


@pytest.fixture(scope="module")
def gpu_run():
    spec = importlib.util.spec_from_file_location("gpu_run", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_dry(tmp_path, *extra):
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT))
    result = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", *extra, "--out", str(out),
                             "--work-dir", str(tmp_path / "work")], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    files = sorted(out.iterdir())
    assert 0 < len(files) <= 8
    payloads = {}
    for path in files:
        assert path.stat().st_size < 16 * 2**20, path
        payloads[path.name] = json.loads(path.read_text(encoding="utf-8"))
    return payloads


def check_run(payloads, seeds_budgets):
    assert set(payloads) == {"gpu_run.json", "gpu_tests.json", "bench_pretrain.json",
                             "yelp_table3_seeds.json", "yelp_table3.json"}
    report = payloads["gpu_run.json"]
    assert report["finished"] and report["device"] == "cpu" and report["torch"]
    assert report["tests"]["rc"] == 0 and report["tests"]["collected"] >= 1   # the gpu tests import
    assert payloads["gpu_tests.json"]["collect_only"]
    assert report["bench"]["rc"] == 0 and payloads["bench_pretrain.json"]["benchmark"] == "pretrain"
    pretraining = report["pretraining"]
    assert pretraining["pool_size"] == report["sizes"]["pool_size"]
    for seed in ("0", "1", "2"):
        summary = pretraining["seeds"][seed]
        assert summary["epochs"] == 1 and summary["minutes"] > 0 and summary["model"].endswith("final")
        assert summary["curve"][0]["command"].startswith("python recipes/yelp_pretrain.py --seed " + seed)
        assert set(payloads["yelp_table3_seeds.json"][seed]["rows"]["paper/bnvae_fine_tuned"]) == seeds_budgets
    assert all(p["rc"] == 0 for p in report["evaluate"]["processes"])
    table = payloads["yelp_table3.json"]
    assert [s["seed"] for s in table["seeds"]] == [0, 1, 2]
    assert all(len(values) == 3 for values in table["rows"]["few-label/bnvae_fine_tuned"].values())


@needs_data
def test_tiny_dry_run_writes_valid_json(tmp_path):
    check_run(run_dry(tmp_path, "--tiny"), {"100"})


@needs_data
@pytest.mark.slow
def test_dry_run_writes_valid_json(tmp_path):
    check_run(run_dry(tmp_path), {"100", "500"})


def test_pool_plan_shrinks_the_pool_to_fit_half_the_window(gpu_run):
    sizes = gpu_run.SIZES["gpu"]
    whole = gpu_run.plan_pool(sizes, 175606, window=600, seconds_per_sentence=1e-4, n_parallel=3)
    assert whole["pool_size"] == 175606 and whole["reason"] == "the mode's pool"
    shrunk = gpu_run.plan_pool(sizes, 175606, window=60, seconds_per_sentence=1e-4, n_parallel=3)
    assert abs(shrunk["pool_size"] - (100000 - 10000)) <= 1   # 0.5 * 60 s / 3e-4 s, less train.10000
    assert shrunk["predicted_first_epoch_seconds"] == pytest.approx(30.0, abs=0.01)
    assert gpu_run.plan_pool(sizes, 175606, 60, None, 3)["pool_size"] == 175606   # no bench figure
    assert gpu_run.plan_pool(sizes, 175606, 1, 1e-4, 3)["pool_size"] == 1000      # a floor


def test_gpu_run_refuses_a_foreign_work_dir_and_tiny_without_dry_run(gpu_run, tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(SystemExit, match="not made by gpu_run"):
        gpu_run.main(["--dry-run", "--out", str(tmp_path / "out"), "--work-dir", str(tmp_path)])
    assert (tmp_path / "mine.txt").exists()
    with pytest.raises(SystemExit, match="--dry-run --tiny"):
        gpu_run.main(["--tiny", "--out", str(tmp_path / "out")])


def test_the_gpu_mode_pretrains_the_stored_schedule(gpu_run, tmp_path):
    """The schedule yelp_time_to_accuracy.py stored (softmax and epochs) is what the GPU run
    pretrains, in yelp_pretrain.py's folder for that softmax; the paper's 6 epochs without it."""
    assert gpu_run.stored_pretraining(tmp_path / "absent.json") == {"softmax": "full", "max_epochs": 6}
    stored = tmp_path / "stored.json"
    stored.write_text(json.dumps({"stored_pretraining": {"softmax": "adaptive", "max_epochs": 11}}))
    assert gpu_run.stored_pretraining(stored) == {"softmax": "adaptive", "max_epochs": 11}
    assert gpu_run.SIZES["gpu"]["target_epochs"] == gpu_run.STORED["max_epochs"]
    sizes = dict(gpu_run.SIZES["dry-run"], softmax="adaptive")
    steps = types.SimpleNamespace(report={"data_dir": "d"}, work=tmp_path)
    (command,) = gpu_run.pretrain_commands(steps, sizes, [2], 100, 3)
    assert command[command.index("--softmax") + 1] == "adaptive"
    assert gpu_run.seed_folder(2, sizes) == "seed2_adaptive" and gpu_run.seed_folder(2, {}) == "seed2"
    # a stored schedule's other settings (its optimizer) reach yelp_pretrain.py, which takes them
    schedule = {"optimizer": "adam", "lr": 0.001, "batch_size": 64}
    (command,) = gpu_run.pretrain_commands(steps, dict(sizes, model=schedule), [2], 100, 3)
    sys.path.insert(0, str(Path(gpu_run.__file__).resolve().parents[1] / "recipes"))
    try:
        import yelp_pretrain
    finally:
        sys.path.pop(0)
    parsed = yelp_pretrain.build_parser().parse_args(command[2:])
    assert (parsed.optimizer, parsed.lr, parsed.batch_size, parsed.softmax) == ("adam", 0.001, 64, "adaptive")
