"""Encoding speed: ``BNVAE.transform`` of the 10,000 short-Yelp test sentences.

Speed does not depend on the weights, so by default the model has random weights
(uniform in [-0.1, 0.1]) with the batch-norm statistics set on the pool, so the
means have their trained scale (gamma) and the bf16-vs-fp32 difference is
meaningful; ``--model DIR`` loads a model saved with ``BNVAE.save`` instead, and
then also checks what bf16 means change for a classifier: a logistic regression
fitted per labeled subset on fp32 means and on bf16 means, test accuracy of each
and how often their predictions agree. The timed call is the public ``transform``
(tokenization included), in fp32 and bf16, interleaved, medians of ``--repeats``.

    python benchmarks/bench_encode.py
    python benchmarks/bench_encode.py --model path/to/saved_bnvae
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks._common import (POOL_NAME, RESULTS_DIR, add_common_arguments, machine,  # noqa: E402
                                print_table, setup, write_json)
from ssl_textvae import BNVAE, TextFile, read_labeled_file  # noqa: E402
from ssl_textvae.estimators.bnvae import module_kwargs  # noqa: E402
from ssl_textvae.text.data import EncodedCorpus  # noqa: E402
from ssl_textvae.nn.model import TextVAE  # noqa: E402
from ssl_textvae.runtime.devices import resolve_precision  # noqa: E402
from ssl_textvae.text.tokenization import TextTokenizer  # noqa: E402
from ssl_textvae.engine.loop import recalibrate_batch_norm  # noqa: E402


def random_model(args, device):
    pool = TextFile(os.path.join(args.data_dir, POOL_NAME))
    vae = BNVAE(device=str(device), verbose=0)
    vae.tokenizer_ = TextTokenizer().fit(pool)
    torch.manual_seed(0)
    vae.module_ = TextVAE(**module_kwargs(vae, vae.tokenizer_.vocab_size)).to(device)
    for parameter in vae.module_.parameters():
        if parameter.requires_grad:
            torch.nn.init.uniform_(parameter, -0.1, 0.1)
    vae.n_features_out_ = vae.latent_dim
    sample = EncodedCorpus.from_texts(vae.tokenizer_, [t for _, t in zip(range(20_000), pool)],
                                      skip_empty=True)
    recalibrate_batch_norm(vae.module_, sample, device, 256, np.random.default_rng(0))
    return vae


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--model", default=None, help="directory written by BNVAE.save")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None,
                        help="also time the encoder alone (tokenized once) at these batch sizes, "
                             "in the default precision")
    args = parser.parse_args(argv)
    device = setup(args)
    texts, _ = read_labeled_file(os.path.join(args.data_dir, "short_yelp.test.txt"))
    vae = BNVAE.load(args.model) if args.model else random_model(args, device)
    vae.set_params(device=str(device))
    precisions = ["fp32"] + (["bf16"] if resolve_precision(device, "auto") == "bf16" else [])
    wall, cpu, means = {p: [] for p in precisions}, {p: [] for p in precisions}, {}
    for precision in precisions:  # warm-up
        vae.set_params(precision=precision)
        means[precision] = vae.transform(texts)
    for _ in range(args.repeats):
        for precision in precisions:
            vae.set_params(precision=precision)
            start, cpu_start = time.perf_counter(), time.process_time()
            vae.transform(texts)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            wall[precision].append(len(texts) / (time.perf_counter() - start))
            cpu[precision].append(len(texts) / ((time.process_time() - cpu_start)
                                                / torch.get_num_threads()))
    rows, results = [], {}
    for precision in precisions:
        results[precision] = {"median_sentences_per_second": statistics.median(wall[precision]),
                              "samples": wall[precision],
                              "median_sentences_per_cpu_second": statistics.median(cpu[precision])}
        rows.append([precision, f"{results[precision]['median_sentences_per_second']:,.0f}",
                     " ".join(f"{v:,.0f}" for v in wall[precision]),
                     f"{results[precision]['median_sentences_per_cpu_second']:,.0f}"])
    agreement = {}
    if "bf16" in means:
        difference = np.abs(means["bf16"] - means["fp32"])
        agreement = {"max_abs_difference": float(difference.max()),
                     "mean_abs_difference": float(difference.mean()),
                     "std_of_means_fp32": float(means["fp32"].std())}
    info = machine(device)
    print(f"{info['cpu']} ({info.get('gpu', 'no GPU')}), {args.threads} threads, "
          f"{'saved model ' + args.model if args.model else 'random weights'}; "
          f"{len(texts):,} test sentences")
    print_table(rows, ["precision", "sentences/s (median)", "samples", "sentences/CPU-s"])
    if agreement:
        print(f"bf16 vs fp32 means: max |diff| {agreement['max_abs_difference']:.4f}, mean |diff| "
              f"{agreement['mean_abs_difference']:.5f} (std of the means {agreement['std_of_means_fp32']:.3f})")
    if args.model and "bf16" in means:
        agreement["classifier"] = classifier_agreement(vae, args.data_dir, means)
        print_table([[f"{b:,}", f"{r['accuracy_fp32']:.2f}", f"{r['accuracy_bf16']:.2f}",
                      f"{r['agreement']:.4f}"] for b, r in agreement["classifier"].items()],
                    ["labels", "test accuracy fp32 means (%)", "bf16 means (%)", "same prediction"])
    sweep = None
    if args.batch_sizes:
        sweep = batch_size_sweep(vae, texts, device, args.batch_sizes, args.repeats)
        print_table([[f"{b:,}", f"{r['median_sentences_per_second']:,.0f}"] for b, r in sweep.items()],
                    ["batch size", "sentences/s, encoder alone (median)"])
    out = args.out or os.path.join(RESULTS_DIR, f"encode_{device.type}.json")
    write_json({"benchmark": "encode", "command": "python " + " ".join(sys.argv), "machine": info,
                "model": args.model or "random weights", "sentences": len(texts),
                "default_precision": resolve_precision(device, "auto"),
                "results": results, "bf16_vs_fp32": agreement, "batch_sizes": sweep}, out)


def batch_size_sweep(vae, texts, device, batch_sizes, repeats):
    """Sentences/s of ``inference.encode_means`` alone (tokenized once), per batch size,
    interleaved, in the default precision."""
    from ssl_textvae.nn.inference import encode_means

    corpus = vae.encode(texts)
    precision = resolve_precision(device, "auto")
    samples = {size: [] for size in batch_sizes}
    for _ in range(repeats):
        for size in batch_sizes:
            start = time.perf_counter()
            encode_means(vae.module_, corpus, device, batch_size=size, precision=precision)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            samples[size].append(len(texts) / (time.perf_counter() - start))
    return {size: {"median_sentences_per_second": statistics.median(values), "samples": values,
                   "precision": precision} for size, values in samples.items()}


def classifier_agreement(vae, data_dir, test_means, budgets=(100, 500, 1000, 2000, 10000)):
    """Per labeled subset: a standardized logistic regression fitted on fp32 means and one
    on bf16 means; test accuracy of each and the share of identical test predictions."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    _, y_test = read_labeled_file(os.path.join(data_dir, "short_yelp.test.txt"))
    report = {}
    for budget in budgets:
        texts, y = read_labeled_file(os.path.join(data_dir, f"short_yelp.train.{budget}.txt"))
        predictions = {}
        for precision in ("fp32", "bf16"):
            vae.set_params(precision=precision)
            head = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
            predictions[precision] = head.fit(vae.transform(texts), y).predict(test_means[precision])
        report[budget] = {f"accuracy_{p}": float(np.mean(predictions[p] == np.asarray(y_test)) * 100)
                          for p in predictions}
        report[budget]["agreement"] = float(np.mean(predictions["fp32"] == predictions["bf16"]))
    return report


if __name__ == "__main__":
    main()
