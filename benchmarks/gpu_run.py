"""One GPU session's checks in one command, within a wall-clock budget; every result as JSON.

Steps, each a subprocess stopped at its share of ``--budget-minutes`` (default 9):

1. the ``gpu``-marked tests (``python -m pytest -q -m gpu``), their junit report as JSON;
2. ``benchmarks/bench_pretrain.py --device cuda`` (shortened repeats), its JSON;
3. the short-Yelp Table 3: seeds 0, 1 and 2 pretrained side by side on the one GPU (three
   ``recipes/yelp_pretrain.py`` processes at once, the same ``CUDA_VISIBLE_DEVICES``) towards the
   stored schedule (its softmax and epochs, ``recipes/figures/yelp_time_to_accuracy.json``; the
   paper schedule's 6 epochs without it). The first epoch's pool is sized from the benchmark's tokens/s so that it
   takes at most half the pretraining share; the number of further epochs from the first epoch's
   measured wall time (the rerun resumes from its checkpoint). Then ``recipes/yelp_table3.py
   evaluate`` per seed (both protocols, budgets 100 to 10,000, smallest first; each budget's rows
   are written as it ends), and ``combine``.

``--out DIR`` receives at most 5 JSON files: ``gpu_run.json`` (what ran: device name, torch
version, pool size, epochs, minutes per seed and step, each epoch's validation record, the plan
and the measurements it came from; rewritten after every step, so a run stopped part way leaves
valid JSON), ``gpu_tests.json``, ``bench_pretrain.json``, ``yelp_table3_seeds.json`` (the three
seed records) and ``yelp_table3.json``. Logs, checkpoints and snapshots stay in ``--work-dir``.

``--dry-run`` runs the same steps on the CPU at a tiny size (2,000 pool sentences, a tiny model,
one epoch, budgets 100 and 500, the first 500 validation and test lines, 2 fine-tuning epochs) and
only collects the gpu tests (``--collect-only``), in about 2 minutes on 2 cores; ``--tiny`` makes
it smaller still (the test suite's variant). Only the sizes and the device differ.

    python benchmarks/gpu_run.py --out benchmarks/results/gpu_run            # on a GPU machine
    OMP_NUM_THREADS=1 python benchmarks/gpu_run.py --dry-run --out /tmp/gpu_run_dry
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data" / "short_yelp_li2019"
POOL_FILE = "short_yelp.unlabeled.txt"
SEEDS = (0, 1, 2)
BUDGETS = (100, 500, 1000, 2000, 10000)
# The stored schedule, picked on validation data by recipes/yelp_time_to_accuracy.py (its JSON);
# the paper schedule's 6 epochs where that file is absent.
def stored_pretraining(path=REPO_ROOT / "recipes" / "figures" / "yelp_time_to_accuracy.json"):
    stored = json.loads(Path(path).read_text(encoding="utf-8")) if Path(path).exists() else {}
    return stored.get("stored_pretraining") or {"softmax": "full", "max_epochs": 6}


STORED = stored_pretraining()
# Cumulative shares of the budget at which each step is stopped (unused time passes on).
DEADLINES = {"tests": 0.08, "bench": 0.22, "pretrain": 0.55, "evaluate": 0.93, "combine": 0.98}
# Until measured, assume processes sharing the GPU do not overlap at all (the pessimistic case).
SHARED_GPU_SLOWDOWN_GUESS = len(SEEDS)
OUT_FILES = ("gpu_run.json", "gpu_tests.json", "bench_pretrain.json", "yelp_table3_seeds.json",
             "yelp_table3.json")
WORK_MARKER = "gpu_run_work_dir.json"

# The sizes of each mode: the only thing, with the device, that differs between them.
SIZES = {
    "gpu": {"device": "cuda", "pool_size": None, "largest_labeled": 10000,
            "model": {k: v for k, v in STORED.items() if k not in ("softmax", "max_epochs")},   # its optimizer
            "target_epochs": STORED["max_epochs"], "softmax": STORED["softmax"],
            "budgets": list(BUDGETS), "evaluate": [], "collect_only": False,
            "bench": ["--repeats", "5", "--ratio-pairs", "20", "--loss-steps", "200", "--loss-seeds", "2"]},
    "dry-run": {"device": "cpu", "pool_size": 2000, "largest_labeled": 10000,
                "model": {"embed_dim": 16, "hidden_dim": 32, "latent_dim": 4}, "target_epochs": 1,
                "budgets": [100, 500], "collect_only": True,
                "evaluate": ["--eval-size", "500", "--fine-tuning-max-epochs", "2"],
                "bench": ["--quick", "--pool-size", "2000", "--profile-steps", "0"]},
}
SIZES["tiny"] = dict(SIZES["dry-run"], pool_size=500, largest_labeled=500, budgets=[100],
                     evaluate=["--eval-size", "200", "--fine-tuning-max-epochs", "1", "--no-self-training"],
                     bench=["--quick", "--pool-size", "500", "--profile-steps", "0"])


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for the JSON files (at most 5)")
    parser.add_argument("--budget-minutes", type=float, default=9.0,
                        help="wall-clock budget of the whole run (default: %(default)s)")
    parser.add_argument("--dry-run", action="store_true",
                        help="the same steps on the CPU at a tiny size; gpu tests only collected")
    parser.add_argument("--tiny", action="store_true", help="with --dry-run: smaller still (the test's)")
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    parser.add_argument("--work-dir", default=None,
                        help="logs, checkpoints, snapshots (default: ~/runs/gpu_run, ~/runs/gpu_run_dry_run); "
                             "emptied at the start unless --resume")
    parser.add_argument("--resume", action="store_true",
                        help="keep --work-dir: pretraining continues from its checkpoints, same pool")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    return parser


# -- subprocesses -------------------------------------------------------------------------
class Steps:
    """Runs commands as process groups, stops them at a deadline, and keeps the report."""

    def __init__(self, out, work, started, budget_seconds, report):
        self.out, self.work, self.started, self.budget = out, work, started, budget_seconds
        self.report, self.running = report, []

    def deadline(self, step):
        return self.started + DEADLINES[step] * self.budget

    def left(self, step):
        return self.deadline(step) - time.time()

    def run(self, name, commands, env, deadline, on_tick=None):
        """Start ``commands`` at once; wait until all end or ``deadline``; stop the rest there.
        Returns one record per command: command, rc, seconds, stopped, log tail."""
        (self.work / "logs").mkdir(parents=True, exist_ok=True)
        records, processes = [], []
        for index, command in enumerate(commands):
            log_path = self.work / "logs" / f"{name}{'' if len(commands) == 1 else index}.log"
            log = open(log_path, "w", encoding="utf-8")
            print(f"[gpu_run] {name}: {shlex.join(command)}", flush=True)
            process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
            processes.append((process, log, log_path, time.time()))
            self.running.append(process)
            records.append({"command": shlex.join(command), "log": str(log_path)})
        last_tick, ended = time.time(), {}
        while True:
            for index, (process, *_) in enumerate(processes):
                if index not in ended and process.poll() is not None:
                    ended[index] = time.time()
            if len(ended) == len(processes):
                break
            if time.time() >= deadline:
                for (process, *_), record in zip(processes, records):
                    if process.poll() is None:
                        record["stopped_at_deadline"] = True
                        stop(process)
                break
            time.sleep(0.5)
            if on_tick is not None and time.time() - last_tick > 15:
                on_tick()
                last_tick = time.time()
        for index, ((process, log, log_path, start), record) in enumerate(zip(processes, records)):
            process.wait()
            log.close()
            self.running.remove(process)
            record.update(rc=process.returncode, seconds=round(ended.get(index, time.time()) - start, 1),
                          output_tail=tail(log_path))
        return records

    def stop_all(self):
        for process in list(self.running):
            stop(process)

    def save(self):
        self.report["seconds"] = round(time.time() - self.started, 1)
        write_json(self.out / "gpu_run.json", self.report)


def stop(process):
    """SIGTERM to the process group, SIGKILL after 10 s."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def tail(path, size=2000):
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    return text[-size:]


def write_json(path, payload):
    """Atomically: a temporary file renamed over ``path``."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def read_json(path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def child_env(device, n_parallel):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    # The seeds share one GPU: the same CUDA_VISIBLE_DEVICES for each; on the CPU, none at all.
    env["CUDA_VISIBLE_DEVICES"] = os.environ.get("CUDA_VISIBLE_DEVICES", "0") if device == "cuda" else ""
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // n_parallel)))
    return env


# -- steps --------------------------------------------------------------------------------
def gpu_test_files():
    """The test modules that carry the gpu marker (collecting the others would only cost time)."""
    return sorted(str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "tests").glob("test_*.py")
                  if "mark.gpu" in p.read_text(encoding="utf-8"))


def run_tests(steps, sizes, env):
    junit = steps.work / "gpu_tests.xml"
    command = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider",
               f"--junitxml={junit}", *(["--collect-only"] if sizes["collect_only"] else []),
               *gpu_test_files()]
    [record] = steps.run("tests", [command], env, steps.deadline("tests"))
    result = {**record, "collect_only": sizes["collect_only"], **junit_summary(junit)}
    log = Path(record["log"]).read_text(encoding="utf-8", errors="replace")
    result["collected"] = [line.strip() for line in log.splitlines() if "::" in line and " " not in line.strip()]
    write_json(steps.out / "gpu_tests.json", result)
    return {k: result[k] for k in ("command", "rc", "seconds", "collect_only", "summary")
            if k in result} | {"collected": len(result["collected"])}


def junit_summary(path):
    if not path.exists():
        return {}
    root = ElementTree.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    summary = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
    cases = []
    for case in suite.iter("testcase"):
        outcome, message = "passed", None
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome, message = child.tag, (child.get("message") or "")[:500]
        cases.append({"name": f"{case.get('classname')}::{case.get('name')}", "time": float(case.get("time", 0)),
                      "outcome": outcome, "message": message})
    return {"summary": summary, "cases": cases}


def run_bench(steps, sizes, env):
    path = steps.work / "bench_pretrain.json"
    command = [sys.executable, "benchmarks/bench_pretrain.py", "--device", sizes["device"],
               "--data-dir", steps.report["data_dir"], "--threads", env["OMP_NUM_THREADS"],
               "--out", str(path), "--figure", str(steps.work / "bench_pretrain.png"), *sizes["bench"],
               *model_arguments(sizes)]
    [record] = steps.run("bench", [command], env, steps.deadline("bench"))
    bench = read_json(path)
    if bench is not None:
        write_json(steps.out / "bench_pretrain.json", bench)
    return {**record, "wrote": bench is not None}, bench


def model_arguments(sizes):
    return [arg for name, value in sizes["model"].items() for arg in ("--" + name.replace("_", "-"), str(value))]


def bench_seconds_per_sentence(bench):
    """Training seconds per pool sentence of the default path, one process alone; None without a bench."""
    try:
        precision = bench["config"]["default_precision"]
        tokens_per_second = bench["throughput"][f"{precision} gamma=0.7"]["median_tokens_per_second"]
        return (bench["pool"]["mean_words"] + 1) / tokens_per_second
    except (KeyError, TypeError, ZeroDivisionError):
        return None


def count_lines(path):
    with open(path, "rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


def plan_pool(sizes, full_pool, window, seconds_per_sentence, n_parallel):
    """The pool of the run: the mode's size (the whole pool on a GPU), shrunk so that the first
    epoch of ``n_parallel`` processes, at the bench's speed and the pessimistic sharing guess,
    takes at most half of the pretraining ``window`` (seconds)."""
    cap = full_pool if sizes["pool_size"] is None else min(sizes["pool_size"], full_pool)
    plan = {"pool_cap": cap, "full_pool": full_pool, "window_seconds": round(window, 1),
            "bench_seconds_per_sentence": seconds_per_sentence, "shared_gpu_slowdown_guess": n_parallel}
    if seconds_per_sentence is None:
        plan.update(pool_size=cap, reason="no bench figure: the mode's pool")
        return plan
    fits = int(0.5 * window / (seconds_per_sentence * n_parallel)) - sizes["largest_labeled"]
    pool = max(min(cap, 1000), min(cap, fits))
    plan.update(pool_size=pool, predicted_first_epoch_seconds=round(
        (pool + sizes["largest_labeled"]) * seconds_per_sentence * n_parallel, 1),
        reason="the mode's pool" if pool == cap else "shrunk so the first epoch takes half the window")
    return plan


def pretrain_commands(steps, sizes, seeds, pool_size, epochs):
    return [[sys.executable, "recipes/yelp_pretrain.py", "--seed", str(seed), "--max-epochs", str(epochs),
             "--data-dir", steps.report["data_dir"], "--run-dir", str(steps.work / "runs"),
             "--curves-dir", str(steps.work / "curves"), "--pool-size", str(pool_size),
             "--largest-labeled", str(sizes["largest_labeled"]), "--device", sizes["device"], "--verbose", "1",
             "--softmax", sizes.get("softmax", "full"), *model_arguments(sizes)] for seed in seeds]


def seed_folder(seed, sizes):
    """yelp_pretrain.py's folder (and curve file) name of a seed under the mode's softmax."""
    softmax = sizes.get("softmax", "full")
    return f"seed{seed}" if softmax == "full" else f"seed{seed}_{softmax}"


def curves(work, seeds, sizes):
    return {str(seed): read_json(work / "curves" / f"{seed_folder(seed, sizes)}.json") for seed in seeds}


def pretraining_summary(work, seeds, sizes):
    summary = {}
    for seed, curve in curves(work, seeds, sizes).items():
        epochs = (curve or {}).get("epochs", [])
        summary[seed] = {"epochs": len(epochs), "training_minutes": round(sum(r["seconds"] for r in epochs) / 60, 2),
                         "curve": epochs}
    return summary


def run_pretraining(steps, sizes, seeds, env, bench):
    report = steps.report["pretraining"] = {"target_epochs": sizes["target_epochs"],
                                            "softmax": sizes.get("softmax", "full")}
    plan_path = steps.work / "plan.json"
    plan = read_json(plan_path) if steps.report["resumed"] else None
    if plan is None:
        full_pool = count_lines(Path(steps.report["data_dir"]) / POOL_FILE)
        plan = plan_pool(sizes, full_pool, steps.left("pretrain"), bench_seconds_per_sentence(bench), len(seeds))
        write_json(plan_path, plan)
    report["plan"] = plan
    report["pool_size"] = plan["pool_size"]
    steps.save()

    def tick():
        report["seeds"] = pretraining_summary(steps.work, seeds, sizes)
        steps.save()

    started = time.time()
    first = steps.run("pretrain_epoch1", pretrain_commands(steps, sizes, seeds, plan["pool_size"], 1), env,
                      steps.deadline("pretrain"), tick)
    report["first_epoch"] = {"wall_seconds": round(time.time() - started, 1), "processes": first}
    tick()
    done = [s["epochs"] for s in report["seeds"].values()]
    if min(done, default=0) >= 1 and sizes["target_epochs"] > 1:
        # The measured first epoch of processes sharing the device: its training time (the
        # slowest seed) per further epoch, and the rest of the wall time (start, tokenization,
        # validation, snapshot) once for the rerun.
        train = max(s["curve"][0]["seconds"] for s in report["seeds"].values())
        overhead = max(0.0, report["first_epoch"]["wall_seconds"] - train)
        per_epoch = 1.1 * train   # + validation and snapshot of each epoch
        further = max(0, math.floor((steps.left("pretrain") - overhead) / per_epoch))
        epochs = min(sizes["target_epochs"], 1 + further)
        report["continuation"] = {"measured_first_epoch_training_seconds": round(train, 1),
                                  "measured_overhead_seconds": round(overhead, 1),
                                  "per_epoch_estimate_seconds": round(per_epoch, 1), "max_epochs": epochs}
        steps.save()
        if epochs > 1:
            report["continuation"]["processes"] = steps.run(
                "pretrain_more", pretrain_commands(steps, sizes, seeds, plan["pool_size"], epochs), env,
                steps.deadline("pretrain") + 30, tick)   # 30 s of grace: the epoch nearly done ends
    tick()
    for seed, summary in report["seeds"].items():
        summary["minutes"] = round(sum(p["seconds"] for step in (report["first_epoch"], report.get("continuation", {}))
                                       for p in step.get("processes", []) if f"--seed {seed} " in p["command"]) / 60, 2)
        summary["model"] = snapshot_of(steps.work, int(seed), sizes)
    steps.save()


def snapshot_of(work, seed, sizes):
    """The model to evaluate: ``final`` when the run ended, else its last epoch snapshot."""
    folder = work / "runs" / seed_folder(seed, sizes)
    if (folder / "final" / "config.json").exists():
        return str(folder / "final")
    epochs = sorted(folder.glob("epoch[0-9][0-9][0-9]"))
    return str(epochs[-1]) if epochs else None


def merge_seed_results(steps, seeds):
    records = {str(seed): read_json(steps.work / "seeds" / f"seed{seed}.json") for seed in seeds}
    records = {seed: record for seed, record in records.items() if record is not None}
    if records:
        write_json(steps.out / "yelp_table3_seeds.json", records)
    return {seed: {"rows": sum(len(values) for values in record["rows"].values()),
                   "budgets": sorted({int(b) for values in record["rows"].values() for b in values})}
            for seed, record in records.items()}


def run_evaluate(steps, sizes, seeds, env):
    report = steps.report["evaluate"] = {"budgets": sizes["budgets"]}
    models = {seed: steps.report["pretraining"]["seeds"].get(str(seed), {}).get("model") for seed in seeds}
    commands = [[sys.executable, "recipes/yelp_table3.py", "evaluate", "--seed", str(seed), "--model", model,
                 "--data-dir", steps.report["data_dir"], "--budgets", *map(str, sizes["budgets"]),
                 "--out", str(steps.work / "seeds" / f"seed{seed}.json"),
                 "--pool-size", str(steps.report["pretraining"]["pool_size"]), *sizes["evaluate"]]
                for seed, model in models.items() if model is not None]
    report["missing_models"] = [seed for seed, model in models.items() if model is None]

    def tick():
        report["done"] = merge_seed_results(steps, seeds)
        steps.save()

    report["processes"] = steps.run("evaluate", commands, env, steps.deadline("evaluate"), tick)
    tick()


def run_combine(steps, seeds, env):
    if not list((steps.work / "seeds").glob("seed*.json")):
        steps.report["combine"] = {"skipped": "no seed results"}
        return
    prefix = steps.work / "yelp_table3"
    command = [sys.executable, "recipes/yelp_table3.py", "combine", "--seed-dir", str(steps.work / "seeds"),
               "--out-prefix", str(prefix)]
    [record] = steps.run("combine", [command], env, steps.deadline("combine"))
    table = read_json(prefix.with_suffix(".json"))
    if table is not None:
        write_json(steps.out / "yelp_table3.json", table)
    steps.report["combine"] = {**record, "wrote": table is not None}


def device_info(device):
    import torch

    info = {"torch": torch.__version__, "device": device, "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        info.update(device_name=torch.cuda.get_device_name(0), cuda=torch.version.cuda,
                    device_count=torch.cuda.device_count())
    return info


def prepare_work_dir(work, resume):
    """Empty the work folder of an earlier gpu_run (never a folder it did not make)."""
    if work.exists() and not resume and any(work.iterdir()):
        if not (work / WORK_MARKER).exists():
            raise SystemExit(f"--work-dir {work} is not empty and was not made by gpu_run.py; pick another.")
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    (work / WORK_MARKER).write_text(json.dumps({"made_by": "benchmarks/gpu_run.py"}) + "\n", encoding="utf-8")


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.tiny and not args.dry_run:
        raise SystemExit("--tiny is a size of the dry run; pass --dry-run --tiny.")
    mode = "tiny" if args.tiny else "dry-run" if args.dry_run else "gpu"
    sizes = SIZES[mode]
    started = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work_dir or Path.home() / "runs" / ("gpu_run" if mode == "gpu" else "gpu_run_dry_run"))
    prepare_work_dir(work, args.resume)
    command = shlex.join(["python", "benchmarks/gpu_run.py", *(sys.argv[1:] if argv is None else argv)])
    report = {"command": command, "mode": mode, "sizes": sizes, "seeds": args.seeds,
              "budget_minutes": args.budget_minutes, "deadline_shares": DEADLINES, "started": time.time(),
              "data_dir": str(Path(args.data_dir).resolve()), "work_dir": str(work), "resumed": args.resume,
              **device_info(sizes["device"])}
    steps = Steps(out, work, started, 60 * args.budget_minutes, report)

    def interrupted(signum, frame):   # e.g. an outer timeout: stop the children, keep the JSON
        steps.stop_all()
        report["interrupted_by_signal"] = signum
        steps.save()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    if sizes["device"] == "cuda" and not report["cuda_available"]:
        report["error"] = "no CUDA device visible to torch; use --dry-run on a CPU machine"
        steps.save()
        raise SystemExit(report["error"])
    steps.save()
    one = child_env(sizes["device"], 1)
    shared = child_env(sizes["device"], len(args.seeds))
    report["tests"] = run_tests(steps, sizes, one)
    steps.save()
    report["bench"], bench = run_bench(steps, sizes, one)
    steps.save()
    run_pretraining(steps, sizes, args.seeds, shared, bench)
    run_evaluate(steps, sizes, args.seeds, shared)
    steps.save()
    run_combine(steps, args.seeds, one)
    report["files"] = sorted(p.name for p in out.iterdir() if p.name in OUT_FILES)
    report["finished"] = True
    steps.save()
    print(f"[gpu_run] {mode} done in {(time.time() - started) / 60:.1f} min; JSON in {out}: "
          + ", ".join(report["files"]))


if __name__ == "__main__":
    main()
