"""Peak resident memory of pretraining at 1x and 4x the short-Yelp pool.

Each scale runs in a fresh subprocess that does what ``BNVAE.fit`` does with the
corpus (streams the text file to fit the vocabulary, encodes it to ids, splits off
the validation texts) and then trains a short run through ``pretrain`` (one epoch
over ``--steps`` batches, batch-norm recalibration, validation on 3,200 texts).
The 4x pool is the pool file written 4 times into a temporary file and streamed
from there with ``TextFile``; no list of texts is ever built. Peak RSS is the
child's ``ru_maxrss``; the table sets its growth from 1x to 4x against the growth
of the token-id arrays.

    python benchmarks/bench_memory.py
    python benchmarks/bench_memory.py --scales 1 4 --steps 200
    python benchmarks/bench_memory.py --encoding-only --package-dir /path/to/older/checkout
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks._common import (POOL_NAME, REPO_ROOT, RESULTS_DIR,  # noqa: E402
                                add_common_arguments, print_table, write_json)


def child(path, steps, threads, device, package_dir, encoding_only):
    """Runs in the subprocess: tokenization, split, short pretraining; prints JSON."""
    sys.path.insert(0, package_dir)
    import numpy as np
    import torch

    from ssl_textvae import BNVAE, TextFile
    from ssl_textvae.estimators.bnvae import module_kwargs, training_config
    from ssl_textvae.text.data import EncodedCorpus
    from ssl_textvae.nn.model import TextVAE
    from ssl_textvae.text.tokenization import TextTokenizer
    from ssl_textvae.engine.training import pretrain

    torch.set_num_threads(threads)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    texts = TextFile(path)
    tokenizer = TextTokenizer().fit(texts)
    after_fit = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    corpus = EncodedCorpus.from_texts(tokenizer, texts, skip_empty=True)
    after_encoding = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if encoding_only:
        steps = 0
    order = np.random.default_rng(0).permutation(len(corpus))
    n_valid = round(0.1 * len(corpus))
    train, valid = corpus.subset(order[n_valid:]), corpus.subset(order[:n_valid])
    config = training_config(BNVAE(max_epochs=1, verbose=0), seed=0)
    module = TextVAE(**module_kwargs(BNVAE(), tokenizer.vocab_size))
    if steps:
        pretrain(module, train.subset(np.arange(steps * config.batch_size)),
                 valid.subset(np.arange(3200)), config, torch.device(device))
    ids_bytes = corpus.ids.nbytes + corpus.offsets.nbytes
    print(json.dumps({"sentences": len(corpus), "tokens": int(len(corpus.ids)),
                      "ids_bytes": int(ids_bytes), "vocab_size": tokenizer.vocab_size,
                      "baseline_rss_kib": baseline, "after_fit_rss_kib": after_fit,
                      "after_encoding_rss_kib": after_encoding,
                      "package": os.path.dirname(sys.modules["ssl_textvae"].__file__),
                      "split_copies_bytes": int(train.ids.nbytes + train.offsets.nbytes
                                                + valid.ids.nbytes + valid.offsets.nbytes)}))


def run_scale(pool, scale, args, folder):
    path = pool
    if scale != 1:
        path = os.path.join(folder, f"pool_x{scale}.txt")
        with open(path, "wb") as out:
            for _ in range(scale):
                with open(pool, "rb") as source:
                    while block := source.read(1 << 20):
                        out.write(block)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    completed = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", path,
                                "--steps", str(args.steps), "--threads", str(args.threads),
                                "--device", args.device, "--package-dir", args.package_dir]
                               + (["--encoding-only"] if args.encoding_only else []),
                               capture_output=True, text=True, env=env, check=False)
    if completed.returncode:
        raise SystemExit(f"scale {scale} failed:\n{completed.stderr[-3000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak <= before:  # ru_maxrss of children is the largest child so far
        print(f"  note: scale {scale} did not exceed the earlier child's peak; run scales ascending")
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    result.update({"scale": scale, "peak_rss_kib": peak, "seconds": time.perf_counter() - start})
    print(f"  {scale}x: {result['sentences']:,} sentences, peak RSS {peak / 1024:.0f} MiB, "
          f"ids {result['ids_bytes'] / 2**20:.1f} MiB, {result['seconds']:.0f}s", flush=True)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--steps", type=int, default=200, help="training steps of the short run")
    parser.add_argument("--encoding-only", action="store_true",
                        help="stop after tokenization, encoding and the split (no training)")
    parser.add_argument("--package-dir", default=REPO_ROOT,
                        help="import ssl_textvae from this checkout (to compare with an older "
                             "commit; default: this repository)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.steps, args.threads, args.device,
                     os.path.abspath(args.package_dir), args.encoding_only)
    pool = os.path.join(args.data_dir, POOL_NAME)
    if not os.path.isfile(pool):
        raise SystemExit(f"No pretraining pool at {pool!r}; pass --data-dir.")
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for scale in sorted(args.scales):
            results.append(run_scale(pool, scale, args, folder))
    rows = [[f"{r['scale']}x", f"{r['sentences']:,}", f"{r['tokens']:,}",
             f"{r['ids_bytes'] / 2**20:.1f}",
             f"{(r['after_encoding_rss_kib'] - r['after_fit_rss_kib']) / 1024:.0f}",
             f"{r['after_encoding_rss_kib'] / 1024:.0f}", f"{r['peak_rss_kib'] / 1024:.0f}"]
            for r in results]
    print(f"\nssl_textvae from {results[0]['package']}")
    print_table(rows, ["pool", "sentences", "word ids", "ids+offsets MiB", "encoding adds MiB",
                       "RSS after encoding MiB", "peak RSS MiB"])
    growth = {}
    if len(results) > 1:
        first, last = results[0], results[-1]
        rss_growth = (last["peak_rss_kib"] - first["peak_rss_kib"]) * 1024
        ids_growth = last["ids_bytes"] - first["ids_bytes"]
        growth = {"peak_rss_growth_bytes": rss_growth, "ids_growth_bytes": ids_growth,
                  "ratio": rss_growth / ids_growth}
        print(f"\npeak RSS grew {rss_growth / 2**20:.1f} MiB from {first['scale']}x to {last['scale']}x "
              f"while ids+offsets grew {ids_growth / 2**20:.1f} MiB: {growth['ratio']:.2f} bytes "
              "of RSS per byte of ids (the train/valid split holds one copy of the ids besides "
              "the full corpus)")
    out = args.out or os.path.join(RESULTS_DIR, "memory_encoding.json" if args.encoding_only
                                   else "memory.json")
    write_json({"benchmark": "memory", "command": "python " + " ".join(sys.argv),
                "steps": args.steps, "threads": args.threads, "results": results,
                "growth": growth}, out)


if __name__ == "__main__":
    main()
