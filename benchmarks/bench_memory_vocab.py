"""Peak resident memory of default-settings pretraining on long texts with a large
vocabulary: 10,000 synthetic texts of 30-60 tokens over a 30,000-word vocabulary
(shaped like the news corpus that peaked at 7.9 GB before the full softmax's loss
was computed in chunks).

Each run is a fresh subprocess that builds the corpus and runs ``BNVAE.fit`` with
the default settings (embeddings 128, LSTMs 512, latent 32, batch 32, full softmax,
validation on 10% of the texts) for ``--epochs`` epochs; its peak RSS is the
child's own ``ru_maxrss`` (``os.wait4``). ``--unchunked`` also runs the same fit with
the chunk bound lifted (``model.MAX_CHUNK_LOGITS`` set beyond any batch), which is
the code path before the bound, for comparison. ``--max-train-texts N`` does what
``BNVAE.fit`` does (vocabulary fitted on every text, 10% held out for validation)
and then trains on the N longest training texts only, every batch as long as the
longest, validation unchanged: the peak of the largest batches, in minutes instead
of an epoch.

    OMP_NUM_THREADS=1 python benchmarks/bench_memory_vocab.py
    OMP_NUM_THREADS=1 python benchmarks/bench_memory_vocab.py --max-train-texts 640 --unchunked
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks._common import REPO_ROOT, RESULTS_DIR, print_table, write_json, zipf_texts  # noqa: E402

TARGET_BYTES = 2 * 2**30


def synthetic_corpus(n_texts, vocab_size, min_tokens, max_tokens, seed=0):
    """Texts of ``min_tokens``-``max_tokens`` words; every one of the ``vocab_size``
    words occurs at least once, the rest are Zipf-distributed."""
    return zipf_texts(n_texts, vocab_size, min_tokens, max_tokens, seed, every_word=True)


def child(args):
    import resource

    import numpy as np
    import torch

    import ssl_textvae.nn.model as model
    from ssl_textvae import BNVAE
    from ssl_textvae.text.data import EncodedCorpus
    from ssl_textvae.text.tokenization import TextTokenizer
    from ssl_textvae.nn.model import TextVAE
    from ssl_textvae.engine.training import pretrain
    from ssl_textvae.estimators.bnvae import module_kwargs, training_config

    if args.unchunked:
        model.MAX_CHUNK_LOGITS = 2**62   # every batch as one matrix: the path before the bound
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    texts = synthetic_corpus(args.texts, args.vocab_size, args.min_tokens, args.max_tokens)
    after_corpus = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    if not args.max_train_texts:
        vae = BNVAE(max_epochs=args.epochs, verbose=0, random_state=0).fit(texts)
        module, history, vocab_size = vae.module_, vae.history_, vae.tokenizer_.vocab_size
        n_train = len(texts) - round(0.1 * len(texts))
    else:
        # What BNVAE.fit does (vocabulary on every text, 10% held out), then training on
        # the longest training texts only: every batch as long as the longest.
        tokenizer = TextTokenizer().fit(texts)
        corpus = EncodedCorpus.from_texts(tokenizer, texts, skip_empty=True)
        order = np.random.default_rng(0).permutation(len(corpus))
        n_valid = round(0.1 * len(corpus))
        train, valid = corpus.subset(order[n_valid:]), corpus.subset(order[:n_valid])
        del corpus
        train = train.subset(np.sort(np.argsort(-train.lengths, kind="stable")[:args.max_train_texts]))
        module = TextVAE(**module_kwargs(BNVAE(), tokenizer.vocab_size))
        vocab_size, n_train = tokenizer.vocab_size, len(train)
        history = pretrain(module, train, valid, training_config(BNVAE(max_epochs=args.epochs, verbose=0), seed=0),
                           torch.device("cpu"))
    print(json.dumps({"texts": len(texts), "train_texts": n_train, "vocab_size": vocab_size,
                      "max_chunk_logits": module.decoder.max_chunk_logits,
                      "baseline_rss_kib": baseline, "after_corpus_rss_kib": after_corpus,
                      "fit_seconds": time.perf_counter() - start,
                      "train_loss": history[-1]["train_loss"], "valid_loss": history[-1]["valid_loss"]}))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=10_000)
    parser.add_argument("--vocab-size", type=int, default=30_000)
    parser.add_argument("--min-tokens", type=int, default=30)
    parser.add_argument("--max-tokens", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-train-texts", type=int, default=0,
                        help="train on this many of the longest texts only (0: all)")
    parser.add_argument("--unchunked", action="store_true",
                        help="also run with the chunk bound lifted (the code path before it)")
    parser.add_argument("--out", default=None, help="JSON file (default: benchmarks/results/memory_vocab.json)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)
    results = []
    for unchunked in ([False, True] if args.unchunked else [False]):
        result = run_measured(args, unchunked)
        results.append(result)
        print(f"  {'unchunked' if unchunked else 'chunked (default)'}: peak RSS "
              f"{result['peak_rss_kib'] / 1024:,.0f} MiB, {result['seconds']:.0f}s", flush=True)
    rows = [["unchunked" if r["unchunked"] else "chunked (default)", f"{r['train_texts']:,}",
             f"{r['vocab_size']:,}", f"{r['peak_rss_kib'] / 1024:,.0f}",
             "yes" if r["peak_rss_kib"] * 1024 <= TARGET_BYTES else "no", f"{r['fit_seconds']:.0f}"]
            for r in results]
    print()
    print_table(rows, ["softmax loss", "training texts", "vocabulary", "peak RSS MiB", "<= 2 GiB", "fit s"])
    out = args.out or os.path.join(RESULTS_DIR, "memory_vocab.json")
    write_json({"benchmark": "memory_vocab", "command": "python " + " ".join(sys.argv),
                "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                "settings": {k: getattr(args, k) for k in ("texts", "vocab_size", "min_tokens",
                                                           "max_tokens", "epochs", "max_train_texts")},
                "target_bytes": TARGET_BYTES, "results": results}, out)


def run_measured(args, unchunked):
    """One child: its result and its own peak RSS (``ru_maxrss`` from ``os.wait4``)."""
    env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    command = [sys.executable, os.path.abspath(__file__), "--child", "--texts", str(args.texts),
               "--vocab-size", str(args.vocab_size), "--min-tokens", str(args.min_tokens),
               "--max-tokens", str(args.max_tokens), "--epochs", str(args.epochs),
               "--max-train-texts", str(args.max_train_texts)] + (["--unchunked"] if unchunked else [])
    start = time.perf_counter()
    out_path = os.path.join(RESULTS_DIR, f".memory_vocab_child_{os.getpid()}.out")
    os.makedirs(RESULTS_DIR, exist_ok=True)
    with open(out_path, "w+") as stdout:
        process = subprocess.Popen(command, env=env, stdout=stdout, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(process.pid, 0)
        stderr = process.stderr.read().decode(errors="replace")
        process.stderr.close()
        process.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        lines = stdout.read().strip().splitlines()
    os.remove(out_path)
    if process.returncode:
        raise SystemExit(f"the {'unchunked' if unchunked else 'chunked'} run failed "
                         f"(exit {process.returncode}):\n{stderr[-3000:]}")
    result = json.loads(lines[-1])
    result.update({"unchunked": unchunked, "peak_rss_kib": usage.ru_maxrss,
                   "seconds": time.perf_counter() - start})
    return result


if __name__ == "__main__":
    main()
