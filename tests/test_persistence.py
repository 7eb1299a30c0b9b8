"""save/load: weights, JSON and a skops head; nothing executed or unpickled on load;
format 1 directories (written before the nested layout) still load."""

import json
import os
import shutil

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression

import ssl_textvae
from ssl_textvae import BNVAE, BNVAEClassifier
from ssl_textvae.estimators.persistence import CONFIG, FORMAT_VERSION, HEAD, TOKENIZER, VAE_DIR, WEIGHTS

from conftest import make_corpus

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
PROBE = ["the food was good", "rude staff and cold food"]


class UntrustedHead(LogisticRegression):
    """A head of a type skops does not trust by default."""


@pytest.fixture(scope="module")
def held_out():
    return make_corpus(100, seed=5)[0]


@pytest.fixture(scope="module")
def saved_classifier(fitted_classifier, tmp_path_factory):
    path = tmp_path_factory.mktemp("classifier") / "model"
    fitted_classifier.save(path)
    return path


@pytest.fixture(scope="module")
def saved_vae(fitted_vae, tmp_path_factory):
    path = tmp_path_factory.mktemp("vae")
    fitted_vae.save(path)
    return path


def copy_dir(source, target):
    shutil.copytree(source, target)
    return target


def test_bnvae_round_trip(fitted_vae, saved_vae, held_out):
    assert sorted(os.listdir(saved_vae)) == sorted([CONFIG, TOKENIZER, WEIGHTS])
    for loaded in (BNVAE.load(saved_vae), ssl_textvae.load(saved_vae)):
        assert isinstance(loaded, BNVAE)
        assert loaded.get_params() == fitted_vae.get_params()
        assert loaded.history_ == fitted_vae.history_
        assert not loaded.module_.training
        np.testing.assert_array_equal(loaded.transform(held_out), fitted_vae.transform(held_out))


def test_classifier_round_trip(fitted_classifier, saved_classifier, held_out):
    assert sorted(os.listdir(saved_classifier)) == sorted([CONFIG, HEAD, VAE_DIR])
    config = json.loads((saved_classifier / CONFIG).read_text(encoding="utf-8"))
    assert config["format_version"] == FORMAT_VERSION and config["class"] == "BNVAEClassifier"
    for loaded in (BNVAEClassifier.load(saved_classifier), ssl_textvae.load(saved_classifier)):
        assert isinstance(loaded, BNVAEClassifier)
        np.testing.assert_array_equal(loaded.classes_, fitted_classifier.classes_)
        np.testing.assert_array_equal(loaded.predict_proba(held_out),
                                      fitted_classifier.predict_proba(held_out))
        assert loaded.history_ == fitted_classifier.history_
        # get_params describes the fitted model truthfully after a load
        assert loaded.get_params()["vae__latent_dim"] == fitted_classifier.vae_.latent_dim
        assert loaded.vae.get_params() == fitted_classifier.vae.get_params()


def test_a_frozen_vae_stays_frozen_after_a_load(fitted_vae, tmp_path, held_out):
    texts, labels = make_corpus(60, seed=4)
    classifier = BNVAEClassifier(vae=FrozenEstimator(fitted_vae)).fit(texts, labels)
    classifier.save(tmp_path / "model")
    loaded = ssl_textvae.load(tmp_path / "model")
    assert isinstance(loaded.vae, FrozenEstimator) and loaded.vae.estimator is loaded.vae_
    np.testing.assert_array_equal(loaded.predict(held_out), classifier.predict(held_out))


def test_format_1_directories_still_load():
    """Written by ssl_textvae 0.1.0 (format 1), before the VAE moved into vae/."""
    # The references are 0.1.0's fp32 outputs, and fp32 is pinned: this tiny VAE's pre-BN
    # variance is ~1e-7, so bf16 rounding (precision="auto" on an AVX-512 CPU) moves its
    # means by whole units.
    path = os.path.join(DATA, "format1_bnvae")
    for vae in (BNVAE.load(path), ssl_textvae.load(path)):
        assert vae.latent_dim == 4 and vae.hidden_dim == 8
        vae.set_params(precision="fp32")
        np.testing.assert_allclose(vae.transform(PROBE),
                                   np.load(os.path.join(DATA, "format1_bnvae_means.npy")), atol=1e-6)
    path = os.path.join(DATA, "format1_classifier")
    for classifier in (BNVAEClassifier.load(path), ssl_textvae.load(path)):
        assert classifier.get_params()["vae__latent_dim"] == 4
        classifier.vae_.set_params(precision="fp32")
        np.testing.assert_allclose(classifier.predict_proba(PROBE),
                                   np.load(os.path.join(DATA, "format1_classifier_proba.npy")),
                                   atol=1e-6)


def test_plain_vae_round_trip(tmp_path, held_out):
    vae = BNVAE(embed_dim=8, hidden_dim=8, latent_dim=4, gamma=0, max_epochs=1, verbose=0,
                random_state=0).fit(make_corpus(100)[0])
    vae.save(tmp_path)
    np.testing.assert_array_equal(BNVAE.load(tmp_path).transform(held_out), vae.transform(held_out))


def test_save_before_fit_raises(tmp_path):
    with pytest.raises(NotFittedError):
        BNVAE().save(tmp_path)
    with pytest.raises(NotFittedError):
        BNVAEClassifier().save(tmp_path)


def test_missing_directory_raises(tmp_path):
    for load in (BNVAE.load, ssl_textvae.load):
        with pytest.raises(FileNotFoundError, match="is .* a directory written by save"):
            load(tmp_path / "nothing")


def test_wrong_format_version_raises(saved_vae, tmp_path):
    path = copy_dir(saved_vae, tmp_path / "copy")
    config = json.loads((path / CONFIG).read_text(encoding="utf-8"))
    config["format_version"] = 99
    (path / CONFIG).write_text(json.dumps(config), encoding="utf-8")
    for load in (BNVAE.load, ssl_textvae.load):
        with pytest.raises(ValueError, match="model format version 99 .* reads formats 1, 2"):
            load(path)


def test_unknown_class_raises(saved_vae, tmp_path):
    path = copy_dir(saved_vae, tmp_path / "copy")
    config = json.loads((path / CONFIG).read_text(encoding="utf-8"))
    config["class"] = "Pipeline"
    (path / CONFIG).write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ValueError, match="holds a 'Pipeline'; ssl_textvae.load reads"):
        ssl_textvae.load(path)


@pytest.mark.parametrize("content, match", [
    (b"{not json", "config.json' is not valid JSON"),
    (b"\xff\xfe\x00", "config.json' is not valid JSON"),
    (b"[1, 2]", "format version None"),
    (b'{"format_version": 2, "class": "BNVAE"}', r"config.json' lacks \['params', 'history'\]"),
])
def test_corrupt_config_raises(saved_vae, tmp_path, content, match):
    path = copy_dir(saved_vae, tmp_path / "copy")
    (path / CONFIG).write_bytes(content)
    with pytest.raises(ValueError, match=match):
        BNVAE.load(path)


@pytest.mark.parametrize("corrupt", ["garbage", "truncated", "missing"])
def test_corrupt_weights_raise(saved_vae, tmp_path, corrupt):
    path = copy_dir(saved_vae, tmp_path / "copy")
    data = (path / WEIGHTS).read_bytes()
    if corrupt == "garbage":
        (path / WEIGHTS).write_bytes(b"\x00" * 64)
    elif corrupt == "truncated":
        (path / WEIGHTS).write_bytes(data[:len(data) // 2])
    else:
        (path / WEIGHTS).unlink()
    with pytest.raises(ValueError, match="Could not read the weights in .*model.safetensors"):
        BNVAE.load(path)


def test_weights_that_do_not_match_the_config_raise(saved_vae, tmp_path):
    path = copy_dir(saved_vae, tmp_path / "copy")
    config = json.loads((path / CONFIG).read_text(encoding="utf-8"))
    config["params"]["hidden_dim"] += 1
    (path / CONFIG).write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ValueError, match="does not match config.json"):
        BNVAE.load(path)


def test_corrupt_head_raises(saved_classifier, tmp_path):
    path = copy_dir(saved_classifier, tmp_path / "copy")
    (path / HEAD).write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="Could not read the head"):
        BNVAEClassifier.load(path)


def test_untrusted_type_in_head_is_refused_unless_trusted(fitted_vae, tmp_path, held_out):
    # A head of a type skops does not trust, saved by save itself: from format 3 a
    # head.skops written over a saved one is refused as a modified file.
    pytest.importorskip("skops.io")
    texts, labels = make_corpus(60, seed=4)
    classifier = BNVAEClassifier(vae=FrozenEstimator(fitted_vae),
                                 estimator=UntrustedHead()).fit(texts, labels)
    classifier.save(tmp_path / "model")
    path = tmp_path / "model"
    name = f"{__name__}.UntrustedHead"
    with pytest.raises(ValueError, match=f"not trusted: \\['{name}'\\]"):
        BNVAEClassifier.load(path)
    with pytest.raises(ValueError, match="not trusted"):
        BNVAEClassifier.load(path, trusted=["some.OtherType"])
    for load in (BNVAEClassifier.load, ssl_textvae.load):
        loaded = load(path, trusted=[name])
        np.testing.assert_array_equal(loaded.predict_proba(held_out), classifier.predict_proba(held_out))


def test_loading_with_the_other_class_raises(saved_classifier, saved_vae):
    with pytest.raises(ValueError, match="holds a BNVAEClassifier, not a BNVAE; load it with "
                                         "BNVAEClassifier.load or ssl_textvae.load"):
        BNVAE.load(saved_classifier)
    with pytest.raises(ValueError, match="holds a BNVAE, not a BNVAEClassifier"):
        BNVAEClassifier.load(saved_vae)


def edit_json(file, edit):
    content = json.loads(file.read_text(encoding="utf-8"))
    edit(content)
    file.write_text(json.dumps(content), encoding="utf-8")


@pytest.mark.parametrize("file, edit, match", [
    (CONFIG, lambda c: c["params"].update(nope=1),
     r"config.json': params.nope is not a parameter of BNVAE"),
    (CONFIG, lambda c: c.update(params=[1, 2]), r"config.json': params must be a JSON object"),
    (CONFIG, lambda c: c["params"].update(latent_dim="four"),
     r"config.json': params.latent_dim must be an int in the range \[1, inf\); got 'four'"),
    (CONFIG, lambda c: c["params"].update(hidden_dim=None), r"config.json': params.hidden_dim must be an int"),
    (CONFIG, lambda c: c["params"].update(softmax="xx"), r"config.json': params.softmax must be a str among"),
    (CONFIG, lambda c: c.update(history={"a": 1}), r"config.json': history must be a list; got \{'a': 1\}"),
    (CONFIG, lambda c: c.update({"class": ["BNVAE"]}), r"config.json': class must be a str"),
    (TOKENIZER, lambda c: c.update(foo=1), r"tokenizer.json': foo is not a field of a tokenizer"),
    (TOKENIZER, lambda c: c.pop("kind"), r"tokenizer.json' lacks \['kind'\]"),
    (TOKENIZER, lambda c: c.update(tokenizer=[1]), r"tokenizer.json': tokenizer could not be read"),
], ids=["unknown-param", "params-list", "latent-str", "hidden-none", "softmax", "history", "class",
        "tokenizer-extra", "tokenizer-kind", "tokenizer-body"])
def test_tampered_config_is_a_value_error_naming_file_and_field(saved_vae, tmp_path, file, edit, match):
    path = copy_dir(saved_vae, tmp_path / "copy")
    edit_json(path / file, edit)
    for load in (BNVAE.load, ssl_textvae.load):
        with pytest.raises(ValueError, match=match):
            load(path)


@pytest.mark.parametrize("name, value, saved_in", [
    ("gamma", 0.3, "model.safetensors"),
    ("lowercase", True, "tokenizer.json"),
    ("max_length", 3, "tokenizer.json"),
    ("tokenizer", "bpe", "tokenizer.json"),
    ("min_frequency", 4, "tokenizer.json"),
])
def test_an_edited_architecture_field_does_not_load_silently(saved_vae, saved_classifier, tmp_path,
                                                            name, value, saved_in):
    path = copy_dir(saved_vae, tmp_path / "copy")
    saved = json.loads((path / CONFIG).read_text(encoding="utf-8"))["params"][name]
    edit_json(path / CONFIG, lambda c: c["params"].update({name: value}))
    match = (rf"config.json' gives {name}={value!r}, but {saved_in} was written with "
             rf"{name}={saved!r}")
    with pytest.raises(ValueError, match=match):
        BNVAE.load(path)
    nested = copy_dir(saved_classifier, tmp_path / "classifier")   # the VAE inside a classifier
    edit_json(nested / VAE_DIR / CONFIG, lambda c: c["params"].update({name: value}))
    with pytest.raises(ValueError, match=match):
        ssl_textvae.load(nested)


def test_an_edited_frozen_flag_of_a_classifier_is_refused(saved_classifier, tmp_path):
    path = copy_dir(saved_classifier, tmp_path / "copy")
    edit_json(path / CONFIG, lambda c: c.update(vae_frozen=[1]))
    with pytest.raises(ValueError, match=r"config.json': vae_frozen must be a bool; got \[1\]"):
        BNVAEClassifier.load(path)
