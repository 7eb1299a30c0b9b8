"""Pretraining on several processes (gloo on the CPU, spawned here): 2 ranks with 8 texts
each of every batch train what 1 process trains with batches of 16."""

import contextlib
import os
import time

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import ssl_textvae.nn.model
from ssl_textvae import BNVAE
from ssl_textvae.engine import distributed
from ssl_textvae.engine import loop as engine
from ssl_textvae.text.data import EncodedCorpus, bucket_batches, collate, n_batches
from ssl_textvae.nn.model import Encoder, MeanBatchNorm
from ssl_textvae.text.tokenization import TextTokenizer
from ssl_textvae.engine.loop import make_optimizer
from ssl_textvae.engine.training import train_epoch
from ssl_textvae.estimators.bnvae import training_config

from conftest import make_corpus, text_vae

# 57 texts: 6 for validation, 51 for training; 51 = 6 x 8 + 3, a final batch too short
# to give each of 2 ranks 2 texts, so it is merged into its neighbour.
PRETRAIN = dict(embed_dim=16, hidden_dim=16, latent_dim=4, batch_size=8, max_epochs=2,
                random_state=0, verbose=0, precision="fp32")


def varied_texts(n, seed=0):
    """Texts of 2 to 6 words, so batches hold texts of different lengths."""
    texts, _ = make_corpus(n, seed)
    return [" ".join(text.split()[:2 + i % 5]) for i, text in enumerate(texts)]


def fixed_noise(mean, logvar, n_samples):
    # z = mu + sigma * eps with the same eps everywhere: the runs differ in their
    # batches, not in their random draws
    noise = torch.linspace(-1.0, 1.0, mean.size(1), dtype=mean.dtype).expand(mean.size(0), n_samples, -1)
    return mean.unsqueeze(1) + noise * (0.5 * logvar).exp().unsqueeze(1)


@contextlib.contextmanager
def float64_model(module):
    """``module`` in float64 end to end for the block. The encoder casts its output to
    float32 (batch norm stays fp32 under bf16 autocast); but BN's backward has a gain
    of 1 / std and cancels, so float32 rounding alone moves the encoder's gradient by
    about 1% here, in one process as in two: exactness is checked in float64."""
    def encode(self, tokens, lengths):
        return self.to_posterior(self.dropout(self.last_state(tokens, lengths))).chunk(2, dim=-1)

    forwards = Encoder.forward, MeanBatchNorm.forward
    Encoder.forward, MeanBatchNorm.forward = encode, lambda self, mean: self.norm(mean)
    module.double()
    try:
        yield
    finally:
        Encoder.forward, MeanBatchNorm.forward = forwards
        module.float()


def tiny_setup():
    texts = varied_texts(48)
    tokenizer = TextTokenizer().fit(texts)
    corpus = EncodedCorpus.from_texts(tokenizer, texts)
    torch.manual_seed(0)
    module = text_vae(tokenizer.vocab_size, embed_dim=16, hidden_dim=16, latent_dim=4, gamma=0.7,
                      dropout_in=0.0, dropout_out=0.0)
    # At the paper's initialization the pre-BN means are 0.01 +- 3e-6, where float32 batch
    # norm loses 3 digits to the cancellation, and the decoder barely reads z, so the
    # encoder's gradient is that rounding times BN's gain of 1 / 3e-6. Centred and spread
    # means and a decoder that reads z (as after training) give gradients to compare.
    with torch.no_grad():
        module.encoder.to_posterior.bias.zero_()
        module.encoder.to_posterior.weight[:4].mul_(10000.0)   # the means, not the log-variances
        module.decoder.latent_to_state.weight.mul_(100.0)
    config = training_config(BNVAE(batch_size=16, max_epochs=1, precision="fp32", verbose=0), seed=0,
                             n_threads=1)
    return corpus, module, config


def gradient_step(module, corpus, indices, forward, scale=1.0):
    """Loss terms and gradients of one batch; the gradients after DDP's all-reduce."""
    module.train()
    module.zero_grad()
    tokens, lengths = collate(corpus, indices)
    terms = forward(tokens, lengths)
    ((terms["reconstruction"] + terms["kl"]).mean() * scale).backward()
    return terms["mean"].detach(), {name: p.grad.clone() for name, p in module.named_parameters()
                                    if p.grad is not None}


def _equivalence(rank, world_size, out_dir):
    """This rank's share of a global batch of 16 (gradients, BN output and statistics),
    then one epoch of 3 steps through ``train_epoch``, in float64."""
    ssl_textvae.nn.model.sample_gaussian = fixed_noise
    corpus, module, config = tiny_setup()
    shard = distributed.current_shard()
    batch = bucket_batches(corpus.lengths, 16, shuffle=False)[0]
    mine = batch[rank::world_size]
    with float64_model(module), shard.training(module, lambda tokens, lengths: module(tokens, lengths),
                                               torch.device("cpu")) as forward:
        means, grads = gradient_step(module, corpus, mine, forward, world_size * len(mine) / len(batch))
        norm = module.mean_norm.norm
        statistics = (norm.running_mean.clone(), norm.running_var.clone())
        module.load_state_dict(tiny_setup()[1].state_dict())   # the same start as the reference
        optimizer = make_optimizer(config.optimizer, module.parameters(), config.lr)
        record = train_epoch(module, optimizer, corpus, config, torch.device("cpu"),
                             np.random.default_rng(3), 0, shard=shard, terms=forward)
        weights = {name: value.clone() for name, value in module.state_dict().items()}
    return {"means": means, "grads": grads, "statistics": statistics, "record": record,
            "weights": weights}


def _pretrain(rank, world_size, out_dir):
    """BNVAE.fit under a process group, recording each rank's batches and checkpoint writes."""
    sizes, writes = [], []
    batches, save = distributed.ProcessShard.batches, engine.save_checkpoint

    def recording_batches(self, *args):
        steps = batches(self, *args)
        sizes.append([len(indices) for indices, _ in steps])
        return steps

    def recording_save(*args):
        writes.append(rank)
        save(*args)

    distributed.ProcessShard.batches, engine.save_checkpoint = recording_batches, recording_save
    vae = BNVAE(checkpoint_dir=os.path.join(out_dir, "checkpoints"), **PRETRAIN).fit(varied_texts(57))
    if distributed.is_main_process():
        vae.save(os.path.join(out_dir, "model"))
    return {"sizes": sizes, "writes": writes, "history": vae.history_,
            "weights": vae.module_.state_dict()}


TASKS = {"equivalence": _equivalence, "pretrain": _pretrain}


def _worker(rank, world_size, init_file, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        for task, run in TASKS.items():   # one spawn for all: starting a process takes seconds
            torch.save(run(rank, world_size, out_dir), os.path.join(out_dir, f"{task}{rank}.pt"))
        dist.barrier()
    finally:
        distributed.leave_process_group()


def run_ranks(world_size, out_dir, timeout=120):
    """``{task: [result of each rank]}`` of :data:`TASKS` on ``world_size`` spawned ranks;
    fails (and ends them) when one raises or they do not finish in ``timeout`` seconds."""
    context = mp.spawn(_worker, args=(world_size, os.path.join(out_dir, "init"), str(out_dir)),
                       nprocs=world_size, join=False)
    deadline = time.monotonic() + timeout
    try:
        while not context.join(max(deadline - time.monotonic(), 0.1)):   # True once all have ended
            if time.monotonic() > deadline:
                pytest.fail(f"{world_size} ranks did not finish in {timeout} s (a hang)")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
    return {task: [torch.load(os.path.join(out_dir, f"{task}{rank}.pt"), weights_only=False)
                   for rank in range(world_size)] for task in TASKS}


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("ddp")
    return run_ranks(2, str(out_dir)), out_dir


def test_two_ranks_of_8_give_the_gradients_and_weights_of_one_process_of_16(two_ranks, monkeypatch):
    monkeypatch.setattr(ssl_textvae.nn.model, "sample_gaussian", fixed_noise)
    ranks = two_ranks[0]["equivalence"]
    corpus, module, config = tiny_setup()
    batch = bucket_batches(corpus.lengths, 16, shuffle=False)[0]
    with float64_model(module):
        means, grads = gradient_step(module, corpus, batch, module)
        statistics = module.mean_norm.norm.running_mean.clone(), module.mean_norm.norm.running_var.clone()
    assert set(grads) == set(ranks[0]["grads"]) and len(grads) > 10
    for rank, result in enumerate(ranks):
        # batch norm normalized each rank's rows with the moments of all 16
        torch.testing.assert_close(result["means"], means[rank::2], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(result["statistics"], statistics, rtol=1e-10, atol=1e-12)
        for name, grad in grads.items():
            scale = float(grad.abs().max())
            torch.testing.assert_close(result["grads"][name], grad, rtol=1e-8, atol=1e-9 * scale, msg=name)

    module = tiny_setup()[1]
    initial = {name: value.double() for name, value in module.state_dict().items()}
    with float64_model(module):
        optimizer = make_optimizer(config.optimizer, module.parameters(), config.lr)
        record = train_epoch(module, optimizer, corpus, config, torch.device("cpu"),
                             np.random.default_rng(3), 0)
        weights = module.state_dict()
        assert n_batches(len(corpus), 16) == 3 and record["train_loss"] > 0
        for result in ranks:
            assert result["record"]["train_loss"] == pytest.approx(record["train_loss"], rel=1e-9)
            for name, weight in weights.items():
                # the one-process step clips with a norm summed in float32
                torch.testing.assert_close(result["weights"][name], weight, rtol=1e-6, atol=1e-9, msg=name)
        moved = [name for name, weight in weights.items() if not torch.equal(weight, initial[name])]
    assert "decoder.output.weight" in moved and "encoder.lstm.weight_hh_l0" in moved


def test_pretraining_on_two_ranks_shares_every_batch_and_checkpoints_once(two_ranks):
    ranks, out_dir = two_ranks[0]["pretrain"], two_ranks[1]
    first, second = ranks
    assert first["sizes"] and [len(epoch) for epoch in first["sizes"]] == [len(e) for e in second["sizes"]]
    for mine, theirs in zip(first["sizes"], second["sizes"]):
        assert min(mine + theirs) >= 2                       # no batch of one text on a rank
        assert sum(mine) + sum(theirs) == 51                 # every training text once an epoch
    assert len(first["sizes"][0]) == n_batches(51, 8, min_batch_size=4) == 6
    assert first["writes"] == [0, 0] and second["writes"] == []   # one writer, once an epoch
    assert first["history"] == second["history"] and len(first["history"]) == 2
    for name, weight in first["weights"].items():
        assert torch.equal(weight, second["weights"][name]), name
    record = first["history"][-1]
    assert record["valid_kl"] >= 4 * 0.7**2 / 2 and record["valid_active_units"] == 4

    # the saved model loads as any BNVAE does
    vae = BNVAE.load(os.path.join(out_dir, "model"))
    assert vae.history_ == first["history"] and vae.transform(["the food was good"]).shape == (1, 4)

    # resumed in one process: the 2 epochs come from the checkpoint, a third is trained
    resumed = BNVAE(checkpoint_dir=os.path.join(out_dir, "checkpoints"),
                    **{**PRETRAIN, "max_epochs": 3}).fit(varied_texts(57))
    assert resumed.history_[:2] == first["history"] and len(resumed.history_) == 3


def test_every_rank_takes_the_same_number_of_steps_of_at_least_2_texts():
    lengths = np.random.default_rng(0).integers(1, 30, 103)
    for world_size, batch_size in ((2, 8), (3, 8), (3, 6), (4, 16)):
        shares = [distributed.ProcessShard(rank, world_size).batches(lengths, batch_size,
                                                                    np.random.default_rng(5))
                  for rank in range(world_size)]
        assert len({len(steps) for steps in shares}) == 1
        assert len(shares[0]) == n_batches(len(lengths), batch_size, 2 * world_size)
        seen = np.concatenate([indices for steps in shares for indices, _ in steps])
        np.testing.assert_array_equal(np.sort(seen), np.arange(len(lengths)))
        for step in zip(*shares):
            sizes = [len(indices) for indices, _ in step]
            assert min(sizes) >= 2 and max(sizes) - min(sizes) <= 1
            # the loss scales make DDP's average of the ranks' gradients the global batch's
            assert sum(scale for _, scale in step) == pytest.approx(world_size)


def test_one_process_draws_the_batches_it_always_drew():
    lengths = np.random.default_rng(0).integers(1, 30, 97)
    single = distributed.SingleProcess().batches(lengths, 8, np.random.default_rng(1))
    for (indices, scale), expected in zip(single, bucket_batches(lengths, 8, True, np.random.default_rng(1))):
        assert scale == 1.0 and np.array_equal(indices, expected)


@pytest.mark.parametrize("n_texts, batch_size, world_size, match", [
    (100, 6, 4, "batch_size=6 is too small for 4 processes"),
    (5, 8, 4, "5 training texts cannot be shared by 4 processes"),
])
def test_too_many_processes_for_the_batches_is_a_clear_error(n_texts, batch_size, world_size, match):
    shard = distributed.ProcessShard(0, world_size)
    with pytest.raises(ValueError, match=match):
        shard.batches(np.full(n_texts, 5), batch_size, np.random.default_rng(0))


def test_process_group_refuses_an_unknown_backend():
    with pytest.raises(ValueError, match="backend must be one of"):
        with distributed.process_group("mpi"):
            pass


def test_outside_torchrun_nothing_is_distributed(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with distributed.process_group():
        assert not dist.is_initialized()
        assert type(distributed.current_shard()) is distributed.SingleProcess
        assert distributed.is_main_process()
