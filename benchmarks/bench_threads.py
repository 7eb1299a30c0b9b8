"""Pretraining throughput on a shared CPU: the default thread policy against torch's
fixed default, beside a busy loop and beside another pretraining run.

Each measurement is a fresh subprocess that times ``BNVAE.fit`` (default model
settings: embeddings 128, LSTMs 512, latent 32, batch 32, full softmax) on a
synthetic corpus, ``--fits`` times after a short warm-up fit. Three conditions:

* ``idle``: the measured run alone (the reference, measured in the same run);
* ``busy_loop``: beside one single-threaded busy loop (``while True: pass``);
* ``pretraining``: beside another default-settings pretraining run of the package
  (a second subprocess fitting the same workload over and over, with the same
  thread policy, started and warmed up first; its own fits in the window are
  recorded too).

Two thread policies, interleaved condition by condition:

* ``adaptive``: the package's default (``ssl_textvae/threads.py``);
* ``fixed``: torch's default count for the whole fit (what the package did before),
  through ``SSL_TEXTVAE_NUM_THREADS``.

The children run without ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` and
``SSL_TEXTVAE_NUM_THREADS`` from the caller's environment (``--keep-thread-env``
keeps them), so both policies start from torch's default. The script starts and
stops its competing processes itself; run it on an otherwise quiet machine, since
the idle reference must be idle. It prints and saves (JSON under
``benchmarks/results/``) each condition's fit throughput and its ratio to the
idle throughput of the same policy and of the fixed policy.

    python benchmarks/bench_threads.py            # about 4-6 minutes on 2 cores
    python benchmarks/bench_threads.py --quick    # a tiny model: checks the script, not the machine
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks._common import REPO_ROOT, RESULTS_DIR, machine, print_table, write_json, zipf_texts  # noqa: E402

POLICIES = ("adaptive", "fixed")
CONDITIONS = ("idle", "busy_loop", "pretraining")
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "SSL_TEXTVAE_NUM_THREADS")
TINY_MODEL = dict(embed_dim=32, hidden_dim=64, latent_dim=8)


def synthetic_texts(n_texts, vocab_size=5000, min_words=5, max_words=15, seed=0):
    """Texts of Zipf-distributed words, as a text VAE's pool would be."""
    return zipf_texts(n_texts, vocab_size, min_words, max_words, seed)


# -- children --------------------------------------------------------------------------------

def child(args):
    """Runs in a subprocess: warm-up fit, then timed fits; ``--child loop`` fits until killed,
    appending each fit's record to ``--log`` (the competing pretraining run)."""
    import torch

    if args.policy == "fixed":   # torch's default count for the whole fit, as before the policy
        os.environ["SSL_TEXTVAE_NUM_THREADS"] = str(torch.get_num_threads())
    else:
        os.environ.pop("SSL_TEXTVAE_NUM_THREADS", None)
    from ssl_textvae import BNVAE

    texts = synthetic_texts(args.texts)
    params = dict(max_epochs=args.epochs, verbose=0, random_state=0)
    if args.quick:
        params.update(TINY_MODEL)
    BNVAE(**dict(params, max_epochs=1)).fit(texts[: max(64, len(texts) // 5)])   # warm-up
    if args.log:
        with open(args.log, "a") as log:
            log.write(json.dumps({"ready": time.time()}) + "\n")
    fits = []
    while args.child == "loop" or len(fits) < args.fits:
        start_wall, start = time.time(), time.perf_counter()
        vae = BNVAE(**params).fit(texts)
        seconds = time.perf_counter() - start
        record = {"seconds": seconds, "start": start_wall, "end": time.time(),
                  "texts_per_second": args.texts * args.epochs / seconds,
                  "mean_threads": statistics.mean(r["mean_threads"] for r in vae.history_)}
        fits.append(record)
        if args.log:
            with open(args.log, "a") as log:
                log.write(json.dumps(record) + "\n")
    print(json.dumps({"fits": fits, "default_threads": torch.get_num_threads()}))


def child_command(args, mode, policy, log=None):
    command = [sys.executable, os.path.abspath(__file__), "--child", mode, "--policy", policy,
               "--texts", str(args.texts), "--epochs", str(args.epochs), "--fits", str(args.fits)]
    if args.quick:
        command.append("--quick")
    if log:
        command += ["--log", log]
    return command


def child_env(args):
    env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    if not args.keep_thread_env:
        for name in THREAD_ENV:
            env.pop(name, None)
    return env


def read_log(path):
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def stop(process):
    if process.poll() is None:
        process.kill()
    process.wait()


# -- one measurement -------------------------------------------------------------------------

def measure(args, policy, condition, folder):
    """Fit records of the measured run in ``condition``, and the competitor's fits."""
    env = child_env(args)
    competitor, log = None, None
    try:
        if condition == "busy_loop":
            competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"], env=env)
            time.sleep(1.0)
        elif condition == "pretraining":
            log = os.path.join(folder, f"competitor_{policy}_{time.time_ns()}.jsonl")
            competitor = subprocess.Popen(child_command(args, "loop", policy, log), env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            deadline = time.monotonic() + args.timeout
            while not read_log(log):
                if competitor.poll() is not None:
                    raise SystemExit(f"the competing pretraining run failed:\n{competitor.stderr.read()[-3000:]}")
                if time.monotonic() > deadline:
                    raise SystemExit("the competing pretraining run never got ready")
                time.sleep(0.2)
        completed = subprocess.run(child_command(args, "measure", policy), env=env,
                                   capture_output=True, text=True, timeout=args.timeout, check=False)
        if completed.returncode:
            raise SystemExit(f"{policy}/{condition} failed:\n{completed.stderr[-3000:]}")
        result = json.loads(completed.stdout.strip().splitlines()[-1])
    finally:
        if competitor is not None:
            stop(competitor)
    if log:
        fits = result["fits"]
        window = (fits[0]["start"], fits[-1]["end"])
        result["competitor_fits"] = [r for r in read_log(log) if "seconds" in r
                                     and r["start"] >= window[0] - 1 and r["end"] <= window[1] + 1]
    return result


def median_rate(fits):
    return statistics.median(f["texts_per_second"] for f in fits)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=None, help="texts per fit (default: 1500; quick: 300)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per fit (default: 2; quick: 1)")
    parser.add_argument("--fits", type=int, default=None,
                        help="timed fits per measurement (default: 3; quick: 2)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="rounds over all conditions and policies (default: 1)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny model and corpus: checks the script in seconds, measures nothing")
    parser.add_argument("--keep-thread-env", action="store_true",
                        help="pass OMP_NUM_THREADS etc. on to the children")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per measurement")
    parser.add_argument("--out", default=None, help="JSON file (default: benchmarks/results/threads_cpu.json)")
    parser.add_argument("--child", choices=("measure", "loop"), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--policy", choices=POLICIES, default="adaptive", help=argparse.SUPPRESS)
    parser.add_argument("--log", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name, full, quick in (("texts", 1500, 300), ("epochs", 2, 1), ("fits", 3, 2)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    if args.child:
        return child(args)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(f"load average at start: {load}; the idle reference needs a quiet machine", flush=True)
    runs = {policy: {condition: [] for condition in CONDITIONS} for policy in POLICIES}
    with tempfile.TemporaryDirectory() as folder:
        for round_index in range(args.repeats):
            for condition in CONDITIONS:
                for policy in POLICIES:
                    start = time.perf_counter()
                    result = measure(args, policy, condition, folder)
                    runs[policy][condition].append(result)
                    fits = result["fits"]
                    print(f"  round {round_index + 1} {condition:11s} {policy:8s}: "
                          f"{median_rate(fits):8.1f} texts/s, threads "
                          f"{statistics.mean(f['mean_threads'] for f in fits):.2f}"
                          + (f", competitor {len(result['competitor_fits'])} fits"
                             if "competitor_fits" in result else "")
                          + f" ({time.perf_counter() - start:.0f}s)", flush=True)

    summary, rows = {}, []
    fixed_idle = median_rate([f for r in runs["fixed"]["idle"] for f in r["fits"]])
    for policy in POLICIES:
        own_idle = median_rate([f for r in runs[policy]["idle"] for f in r["fits"]])
        for condition in CONDITIONS:
            fits = [f for r in runs[policy][condition] for f in r["fits"]]
            competitor = [f for r in runs[policy][condition] for f in r.get("competitor_fits", [])]
            rate = median_rate(fits)
            entry = {"texts_per_second": rate, "samples": [f["texts_per_second"] for f in fits],
                     "mean_threads": statistics.mean(f["mean_threads"] for f in fits),
                     "ratio_to_own_idle": rate / own_idle, "ratio_to_fixed_idle": rate / fixed_idle}
            if competitor:
                entry["competitor_texts_per_second"] = median_rate(competitor)
                entry["competitor_ratio_to_own_idle"] = median_rate(competitor) / own_idle
            summary[f"{policy}/{condition}"] = entry
            rows.append([policy, condition, f"{rate:.1f}", f"{entry['mean_threads']:.2f}",
                         f"{entry['ratio_to_own_idle']:.2f}", f"{entry['ratio_to_fixed_idle']:.2f}",
                         f"{entry.get('competitor_ratio_to_own_idle', float('nan')):.2f}"])
    print()
    print_table(rows, ["policy", "condition", "texts/s", "threads", "of own idle", "of fixed idle",
                       "competitor of idle"])
    targets = {"busy_loop_at_least": 0.40, "pretraining_at_least": 0.30, "idle_at_least_fixed": 1.0}
    adaptive = {c: summary[f"adaptive/{c}"] for c in CONDITIONS}
    verdict = {"busy_loop": adaptive["busy_loop"]["ratio_to_own_idle"] >= targets["busy_loop_at_least"],
               "pretraining": adaptive["pretraining"]["ratio_to_own_idle"] >= targets["pretraining_at_least"],
               "idle_vs_fixed": adaptive["idle"]["ratio_to_fixed_idle"]}
    print(f"\ndefault (adaptive) beside a busy loop: {adaptive['busy_loop']['ratio_to_own_idle']:.2f} "
          f"of its idle throughput (target >= 0.40); beside another pretraining run: "
          f"{adaptive['pretraining']['ratio_to_own_idle']:.2f} (target >= 0.30); idle, against the "
          f"fixed default: {adaptive['idle']['ratio_to_fixed_idle']:.2f} (target: about 1 or more)")
    if args.quick:
        print("(--quick: a tiny model, whose figures say nothing about the default)")
    out = args.out or os.path.join(RESULTS_DIR, "threads_quick.json" if args.quick else "threads_cpu.json")
    import torch

    write_json({"benchmark": "threads", "command": "python " + " ".join(sys.argv),
                "machine": machine(torch.device("cpu")), "load_average_at_start": load,
                "settings": {"texts": args.texts, "epochs": args.epochs, "fits": args.fits,
                             "repeats": args.repeats, "quick": args.quick,
                             "model": TINY_MODEL if args.quick else "BNVAE defaults"},
                "targets": targets, "verdict": verdict, "summary": summary, "runs": runs}, out)


if __name__ == "__main__":
    main()
