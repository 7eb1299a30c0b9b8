"""Pretraining throughput of the package's default training path, against the
compute ceiling that matrix-multiply rates measured in the same run allow.

Measures, in one run:
  * matmul GFLOP/s at the output layer's shape: fp32 default path, fp32 through
    oneDNN (``torch.utils.mkldnn``), bf16; and at the LSTM's per-time-step shape
    (batch rows), in fp32 and bf16;
  * the training FLOPs per token of the configuration (forward + backward = 3 x forward),
    and two ceilings: all FLOPs at the output-layer-shape rate, and shape-aware (the
    LSTM's per-time-step products at their own rate);
  * tokens/s of ``ssl_textvae.engine.training.train_epoch`` on the short-Yelp pool, for
    gamma = 0.7 (BN-VAE) and gamma = 0 (VAE) under the default precision, and fp32
    for comparison, interleaved over several repetitions (medians reported); and the
    BN-VAE / VAE ratio from many short back-to-back pairs;
  * a per-operator profile of the default path (torch.profiler self time per step),
    and from it the kernel floor: the tokens/s if everything but the matrix-product
    and LSTM kernels took no time;
  * loss curves of bf16 autocast against fp32 on the same batches for several seeds:
    the paired difference, against the spread of fp32 across seeds.

Tokens are words plus one ``</s>`` per sentence (what the decoder predicts).

    python benchmarks/bench_pretrain.py              # reference run, about 10 minutes on 2 cores
    python benchmarks/bench_pretrain.py --quick      # a smoke test
    python benchmarks/bench_pretrain.py --device cuda
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
from benchmarks._common import (RESULTS_DIR, add_common_arguments, add_model_arguments,  # noqa: E402
                                load_pool_corpus, machine, median_seconds, print_table, setup,
                                write_json)
from ssl_textvae.nn.model import TextVAE  # noqa: E402
from ssl_textvae.nn.optim import AUTOCAST_LAYERS  # noqa: E402
from ssl_textvae.runtime.devices import flush_denormals, resolve_precision  # noqa: E402
from ssl_textvae.engine.loop import make_optimizer  # noqa: E402
from ssl_textvae.engine.training import train_epoch  # noqa: E402
from ssl_textvae import BNVAE  # noqa: E402
from ssl_textvae.estimators.bnvae import module_kwargs, training_config  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    add_model_arguments(parser)
    parser.add_argument("--steps", type=int, default=60, help="training steps per measurement")
    parser.add_argument("--warmup-steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=9, help="interleaved repetitions")
    parser.add_argument("--ratio-pairs", type=int, default=40,
                        help="back-to-back BN-VAE / VAE pairs for the overhead ratio")
    parser.add_argument("--ratio-steps", type=int, default=20, help="training steps per run of a pair")
    parser.add_argument("--loss-steps", type=int, default=300, help="steps of each loss curve")
    parser.add_argument("--loss-chunk", type=int, default=10, help="steps per loss-curve point")
    parser.add_argument("--loss-seeds", type=int, default=3, help="seeds of the loss comparison")
    parser.add_argument("--profile-steps", type=int, default=30,
                        help="steps of the per-operator profile of the default path (0 skips it)")
    parser.add_argument("--figure", default=None, help="PNG to write (default: next to the JSON)")
    parser.add_argument("--pool-size", type=int, default=None,
                        help="the first N pool sentences (default: the whole pool)")
    parser.add_argument("--quick", action="store_true", help="tiny run to check the script works")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.warmup_steps, args.repeats, args.loss_steps = 5, 2, 1, 20
        args.ratio_pairs, args.ratio_steps = 2, 3
        args.loss_chunk, args.loss_seeds = 5, 2
        args.profile_steps = min(args.profile_steps, 3)
    return args


# Issue #4's target: 3x the paper's official implementation on the 2-core reference machine.
TARGET_TOKENS_PER_SECOND = 12_600


# -- compute ceiling ----------------------------------------------------------------------
def training_flops_per_token(embed_dim, hidden_dim, latent_dim, vocab_size, mean_words):
    """Multiply-adds x 2 of one training step per predicted token, forward + backward (3 x forward).

    The encoder LSTM reads ``<s> w_1..w_n </s>`` (n + 2 steps), the decoder LSTM reads
    ``<s> w_1..w_n`` with z concatenated (n + 1 steps), the output layer scores n + 1 tokens.
    """
    encoder = 2 * 4 * hidden_dim * (embed_dim + hidden_dim)
    decoder = 2 * 4 * hidden_dim * (embed_dim + latent_dim + hidden_dim)
    output = 2 * hidden_dim * vocab_size
    predicted = mean_words + 1
    forward = encoder * (mean_words + 2) + (decoder + output) * predicted
    return {"encoder_lstm": 3 * encoder * (mean_words + 2) / predicted,
            "decoder_lstm": 3 * decoder, "output_layer": 3 * output,
            "total": 3 * forward / predicted}


def sequential_flops_per_token(hidden_dim, mean_words):
    """The part of :func:`training_flops_per_token` done one time step at a time, with
    ``batch`` rows per product: the recurrent product of each LSTM's forward pass and
    the product carrying the gradient back through its state (the input projections
    and the weight gradients can run over all steps at once)."""
    recurrent = 2 * 4 * hidden_dim * hidden_dim
    per_token = recurrent * (mean_words + 2) / (mean_words + 1) + recurrent  # encoder, decoder
    return 2 * per_token


def recurrent_rates(device, batch, hidden):
    """GFLOP/s of the LSTM's per-time-step products, (batch, hidden) x (hidden, 4 hidden)
    forward and (batch, 4 hidden) x (4 hidden, hidden) backward, in fp32 and bf16."""
    generator = torch.Generator().manual_seed(0)
    rates = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        seconds = 0.0
        for k, n in ((hidden, 4 * hidden), (4 * hidden, hidden)):
            x = torch.randn(batch, k, generator=generator).to(device, dtype)
            weight = torch.randn(n, k, generator=generator).to(device, dtype)
            seconds += median_seconds(lambda: x @ weight.t(), device, repeats=31)
        rates[name] = 2 * 2 * batch * hidden * 4 * hidden / seconds / 1e9
    return rates


def shape_aware_ceiling(flops, sequential, big_rate, recurrent_rate):
    """Tokens/s with the sequential FLOPs at the per-time-step rate and the rest at
    the output-layer-shape rate (GFLOP/s)."""
    return 1.0 / (sequential / (recurrent_rate * 1e9) + (flops - sequential) / (big_rate * 1e9))


def matmul_rates(device, m, k, n):
    """GFLOP/s of (m, k) x (k, n) in fp32 (default path), fp32 oneDNN (CPU) and bf16."""
    flops = 2 * m * k * n
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(m, k, generator=generator).to(device)
    weight = torch.randn(n, k, generator=generator).to(device)
    rates = {"fp32": flops / median_seconds(lambda: x @ weight.t(), device) / 1e9}
    if device.type == "cpu" and torch.backends.mkldnn.is_available():
        from torch.utils import mkldnn as mkldnn_utils

        linear = torch.nn.Linear(k, n, bias=False)
        linear.weight.data.copy_(weight)
        dense = mkldnn_utils.to_mkldnn(linear)
        x_mkldnn = x.to_mkldnn()
        with torch.no_grad():
            rates["fp32_onednn"] = flops / median_seconds(lambda: dense(x_mkldnn), device) / 1e9
    x16, weight16 = x.bfloat16(), weight.bfloat16()
    rates["bf16"] = flops / median_seconds(lambda: x16 @ weight16.t(), device) / 1e9
    return rates


def work_outside_kernels(device, tokens, vocab_size, dense_parameters):
    """Lower bounds, in ms per step, of two parts of a step that are not matrix products:

    * the SGD update with fp32 master weights: at least 12 bytes move per parameter
      of the linear and LSTM layers (read the bf16 gradient, read and write the fp32
      master, write the bf16 working copy), at the copy bandwidth measured here;
    * the full softmax: log-softmax forward and backward over (tokens, vocabulary)
      fp32 logits, timed alone (in cache, so less than inside a step).
    """
    generator = torch.Generator().manual_seed(0)
    source = torch.randn(16 * 2**20, generator=generator).to(device)  # 64 MiB, beyond the caches
    target = torch.empty_like(source)
    bandwidth = 2 * source.numel() * 4 / median_seconds(lambda: target.copy_(source), device)
    logits = torch.randn(tokens, vocab_size, generator=generator).to(device)
    log_probs = torch.log_softmax(logits, 1)
    grad = torch.randn_like(log_probs)
    forward = median_seconds(lambda: torch.log_softmax(logits, 1), device)
    backward = median_seconds(lambda: torch._log_softmax_backward_data(grad, log_probs, 1, logits.dtype),
                              device)
    return {"copy_bandwidth_gb_per_s": bandwidth / 1e9, "dense_parameters": dense_parameters,
            "update_ms": 12 * dense_parameters / bandwidth * 1000,
            "softmax_ms": (forward + backward) * 1000}


# -- training runs ------------------------------------------------------------------------
class Run:
    """One model trained by the package's epoch loop on successive random slices of the pool."""

    def __init__(self, corpus, vocab_size, args, device, gamma, precision, seed, batch_seed=0,
                 softmax="full"):
        torch.manual_seed(seed)
        self.module = TextVAE(**module_kwargs(BNVAE(embed_dim=args.embed_dim, hidden_dim=args.hidden_dim,
                                                    latent_dim=args.latent_dim, gamma=gamma,
                                                    softmax=softmax), vocab_size)).to(device)
        self.config = training_config(BNVAE(batch_size=args.batch_size, precision=precision, verbose=0),
                                      seed=seed)
        self.optimizer = make_optimizer("sgd", self.module.parameters(), self.config.lr)
        self.corpus, self.device = corpus, device
        self.rng = np.random.default_rng(batch_seed)
        self.torch_state = torch.get_rng_state()

    def train(self, steps):
        """Train ``steps`` batches; returns the epoch record (tokens_per_second, train_loss...)."""
        texts = self.rng.choice(len(self.corpus), steps * self.config.batch_size, replace=False)
        chunk = self.corpus.subset(np.sort(texts))
        torch.set_rng_state(self.torch_state)  # each run keeps its own dropout stream
        cpu_start = time.process_time()
        with flush_denormals():
            record = train_epoch(self.module, self.optimizer, chunk, self.config, self.device,
                                  self.rng, 0)
        # CPU seconds per thread: what a machine free of other jobs would take (the
        # benchmark machine is shared, so wall time also counts waiting for a core).
        cpu_seconds = (time.process_time() - cpu_start) / torch.get_num_threads()
        record["tokens_per_cpu_second"] = chunk.n_tokens() / cpu_seconds
        self.torch_state = torch.get_rng_state()
        return record


def throughput(corpus, vocab_size, args, device, default_precision):
    variants = {f"{default_precision} gamma=0.7": (0.7, default_precision),
                f"{default_precision} gamma=0": (0.0, default_precision)}
    if default_precision != "fp32":
        variants["fp32 gamma=0.7"] = (0.7, "fp32")
    runs = {name: Run(corpus, vocab_size, args, device, gamma, precision, seed=0)
            for name, (gamma, precision) in variants.items()}
    for run in runs.values():
        run.train(args.warmup_steps)
    samples = {name: [] for name in runs}
    cpu_samples = {name: [] for name in runs}
    names = list(runs)
    for repeat in range(args.repeats):
        order = names if repeat % 2 == 0 else names[::-1]  # interleaved, alternating order
        for name in order:
            record = runs[name].train(args.steps)
            samples[name].append(record["tokens_per_second"])
            cpu_samples[name].append(record["tokens_per_cpu_second"])
            print(f"  repeat {repeat + 1}/{args.repeats} {name}: {samples[name][-1]:,.0f} tokens/s "
                  f"wall, {cpu_samples[name][-1]:,.0f} per CPU second", flush=True)
    results = {name: {"median_tokens_per_second": statistics.median(values), "samples": values,
                      "median_tokens_per_cpu_second": statistics.median(cpu_samples[name]),
                      "cpu_samples": cpu_samples[name],
                      "gamma": variants[name][0], "precision": variants[name][1]}
               for name, values in samples.items()}
    bn, plain = (results[f"{default_precision} gamma=0.7"], results[f"{default_precision} gamma=0"])
    paired = [a / b for a, b in zip(bn["samples"], plain["samples"])]
    paired_cpu = [a / b for a, b in zip(bn["cpu_samples"], plain["cpu_samples"])]
    return results, {"median": statistics.median(paired), "per_repeat": paired,
                     "median_cpu": statistics.median(paired_cpu), "per_repeat_cpu": paired_cpu}


# The operators of the matrix products and of oneDNN's LSTM on CPU: the compute kernels.
KERNEL_OPERATORS = ("aten::mm", "aten::addmm", "aten::mkldnn_rnn_layer",
                    "aten::mkldnn_rnn_layer_backward")


def overhead_ratio(corpus, vocab_size, args, device, precision):
    """BN-VAE / VAE throughput from many short back-to-back pairs (alternating which
    runs first): the machine's speed drifts over seconds, so short paired runs
    compare the two at nearly the same moment."""
    bn = Run(corpus, vocab_size, args, device, 0.7, precision, seed=0)
    plain = Run(corpus, vocab_size, args, device, 0.0, precision, seed=0)
    for run in (bn, plain):
        run.train(args.warmup_steps)
    ratios = []
    for pair in range(args.ratio_pairs):
        first, second = (bn, plain) if pair % 2 == 0 else (plain, bn)
        rates = {id(run): run.train(args.ratio_steps)["tokens_per_second"] for run in (first, second)}
        ratios.append(rates[id(bn)] / rates[id(plain)])
    quartiles = np.percentile(ratios, [25, 50, 75])
    return {"pairs": args.ratio_pairs, "steps": args.ratio_steps, "per_pair": ratios,
            "median": float(quartiles[1]), "quartiles": [float(quartiles[0]), float(quartiles[2])]}


def step_profile(corpus, vocab_size, args, device, precision, steps):
    """Where a default-path training step spends its time: torch.profiler's self time
    per operator, in ms per step, largest first (the operators of the matrix products
    and the LSTM are compute; the rest is memory traffic and overhead). The kernel
    floor is the tokens/s the step would reach if only :data:`KERNEL_OPERATORS` took time."""
    from torch.profiler import ProfilerActivity, profile

    run = Run(corpus, vocab_size, args, device, 0.7, precision, seed=0)
    run.train(args.warmup_steps)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as profiler:
        record = run.train(steps)
    events = [e for e in profiler.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    rows = sorted(events, key=lambda e: -e.self_cpu_time_total)
    kernel_ms = sum(e.self_cpu_time_total for e in events if e.key in KERNEL_OPERATORS) / 1000 / steps
    tokens_per_step = record["tokens_per_second"] * record["seconds"] / steps
    return {"steps": steps, "ms_per_step": total / 1000 / steps, "kernel_ms_per_step": kernel_ms,
            "tokens_per_step": tokens_per_step,
            "kernel_floor_tokens_per_second": tokens_per_step / (kernel_ms / 1000) if kernel_ms else None,
            "operators": [{"name": e.key, "ms_per_step": e.self_cpu_time_total / 1000 / steps,
                           "share": e.self_cpu_time_total / total, "calls_per_step": e.count / steps}
                          for e in rows[:15]]}


def print_profile(profile):
    """Print the kernel floor and the largest operators of :func:`step_profile`'s result."""
    floor = profile["kernel_floor_tokens_per_second"]
    if floor:
        target_ms = profile["tokens_per_step"] / TARGET_TOKENS_PER_SECOND * 1000
        outside = profile["outside_kernels"]
        least_ms = profile["kernel_ms_per_step"] + outside["update_ms"] + outside["softmax_ms"]
        profile["least_step_ms"] = least_ms
        profile["least_step_tokens_per_second"] = profile["tokens_per_step"] / least_ms * 1000
        print(f"\nkernel floor: {floor:,.0f} tokens/s (matrix-product and LSTM kernels "
              f"{profile['kernel_ms_per_step']:.1f} ms of a {profile['ms_per_step']:.1f} ms step, "
              f"{profile['tokens_per_step']:.0f} tokens); {TARGET_TOKENS_PER_SECOND:,} tokens/s "
              f"allows {target_ms - profile['kernel_ms_per_step']:.1f} ms per step for everything else")
        print(f"outside the kernels at least: SGD update {outside['update_ms']:.2f} ms "
              f"({outside['dense_parameters']:,} parameters x 12 bytes at "
              f"{outside['copy_bandwidth_gb_per_s']:.0f} GB/s), softmax forward + backward "
              f"{outside['softmax_ms']:.2f} ms; step at least {least_ms:.1f} ms = "
              f"{profile['least_step_tokens_per_second']:,.0f} tokens/s")
    print(f"\nprofile of the default path ({profile['ms_per_step']:.1f} ms of CPU self time per step, "
          f"{profile['steps']} steps; largest operators):")
    print_table([[o["name"][:40], f"{o['ms_per_step']:.2f}", f"{o['share']:.0%}",
                  f"{o['calls_per_step']:.0f}"] for o in profile["operators"]],
                ["operator", "ms/step", "share", "calls/step"])


def loss_curves(corpus, vocab_size, args, device, default_precision):
    """Training loss every ``loss_chunk`` steps, for each of ``loss_seeds`` seeds, in the
    default precision and in fp32 on the same batches, initialization and dropout.

    The precision effect is the paired difference (default - fp32, same seed); the
    noise it is judged against is the spread of the fp32 loss across seeds."""
    precisions = [default_precision] + (["fp32"] if default_precision != "fp32" else [])
    curves = {}
    for seed in range(args.loss_seeds):
        for precision in precisions:
            run = Run(corpus, vocab_size, args, device, 0.7, precision, seed=seed,
                      batch_seed=123 + seed)
            start = time.perf_counter()
            name = f"{precision} seed {seed}"
            curves[name] = [run.train(args.loss_chunk)["train_loss"]
                            for _ in range(args.loss_steps // args.loss_chunk)]
            print(f"  loss curve {name}: {time.perf_counter() - start:.0f}s, last {curves[name][-1]:.3f}",
                  flush=True)
    tail = max(1, (args.loss_steps // args.loss_chunk) // 3)  # the last third (100 steps of 300)
    means = {name: float(np.mean(values[-tail:])) for name, values in curves.items()}
    fp32 = [means[f"fp32 seed {seed}"] for seed in range(args.loss_seeds)]
    paired = [means[f"{default_precision} seed {seed}"] - fp32[seed] for seed in range(args.loss_seeds)]
    return curves, {"last_steps": tail * args.loss_chunk, "mean_loss": means,
                    "difference_precision_per_seed": paired,
                    "difference_precision_mean": float(np.mean(paired)),
                    "fp32_std_across_seeds": float(np.std(fp32, ddof=1)) if len(fp32) > 1 else None}


def figure(path, results, ceilings, curves, args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    names = list(results)
    medians = [results[n]["median_tokens_per_second"] for n in names]
    low = [m - min(results[n]["samples"]) for n, m in zip(names, medians)]
    high = [max(results[n]["samples"]) - m for n, m in zip(names, medians)]
    left.bar(names, medians, yerr=[low, high], capsize=4, color="tab:blue")
    for (label, value), style in zip(ceilings.items(), (":", "--", "-.")):
        left.axhline(value, linestyle=style, color="gray", label=f"ceiling {label}: {value:,.0f}")
    left.set_ylabel("tokens / s")
    left.set_title(f"pretraining throughput ({args.threads} threads, median, min-max)")
    left.legend(fontsize=8)
    left.tick_params(axis="x", labelsize=8)
    for name, values in curves.items():
        steps = np.arange(1, len(values) + 1) * args.loss_chunk
        right.plot(steps, values, label=name)
    right.set_xlabel("step")
    right.set_ylabel(f"training loss (mean of {args.loss_chunk} steps)")
    right.set_title("default precision vs fp32, same batches per seed")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main(argv=None):
    args = parse_args(argv)
    device = setup(args)
    started = time.time()
    corpus, vocab_size = load_pool_corpus(args.data_dir, args.pool_size)
    mean_words = float(corpus.lengths.mean())
    tokens_per_batch = round(args.batch_size * (mean_words + 1))
    default_precision = resolve_precision(device, "auto")
    info = machine(device)
    print(f"{info['cpu']} ({info.get('gpu', 'no GPU')}), {args.threads} threads, load "
          f"{info['load_average_at_start']}; pool {len(corpus):,} sentences, vocabulary "
          f"{vocab_size:,}, mean {mean_words:.2f} words; default precision {default_precision}")

    rates = matmul_rates(device, tokens_per_batch, args.hidden_dim, vocab_size)
    flops = training_flops_per_token(args.embed_dim, args.hidden_dim, args.latent_dim, vocab_size,
                                     mean_words)
    ceilings = {name: rate * 1e9 / flops["total"] for name, rate in rates.items()}
    step_rates = recurrent_rates(device, args.batch_size, args.hidden_dim)
    sequential = sequential_flops_per_token(args.hidden_dim, mean_words)
    shape_aware = {name: shape_aware_ceiling(flops["total"], sequential, rates[name], step_rates[name])
                   for name in step_rates}
    print("matmul GFLOP/s:", {k: round(v) for k, v in rates.items()}, "per time step:",
          {k: round(v) for k, v in step_rates.items()},
          f"training MFLOP/token: {flops['total'] / 1e6:.1f} ({sequential / 1e6:.1f} per time step)")

    results, ratio = throughput(corpus, vocab_size, args, device, default_precision)
    paired = overhead_ratio(corpus, vocab_size, args, device, default_precision)
    profile = None
    if args.profile_steps > 0:
        profile = step_profile(corpus, vocab_size, args, device, default_precision, args.profile_steps)
        sizes = BNVAE(embed_dim=args.embed_dim, hidden_dim=args.hidden_dim, latent_dim=args.latent_dim)
        dense = sum(p.numel() for layer in TextVAE(**module_kwargs(sizes, vocab_size)).modules()
                    if isinstance(layer, AUTOCAST_LAYERS) for p in layer.parameters(recurse=False))
        profile["outside_kernels"] = work_outside_kernels(device, round(profile["tokens_per_step"]),
                                                          vocab_size, dense)
    curves, loss = loss_curves(corpus, vocab_size, args, device, default_precision)

    rows = []
    for name, result in results.items():
        ceiling = ceilings["bf16" if result["precision"] == "bf16" else "fp32"]
        result["fraction_of_ceiling"] = result["median_tokens_per_second"] / ceiling
        result["fraction_of_fp32_onednn_ceiling"] = (result["median_tokens_per_second"]
                                                     / ceilings.get("fp32_onednn", np.nan))
        result["fraction_of_shape_aware_ceiling"] = (result["median_tokens_per_second"]
                                                     / shape_aware[result["precision"]])
        result["seconds_per_epoch_of_pool"] = corpus.n_tokens() / result["median_tokens_per_second"]
        result["cpu_fraction_of_ceiling"] = result["median_tokens_per_cpu_second"] / ceiling
        rows.append([name, f"{result['median_tokens_per_second']:,.0f}",
                     " ".join(f"{v:,.0f}" for v in result["samples"]),
                     f"{result['median_tokens_per_cpu_second']:,.0f}",
                     f"{result['seconds_per_epoch_of_pool']:.0f}",
                     f"{result['fraction_of_ceiling']:.0%}",
                     f"{result['fraction_of_shape_aware_ceiling']:.0%}"])
    print()
    print_table(rows, ["variant", "tokens/s (median)", "samples", "tokens/CPU-s", "s/epoch",
                       "of ceiling", "of shape-aware ceiling"])
    print()
    print_table([[k, f"{rates[k]:.0f}", f"{step_rates[k]:.0f}" if k in step_rates else "",
                  f"{ceilings[k]:,.0f}", f"{shape_aware[k]:,.0f}" if k in shape_aware else ""]
                 for k in rates],
                ["matmul path", "GFLOP/s", "GFLOP/s per time step", "ceiling tokens/s",
                 "shape-aware ceiling"])
    if profile is not None:
        print_profile(profile)
    print(f"\nBN-VAE / VAE throughput ratio: {paired['median']:.3f} median of {paired['pairs']} "
          f"back-to-back pairs of {paired['steps']} steps (quartiles {paired['quartiles'][0]:.3f}, "
          f"{paired['quartiles'][1]:.3f}); from the repeats above {ratio['median']:.3f} wall (per repeat "
          f"{', '.join(f'{r:.3f}' for r in ratio['per_repeat'])}), {ratio['median_cpu']:.3f} "
          f"per CPU second")
    print(f"loss over the last {loss['last_steps']} of {args.loss_steps} steps: "
          + ", ".join(f"{k} {v:.3f}" for k, v in loss["mean_loss"].items()))
    print(f"{default_precision} - fp32 on the same seed: "
          + ", ".join(f"{d:+.3f}" for d in loss["difference_precision_per_seed"])
          + f" (mean {loss['difference_precision_mean']:+.3f}); fp32 standard deviation across "
            f"seeds: {loss['fp32_std_across_seeds']:.3f}")

    out = args.out or os.path.join(RESULTS_DIR, f"pretrain_{device.type}.json")
    payload = {"benchmark": "pretrain", "command": "python " + " ".join(sys.argv),
               "machine": info, "seconds": time.time() - started,
               "config": {"embed_dim": args.embed_dim, "hidden_dim": args.hidden_dim,
                          "latent_dim": args.latent_dim, "batch_size": args.batch_size,
                          "vocab_size": vocab_size, "steps": args.steps, "repeats": args.repeats,
                          "warmup_steps": args.warmup_steps, "default_precision": default_precision},
               "pool": {"sentences": len(corpus), "tokens": corpus.n_tokens(), "pool_size": args.pool_size,
                        "mean_words": mean_words},
               "matmul_gflops": rates, "matmul_shape": [tokens_per_batch, args.hidden_dim, vocab_size],
               "flops_per_token": flops, "ceiling_tokens_per_second": ceilings,
               "matmul_gflops_per_time_step": step_rates, "sequential_flops_per_token": sequential,
               "shape_aware_ceiling_tokens_per_second": shape_aware,
               "target_tokens_per_second": TARGET_TOKENS_PER_SECOND,
               "throughput": results, "bnvae_over_vae": ratio, "bnvae_over_vae_pairs": paired, "profile": profile,
               "loss": {**loss, "curves": curves, "chunk_steps": args.loss_chunk}}
    write_json(payload, out)
    figure(args.figure or os.path.splitext(out)[0] + ".png", results, ceilings, curves, args)


if __name__ == "__main__":
    main()
