"""A saved model directory is one thing: ``trusted`` names exact types, a failed save
leaves the old model loadable, and a file swapped or edited after saving is refused
by name (format 3); older formats load as before."""

import json
import os
import shutil

import numpy as np
import pytest
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression

import ssl_textvae
from ssl_textvae import BNCVAE, BNVAE, BNVAEClassifier, FineTunedBNVAEClassifier
from ssl_textvae.estimators.persistence import CONFIG, HEAD, TOKENIZER, VAE_DIR, WEIGHTS, SaveError

from conftest import make_corpus

SMALL = dict(embed_dim=8, hidden_dim=8, max_epochs=1, batch_size=16, random_state=0, verbose=0)
MISMATCH = "does not match the model saved with it"


class UntrustedHead(LogisticRegression):
    """A head of a type skops does not trust by default."""


def renamed(texts):
    """The texts with every word renamed one to one: a vocabulary of the same size."""
    return [" ".join(word + "x" for word in text.split()) for text in texts]


@pytest.fixture(scope="module")
def texts():
    return make_corpus(120, seed=21)


@pytest.fixture(scope="module")
def vaes(texts):
    """Two BNVAEs of the same settings and vocabulary size, fitted on different words."""
    return (BNVAE(latent_dim=4, **SMALL).fit(texts[0]),
            BNVAE(latent_dim=4, **SMALL).fit(renamed(texts[0])))


@pytest.fixture(scope="module")
def classifiers(texts):
    """Classifiers of latent sizes 4 and 6."""
    return [BNVAEClassifier(vae=BNVAE(latent_dim=latent, **SMALL)).fit(*texts) for latent in (4, 6)]


def saved(model, path):
    model.save(path)
    return path


def edit_config(path, edit):
    config = json.loads((path / CONFIG).read_text(encoding="utf-8"))
    edit(config)
    (path / CONFIG).write_text(json.dumps(config), encoding="utf-8")


# -- item 1: trusted takes exact type names only -------------------------------------------------

@pytest.fixture(scope="module")
def untrusted_classifier(vaes, texts, tmp_path_factory):
    classifier = BNVAEClassifier(vae=FrozenEstimator(vaes[0]), estimator=UntrustedHead()).fit(*texts)
    return saved(classifier, tmp_path_factory.mktemp("untrusted") / "model")


@pytest.mark.parametrize("trusted", [f"{__name__}.UntrustedHead.and.more", True, {"a": 1},
                                     [f"{__name__}.UntrustedHead", 3]],
                         ids=["str", "bool", "dict", "list-with-int"])
def test_trusted_that_is_not_a_list_of_names_is_a_type_error(untrusted_classifier, trusted):
    for load in (BNVAEClassifier.load, ssl_textvae.load):
        with pytest.raises(TypeError, match=r"trusted must be None or a list of type names \(str\)"):
            load(untrusted_classifier, trusted=trusted)


def test_a_str_trusted_is_refused_with_a_hint_and_exact_names_load(untrusted_classifier, vaes):
    name = f"{__name__}.UntrustedHead"
    with pytest.raises(TypeError, match=r"pass a list: trusted=\["):
        ssl_textvae.load(untrusted_classifier, trusted=name)
    with pytest.raises(ValueError, match="not trusted"):   # a prefix is not the name
        ssl_textvae.load(untrusted_classifier, trusted=[name[:-1]])
    assert isinstance(ssl_textvae.load(untrusted_classifier, trusted=(name,)).estimator_, UntrustedHead)


def test_trusted_is_checked_for_every_class(vaes, tmp_path):
    with pytest.raises(TypeError, match="trusted must be None or a list"):
        ssl_textvae.load(saved(vaes[0], tmp_path / "vae"), trusted="x")


# -- item 2: a failed save leaves the old model -------------------------------------------------

def failing_writer(monkeypatch, module, name):
    """Make ``module.name`` write half a file, then fail as a full disk would."""
    def fail(*args, **kwargs):
        file = args[1] if len(args) > 1 else kwargs.get("filename") or kwargs.get("file")
        with open(file, "wb") as handle:
            handle.write(b"\0" * 10)
        raise RuntimeError("File too large")
    monkeypatch.setattr(module, name, fail)


def test_a_failed_weights_write_leaves_the_old_model(vaes, texts, tmp_path, monkeypatch):
    import safetensors.torch

    old, new = vaes
    path = saved(old, tmp_path / "model")
    failing_writer(monkeypatch, safetensors.torch, "save_file")
    with pytest.raises(SaveError, match="model that was there is untouched .*File too large"):
        new.save(path)
    assert os.listdir(tmp_path) == ["model"]   # no temporary directory left behind
    monkeypatch.undo()
    np.testing.assert_array_equal(BNVAE.load(path).transform(texts[0][:20]), old.transform(texts[0][:20]))
    with pytest.raises(OSError, match="nothing was written there"):   # SaveError is an OSError
        failing_writer(monkeypatch, safetensors.torch, "save_file")
        new.save(tmp_path / "fresh")
    assert os.listdir(tmp_path) == ["model"]


@pytest.mark.parametrize("writer", ["head", "nested-weights"])
def test_a_failed_classifier_save_leaves_the_old_classifier(classifiers, texts, tmp_path, monkeypatch,
                                                            writer):
    import safetensors.torch
    import skops.io

    old, new = classifiers
    path = saved(old, tmp_path / "model")
    if writer == "head":
        failing_writer(monkeypatch, skops.io, "dump")
    else:
        failing_writer(monkeypatch, safetensors.torch, "save_file")
    with pytest.raises(SaveError, match="untouched"):
        new.save(path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["model"]
    loaded = ssl_textvae.load(path)
    assert loaded.vae_.latent_dim == 4
    np.testing.assert_array_equal(loaded.predict_proba(texts[0][:20]), old.predict_proba(texts[0][:20]))


def test_a_save_replaces_the_directory_as_a_whole(vaes, classifiers, tmp_path):
    path = saved(classifiers[0], tmp_path / "model")
    vaes[0].save(path)   # a BNVAE over a classifier: no head.skops or vae/ left to mix in
    assert sorted(os.listdir(path)) == sorted([CONFIG, TOKENIZER, WEIGHTS])
    assert isinstance(ssl_textvae.load(path), BNVAE)


def test_files_beside_the_model_are_kept(vaes, texts, tmp_path, monkeypatch):
    """A save keeps what it did not write (the CLI's checkpoints/ folder, notes), also
    when it replaces a model and when it fails."""
    import safetensors.torch

    path = tmp_path / "model"
    (path / "checkpoints").mkdir(parents=True)
    (path / "checkpoints" / "checkpoint.pt").write_bytes(b"state")
    (path / "notes.txt").write_text("mine")
    for vae in vaes:   # into a directory of other files, then over the model saved there
        vae.save(path)
        assert sorted(os.listdir(path)) == sorted([CONFIG, TOKENIZER, WEIGHTS, "checkpoints", "notes.txt"])
    failing_writer(monkeypatch, safetensors.torch, "save_file")
    with pytest.raises(SaveError, match="untouched"):
        vaes[0].save(path)
    monkeypatch.undo()
    assert (path / "checkpoints" / "checkpoint.pt").read_bytes() == b"state"
    assert (path / "notes.txt").read_text() == "mine" and os.listdir(tmp_path) == ["model"]
    probe = renamed(texts[0][:5])   # the words of the second VAE
    np.testing.assert_array_equal(BNVAE.load(path).transform(probe), vaes[1].transform(probe))
    (tmp_path / "file").write_text("")
    with pytest.raises(FileExistsError, match="it is a file, not a directory"):
        vaes[0].save(tmp_path / "file")


# -- items 3, 4, 5: every file is tied to config.json and config.json to the weights -------------

def test_a_swapped_tokenizer_of_the_same_size_is_refused(vaes, classifiers, tmp_path):
    first, second = (saved(vae, tmp_path / f"vae{i}") for i, vae in enumerate(vaes))
    assert vaes[0].tokenizer_.vocab_size == vaes[1].tokenizer_.vocab_size
    shutil.copy(second / TOKENIZER, first / TOKENIZER)
    match = rf"tokenizer.json in .*vae0' {MISMATCH}: its SHA-256 differs from the one recorded in config.json"
    for load in (BNVAE.load, ssl_textvae.load):
        with pytest.raises(ValueError, match=match):
            load(first)
    nested = saved(classifiers[0], tmp_path / "classifier")
    shutil.copy(second / TOKENIZER, nested / VAE_DIR / TOKENIZER)
    with pytest.raises(ValueError, match=rf"tokenizer.json in .*vae' {MISMATCH}"):
        ssl_textvae.load(nested)


@pytest.mark.parametrize("part", [HEAD, VAE_DIR])
def test_a_head_or_vae_swapped_between_classifiers_is_refused(classifiers, tmp_path, part):
    four, six = (saved(model, tmp_path / f"latent{model.vae_.latent_dim}") for model in classifiers)
    if part == HEAD:
        shutil.copy(six / HEAD, four / HEAD)
    else:
        shutil.rmtree(four / VAE_DIR)
        shutil.copytree(six / VAE_DIR, four / VAE_DIR)
    name = "head.skops" if part == HEAD else "vae/config.json"
    for load in (BNVAEClassifier.load, ssl_textvae.load):
        with pytest.raises(ValueError, match=rf"{name} in .*latent4' {MISMATCH}: its SHA-256 differs"):
            load(four)


@pytest.mark.parametrize("edit", [lambda c: c["params"].update(bn_eps=1e-5),
                                  lambda c: c["params"].update(dropout_in=0.1),
                                  lambda c: c["history"][0].update(epoch=7)],
                         ids=["bn_eps", "dropout_in", "history"])
def test_an_edited_config_setting_is_refused(vaes, classifiers, tmp_path, edit):
    path = saved(vaes[0], tmp_path / "vae")
    edit_config(path, edit)
    match = rf"config.json in .*vae' {MISMATCH}: its fields .* differ from the ones model.safetensors"
    for load in (BNVAE.load, ssl_textvae.load):
        with pytest.raises(ValueError, match=match):
            load(path)
    nested = saved(classifiers[0], tmp_path / "classifier")   # the VAE inside a classifier
    edit_config(nested / VAE_DIR, edit)
    with pytest.raises(ValueError, match=rf"config.json in .*vae' {MISMATCH}"):
        ssl_textvae.load(nested)


def test_an_edited_file_list_is_refused(classifiers, tmp_path):
    path = saved(classifiers[0], tmp_path / "model")
    edit_config(path, lambda c: c["files"].pop(HEAD))
    with pytest.raises(ValueError, match=rf"head.skops in .* {MISMATCH}: config.json does not list it"):
        ssl_textvae.load(path)
    path = saved(classifiers[0], tmp_path / "again")
    edit_config(path, lambda c: c["files"].update({"vae/extra.bin": "0" * 64}))
    with pytest.raises(ValueError, match=r"vae/extra.bin in .* is missing"):
        ssl_textvae.load(path)
    path = saved(classifiers[0], tmp_path / "third")
    edit_config(path, lambda c: c.pop("files"))
    with pytest.raises(ValueError, match=r"lacks \['files'\]"):
        ssl_textvae.load(path)


def test_a_note_beside_the_model_does_not_stop_it_loading(vaes, tmp_path, texts):
    path = saved(vaes[0], tmp_path / "vae")
    (path / "README.md").write_text("trained on the tiny corpus")
    (path / ".DS_Store").write_bytes(b"\0")
    np.testing.assert_array_equal(BNVAE.load(path).transform(texts[0][:5]), vaes[0].transform(texts[0][:5]))


def test_an_edited_fine_tuned_or_dialogue_model_is_refused(vaes, texts, tmp_path):
    model = FineTunedBNVAEClassifier(FrozenEstimator(vaes[0]), fine_tuning_max_epochs=1, random_state=0,
                                     verbose=0).fit(*texts)
    path = saved(model, tmp_path / "fine_tuned")
    edit_config(path, lambda c: c["params"].update(head_dropout=0.3))
    with pytest.raises(ValueError, match=rf"config.json in .* {MISMATCH}: .*fine_tuned.safetensors"):
        ssl_textvae.load(path)
    dialogue = BNCVAE(embed_dim=8, utterance_dim=8, context_dim=8, decoder_dim=8, latent_dim=4,
                      max_epochs=1, random_state=0, verbose=0)
    dialogue.fit([["hi there", "how are you"]] * 8, ["fine thanks"] * 8)
    path = saved(dialogue, tmp_path / "dialogue")
    edit_config(path, lambda c: c["params"].update(bn_eps=1e-5))
    with pytest.raises(ValueError, match=rf"config.json in .* {MISMATCH}"):
        BNCVAE.load(path)


def test_format_2_directories_still_load_unchecked(vaes, classifiers, tmp_path, texts):
    """A directory as ssl_textvae wrote it before format 3: no file hashes, no stamp."""
    path = saved(classifiers[0], tmp_path / "model")
    for directory in (path, path / VAE_DIR):
        edit_config(directory, lambda c: (c.pop("files"), c.update(format_version=2)))
    loaded = ssl_textvae.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(texts[0][:20]),
                                  classifiers[0].predict_proba(texts[0][:20]))


# -- item 15: a file instead of the directory ---------------------------------------------------

def test_a_config_file_path_names_the_directory_to_pass(classifiers, tmp_path):
    path = saved(classifiers[0], tmp_path / "model")
    for load in (ssl_textvae.load, BNVAE.load):
        with pytest.raises(ValueError, match=r"config.json' is a file; a model directory .* is expected; "
                                             r"pass '.*model/vae', the directory it is in"):
            load(path / VAE_DIR / CONFIG)
    with pytest.raises(ValueError, match=r"head.skops' is a file; a model directory .* is expected\.$"):
        ssl_textvae.load(path / HEAD)
