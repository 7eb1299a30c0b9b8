"""Shared pieces of the benchmark scripts: the data, the machine, the JSON output."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time

import torch

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA_DIR = os.path.join(REPO_ROOT, "..", "shared", "data", "short_yelp_li2019")
RESULTS_DIR = os.path.join(REPO_ROOT, "benchmarks", "results")
POOL_NAME = "short_yelp.unlabeled.txt"


def add_common_arguments(parser):
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR,
                        help="folder with the short-Yelp files (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: 2)")
    parser.add_argument("--device", default="cpu", help="'cpu' or 'cuda' (default: cpu)")
    parser.add_argument("--out", default=None, help="JSON file to write (default: benchmarks/results/)")


def add_model_arguments(parser):
    """The reference configuration of the pretraining benchmarks (short Yelp, Zhu et al.)."""
    parser.add_argument("--embed-dim", type=int, default=128)
    parser.add_argument("--hidden-dim", type=int, default=512)
    parser.add_argument("--latent-dim", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)


def load_pool_corpus(data_dir, size=None):
    """The short-Yelp pool (its first ``size`` sentences when given), tokenized with a word
    vocabulary fitted on it: (corpus, vocab_size)."""
    import itertools

    from ssl_textvae import TextFile
    from ssl_textvae.text.data import EncodedCorpus
    from ssl_textvae.text.tokenization import TextTokenizer

    pool = TextFile(os.path.join(data_dir, POOL_NAME))
    if size is not None:
        pool = list(itertools.islice(pool, size))
    tokenizer = TextTokenizer().fit(pool)
    return EncodedCorpus.from_texts(tokenizer, pool, skip_empty=True), tokenizer.vocab_size


def setup(args):
    """Set threads and offline mode; return the torch device after checking it exists."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda was asked for, but torch sees no CUDA device.")
    pool = os.path.join(args.data_dir, POOL_NAME)
    if not os.path.isfile(pool):
        raise SystemExit(f"No pretraining pool at {pool!r}; pass --data-dir.")
    return device


def machine(device) -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__,
            "cpu": _cpu_name(), "logical_cpus": os.cpu_count(), "threads": torch.get_num_threads(),
            "load_average_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(function, device, repeats=7, warmup=2):
    """Median wall time of ``function()`` over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        function()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def write_json(payload, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as handle:
        json.dump(payload, handle, indent=2)
    print(f"wrote {path}")


def print_table(rows, headers):
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(str(h).ljust(w) for h, w in zip(headers, widths))
    print(line)
    print("-" * len(line))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))


def zipf_texts(n_texts, vocab_size, min_words, max_words, seed=0, every_word=False):
    """Synthetic texts of ``min_words``-``max_words`` Zipf-distributed words ``w0``, ``w1``, ...;
    with ``every_word`` each of the ``vocab_size`` words occurs at least once."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lengths = rng.integers(min_words, max_words + 1, n_texts)
    total = int(lengths.sum())
    probabilities = 1.0 / np.arange(1, vocab_size + 1)
    probabilities /= probabilities.sum()
    if every_word:
        if total < vocab_size:
            raise SystemExit(f"{total} tokens cannot hold a {vocab_size}-word vocabulary")
        words = np.concatenate([np.arange(vocab_size),
                                rng.choice(vocab_size, total - vocab_size, p=probabilities)])
        rng.shuffle(words)
    else:
        words = rng.choice(vocab_size, size=total, p=probabilities)
    texts, start = [], 0
    for length in lengths:
        texts.append(" ".join(f"w{index}" for index in words[start:start + length]))
        start += length
    return texts
