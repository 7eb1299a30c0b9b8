"""CUDA paths: ``device="auto"`` picks the GPU where there is one, a GPU-trained model encodes as
it does on a CPU, and a model saved on a GPU loads on a CPU. The ``gpu``-marked tests need CUDA
(``python -m pytest -m gpu``, which ``benchmarks/gpu_run.py`` runs); the first test runs anywhere."""

import pickle

import numpy as np
import pytest
import torch

from conftest import TINY

from ssl_textvae import BNVAE, BNVAEClassifier
from ssl_textvae.runtime.devices import resolve_device

needs_cuda = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_auto_picks_cuda_when_torch_sees_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device(None) == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")


@pytest.fixture(scope="module")
def gpu_vae(corpus):
    return BNVAE(**TINY, device="auto").fit(corpus[0][:300])


class TestOnCuda:
    pytestmark = needs_cuda

    def test_auto_trains_on_the_gpu(self, gpu_vae):
        assert next(gpu_vae.module_.parameters()).device.type == "cuda"
        assert np.isfinite(gpu_vae.history_[-1]["valid_loss"])

    def test_gpu_means_match_the_same_weights_on_the_cpu(self, gpu_vae, corpus, tmp_path):
        gpu_vae.save(tmp_path / "vae")
        on_cpu = BNVAE.load(tmp_path / "vae").set_params(device="cpu")
        texts = corpus[0][:50]
        gpu_means = BNVAE.load(tmp_path / "vae").set_params(device="cuda").transform(texts)
        cpu_means = on_cpu.transform(texts)
        assert gpu_means.shape == cpu_means.shape == (50, TINY["latent_dim"])
        # bf16 autocast on either side: agreement to bf16's precision, not bit for bit
        np.testing.assert_allclose(gpu_means, cpu_means, atol=0.1, rtol=0.05)

    def test_a_gpu_model_unpickles_with_cpu_tensors(self, gpu_vae):
        state = gpu_vae.__getstate__()
        assert all(tensor.device.type == "cpu" for tensor in state["_module_state"][0].values())
        restored = pickle.loads(pickle.dumps(gpu_vae)).set_params(device="cpu")
        assert restored.transform(["good food"]).shape == (1, TINY["latent_dim"])

    def test_classifier_fits_and_predicts_on_the_gpu(self, corpus, semi_labels):
        model = BNVAEClassifier(vae=BNVAE(**TINY, device="cuda")).fit(corpus[0], semi_labels)
        assert set(model.predict(corpus[0][:20])) <= set(model.classes_)
