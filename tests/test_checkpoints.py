"""Damaged checkpoints and checkpoints of other data fail with a clear error that names
the file and what to do; a checkpoint of the same data still resumes."""

import os

import pytest
import torch

from ssl_textvae import BNVAE
from ssl_textvae.engine.checkpoints import CHECKPOINT_NAME

from conftest import TINY, make_corpus

PARAMS = dict(TINY, max_epochs=1)


@pytest.fixture(scope="module")
def texts():
    return make_corpus(100, seed=3)[0]


@pytest.fixture()
def checkpoint(texts, tmp_path):
    BNVAE(**dict(PARAMS, checkpoint_dir=str(tmp_path))).fit(texts)
    return tmp_path / CHECKPOINT_NAME


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def garbage(path):
    path.write_bytes(b"\x00not a checkpoint\xff" * 64)


def empty(path):
    path.write_bytes(b"")


def another_torch_file(path):
    torch.save({"weights": torch.zeros(3)}, path)


@pytest.mark.parametrize("damage, match", [
    (truncate, "truncated or corrupt"), (garbage, "truncated or corrupt"),
    (empty, "truncated or corrupt"), (another_torch_file, "not one this package wrote"),
])
def test_damaged_checkpoint_names_the_file_and_the_remedy(texts, checkpoint, damage, match):
    damage(checkpoint)
    with pytest.raises(ValueError, match=match) as caught:
        BNVAE(**dict(PARAMS, max_epochs=2, checkpoint_dir=str(checkpoint.parent))).fit(texts)
    message = str(caught.value)
    assert str(checkpoint) in message
    assert "Delete" in message and "another checkpoint_dir" in message


def test_other_texts_do_not_resume_silently(texts, checkpoint):
    other = make_corpus(100, seed=4)[0]   # same words, so the same vocabulary size
    with pytest.raises(ValueError, match="other training data .* Pass the same texts"):
        BNVAE(**dict(PARAMS, max_epochs=2, checkpoint_dir=str(checkpoint.parent))).fit(other)


def test_same_texts_in_another_order_do_not_resume(texts, checkpoint):
    with pytest.raises(ValueError, match="other training data"):
        BNVAE(**dict(PARAMS, max_epochs=2, checkpoint_dir=str(checkpoint.parent))).fit(texts[::-1])


def test_checkpoint_records_its_data(texts, checkpoint):
    saved = torch.load(checkpoint, weights_only=True)["data"]
    assert saved["train_texts"] + saved["valid_texts"] == len(texts)
    assert len(saved["sha256"]) == 64


def test_same_texts_resume(texts, checkpoint):
    resumed = BNVAE(**dict(PARAMS, max_epochs=2, checkpoint_dir=str(checkpoint.parent))).fit(texts)
    assert [record["epoch"] for record in resumed.history_] == [1, 2]


def test_checkpoint_without_a_fingerprint_resumes_with_a_warning(texts, checkpoint):
    payload = torch.load(checkpoint, weights_only=True)
    del payload["data"]   # as written before checkpoints recorded their data
    torch.save(payload, checkpoint)
    with pytest.warns(UserWarning, match="before checkpoints recorded their data"):
        resumed = BNVAE(**dict(PARAMS, max_epochs=2, checkpoint_dir=str(checkpoint.parent))).fit(texts)
    assert len(resumed.history_) == 2
    assert os.path.exists(checkpoint)
