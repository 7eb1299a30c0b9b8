"""Pretraining throughput on 1 and more processes (torch.distributed, gloo on CPUs,
nccl on GPUs), per-process efficiency and peak memory per process.

Each process count runs in its own group of processes (``torch.multiprocessing``,
the environment ``torchrun`` would set): every rank trains its share of the same
global batches with ``ssl_textvae.engine.training.train_epoch`` under DDP, as
``ssl-textvae pretrain`` does, for ``--warmup-steps`` then ``--steps`` optimizer
steps. Tokens/s counts the tokens of the whole global batch (words plus ``</s>``)
over the slowest rank's time; efficiency is tokens/s per process divided by that of
one process. Peak RSS is each process's ``ru_maxrss`` at the end (the corpus is held
by every rank). On CPUs each process uses ``--threads`` intra-op threads (1 by
default, as ``OMP_NUM_THREADS=1``), so N processes need N free cores.

    OMP_NUM_THREADS=1 python benchmarks/bench_distributed.py                 # 1 and 2 processes
    python benchmarks/bench_distributed.py --quick --synthetic              # a smoke test
    python benchmarks/bench_distributed.py --device cuda --processes 1 2 4 8
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks._common import (DEFAULT_DATA_DIR, POOL_NAME, RESULTS_DIR, add_model_arguments,  # noqa: E402
                                load_pool_corpus, machine, print_table, write_json, zipf_texts)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR,
                        help="folder with the short-Yelp pool (default: %(default)s)")
    parser.add_argument("--synthetic", action="store_true",
                        help="Zipf-distributed synthetic texts instead of the short-Yelp pool")
    parser.add_argument("--device", default="cpu", help="'cpu' or 'cuda' (one GPU per process)")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per process (default: 1)")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=40, help="timed optimizer steps")
    parser.add_argument("--warmup-steps", type=int, default=5)
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    parser.add_argument("--quick", action="store_true", help="a tiny model and few steps (smoke test)")
    parser.add_argument("--out", default=None, help="JSON file (default: benchmarks/results/)")
    add_model_arguments(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.embed_dim, args.hidden_dim, args.latent_dim = 16, 32, 8
        args.steps, args.warmup_steps, args.batch_size = 4, 1, 16
    return args


def load_corpus(args):
    """The tokenized texts every rank holds: (corpus, vocab_size)."""
    from ssl_textvae.text.data import EncodedCorpus
    from ssl_textvae.text.tokenization import TextTokenizer

    if not args.synthetic:
        if not os.path.isfile(os.path.join(args.data_dir, POOL_NAME)):
            raise SystemExit(f"No pool at {args.data_dir!r}; pass --data-dir or --synthetic.")
        return load_pool_corpus(args.data_dir)
    texts = zipf_texts((args.warmup_steps + args.steps) * args.batch_size, 5000, 5, 20)
    tokenizer = TextTokenizer().fit(texts)
    return EncodedCorpus.from_texts(tokenizer, texts), tokenizer.vocab_size


def rank_main(rank, world_size, port, args, out_dir):
    """One rank: join the group, train warm-up and timed steps, write its numbers."""
    import torch.distributed as dist

    from ssl_textvae.engine.distributed import current_shard, local_device, process_group
    from ssl_textvae.nn.model import TextVAE
    from ssl_textvae.engine.loop import make_optimizer
    from ssl_textvae.engine.training import objective_terms, train_epoch
    from ssl_textvae import BNVAE
    from ssl_textvae.estimators.bnvae import module_kwargs, training_config

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(args.threads)
    device = local_device("auto" if args.device == "cuda" else "cpu")
    corpus, vocab_size = load_corpus(args)
    rng = np.random.default_rng(0)
    chunks = [corpus.subset(rng.choice(len(corpus), steps * args.batch_size, replace=False))
              for steps in (args.warmup_steps, args.steps)]
    with process_group("auto", device):
        shard = current_shard()
        torch.manual_seed(0)
        sizes = BNVAE(embed_dim=args.embed_dim, hidden_dim=args.hidden_dim, latent_dim=args.latent_dim)
        module = TextVAE(**module_kwargs(sizes, vocab_size)).to(device)
        config = training_config(BNVAE(batch_size=args.batch_size, max_epochs=1, precision=args.precision,
                                       verbose=0), seed=0, n_threads=args.threads)
        optimizer = make_optimizer(config.optimizer, module.parameters(), config.lr)
        terms = lambda tokens, lengths: objective_terms(module, tokens, lengths, config.objective)  # noqa: E731
        with shard.training(module, terms, device) as terms:
            for chunk in chunks:   # the first is the warm-up; the record kept is the timed one
                record = train_epoch(module, optimizer, chunk, config, device, rng, 0,
                                     shard=shard, terms=terms)
        slowest = torch.tensor([record["seconds"]], device=device)
        if world_size > 1:
            dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
        seconds = float(slowest)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # KiB on Linux
    result = {"rank": rank, "seconds": seconds, "tokens": chunks[1].n_tokens(),
              "peak_rss_mib": peak_mib, "threads": torch.get_num_threads(), "device": str(device)}
    if device.type == "cuda":
        result["peak_gpu_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    np.save(os.path.join(out_dir, f"{world_size}-{rank}.npy"), result, allow_pickle=True)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def measure(args, world_size, out_dir):
    import torch.multiprocessing as mp

    start = time.perf_counter()
    mp.spawn(rank_main, args=(world_size, free_port(), args, out_dir), nprocs=world_size)
    ranks = [np.load(os.path.join(out_dir, f"{world_size}-{rank}.npy"), allow_pickle=True).item()
             for rank in range(world_size)]
    tokens_per_second = ranks[0]["tokens"] / ranks[0]["seconds"]
    return {"processes": world_size, "tokens_per_second": tokens_per_second,
            "tokens_per_second_per_process": tokens_per_second / world_size,
            "timed_seconds": ranks[0]["seconds"], "wall_seconds": time.perf_counter() - start,
            "peak_rss_mib_per_process": [r["peak_rss_mib"] for r in ranks],
            **({"peak_gpu_mib_per_process": [r["peak_gpu_mib"] for r in ranks]}
               if "peak_gpu_mib" in ranks[0] else {})}


def figure(path, runs):
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    processes = [run["processes"] for run in runs]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.plot(processes, [run["tokens_per_second"] for run in runs], "o-", label="measured")
    left.plot(processes, [runs[0]["tokens_per_second"] * n / processes[0] for n in processes], "k--",
              label="linear")
    left.set(xlabel="processes", ylabel="tokens/s", title="pretraining throughput", xticks=processes)
    left.legend()
    right.bar([str(n) for n in processes], [run["efficiency"] for run in runs])
    right.set(xlabel="processes", ylabel="tokens/s per process / 1 process", ylim=(0, 1.1),
              title="per-process efficiency")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")
    return path


def main(argv=None):
    import tempfile

    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    if args.device == "cuda" and torch.cuda.device_count() < max(args.processes):
        raise SystemExit(f"{max(args.processes)} processes need as many GPUs; "
                         f"torch sees {torch.cuda.device_count()}.")
    with tempfile.TemporaryDirectory() as out_dir:
        runs = [measure(args, n, out_dir) for n in sorted(args.processes)]
    base = runs[0]["tokens_per_second_per_process"]
    for run in runs:
        run["efficiency"] = run["tokens_per_second_per_process"] / base
    print_table([(r["processes"], f"{r['tokens_per_second']:.0f}", f"{r['efficiency']:.2f}",
                  " ".join(f"{m:.0f}" for m in r["peak_rss_mib_per_process"])) for r in runs],
                ["processes", "tokens/s", "efficiency", "peak RSS MiB per process"])
    device = torch.device("cuda" if args.device == "cuda" else "cpu")
    out = args.out or os.path.join(RESULTS_DIR, f"distributed_{device.type}{'_quick' if args.quick else ''}.json")
    payload = {"machine": machine(device), "settings": {k: v for k, v in vars(args).items() if k != "out"},
               "command": " ".join([os.path.basename(sys.executable)] + sys.argv), "runs": runs}
    payload["machine"]["threads"] = args.threads   # per process, not this launcher's
    write_json(payload, out)
    payload["figure"] = figure(os.path.splitext(out)[0] + ".png", runs)
    return payload


if __name__ == "__main__":
    main()
