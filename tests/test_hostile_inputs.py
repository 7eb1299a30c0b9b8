"""What a hostile user tried, and the clear error (or the right answer) each now gets:
the numbers are those of the report (6 to 20). Tiny models, fitted once per module."""

import json
import warnings

import numpy as np
import pytest
import torch
from sklearn.frozen import FrozenEstimator

from ssl_textvae import (BNCVAE, BNVAE, BNVAEClassifier, FineTunedBNVAEClassifier, KLExplosionWarning,
                         TextFile, TrainingDivergedError, read_labeled_file)
from ssl_textvae.cli import main
from ssl_textvae.runtime.devices import resolve_device

from conftest import TINY, make_corpus

MICRO = dict(embed_dim=8, hidden_dim=16, latent_dim=4, max_epochs=1, batch_size=16, random_state=0,
             verbose=0)
MICRO_ARGS = [argument for name, value in MICRO.items() for argument in ("--param", f"vae__{name}={value}")]


@pytest.fixture(scope="module")
def texts_and_labels():
    texts, labels = make_corpus(80, seed=5)
    return texts, labels


@pytest.fixture(scope="module")
def vae(texts_and_labels):
    return BNVAE(**MICRO).fit(texts_and_labels[0])


@pytest.fixture(scope="module")
def classifier(vae, texts_and_labels):
    return BNVAEClassifier(vae=FrozenEstimator(vae)).fit(*texts_and_labels)


@pytest.fixture(scope="module")
def model_dir(classifier, tmp_path_factory):
    path = tmp_path_factory.mktemp("hostile") / "model"
    classifier.save(path)
    return path


@pytest.fixture(scope="module")
def train_file(texts_and_labels, tmp_path_factory):
    path = tmp_path_factory.mktemp("hostile") / "train.txt"
    path.write_text("".join(f"{label}\t{text}\n" for text, label in zip(*texts_and_labels)),
                    encoding="utf-8")
    return path


def one_error_line(capsys, expected):
    """stderr holds no traceback, ends with one error line, and says ``expected``."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert "Traceback" not in err and lines and all(line.startswith("ssl-textvae") for line in lines), err
    assert ": error: " in lines[-1] and sum(": error: " in line for line in lines) == 1, err
    assert expected in lines[-1], lines[-1]
    return lines[-1]


# -- 6: predict keeps one output line per input line ----------------------------------------
def test_6_cli_predict_gives_one_line_per_input_line_and_warns_about_blank_ones(model_dir, tmp_path,
                                                                                capsys):
    path = tmp_path / "new.txt"
    path.write_text("good food\n\nrude staff\n   \ngreat place\n", encoding="utf-8")
    assert main(["predict", str(model_dir), str(path)]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 5
    assert "2 of 5 lines" in captured.err and "line 2, 4" in captured.err
    assert main(["predict", str(model_dir), str(path), "--proba"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 6   # a header, then one row a line


# -- 7: a byte-order mark is dropped; bad UTF-8 names the file and line ---------------------
def test_7_a_byte_order_mark_makes_no_third_class(tmp_path, capsys):
    path = tmp_path / "bom.txt"
    path.write_text("1\tgood food\n0\tbad food\n", encoding="utf-8-sig")
    assert read_labeled_file(path)[1] == ["1", "0"]
    plain = tmp_path / "bom_texts.txt"
    plain.write_text("good food\nbad food\n", encoding="utf-8-sig")
    assert list(TextFile(plain)) == ["good food", "bad food"]
    broken = tmp_path / "broken.txt"
    broken.write_bytes("1\tgood\n".encode("utf-8-sig") + b"0\tfine\n1\tcaf\xe9\n")
    with pytest.raises(ValueError, match=r"broken.txt' is not valid utf-8 text: line 3"):
        read_labeled_file(broken)


def test_7_cli_fit_on_a_file_with_a_byte_order_mark(train_file, tmp_path, capsys):
    path = tmp_path / "bom_train.txt"
    path.write_text(train_file.read_text(encoding="utf-8"), encoding="utf-8-sig")
    assert main(["fit", str(path), str(tmp_path / "m"), *MICRO_ARGS]) == 0
    assert json.loads(capsys.readouterr().out)["classes"] == ["0", "1"]


# -- 8: unordered containers are refused -----------------------------------------------------
@pytest.mark.parametrize("make", [lambda t: {text: 1 for text in t}, set, frozenset,
                                  lambda t: {text: 1 for text in t}.keys()])
def test_8_unordered_containers_are_refused(classifier, vae, make):
    texts = make(["good food", "rude staff"])
    with pytest.raises(TypeError, match="Expected X to be a list, 1-d array or pandas Series of str"):
        classifier.predict(texts)
    with pytest.raises(TypeError, match="outputs would not line up"):
        vae.transform(texts)
    with pytest.raises(TypeError, match="list, 1-d array or pandas Series of str"):
        BNVAE(**MICRO).fit(make(make_corpus(20)[0]))


# -- 9: identical texts, and a KL that blows up ----------------------------------------------
def test_9_identical_texts_are_refused():
    with pytest.raises(ValueError, match="at least 2 distinct texts"):
        BNVAE(**MICRO).fit(["the food was good ."] * 300)


def test_9_a_validation_kl_far_over_the_bound_warns(vae):
    # The rule itself, on the epoch record pretraining checks: whether a given fit blows up
    # depends on the CPU's arithmetic (290 equal texts did under bf16 on AMX, not in fp32).
    from ssl_textvae.engine.diagnostics import check_validation_kl

    bound = vae.latent_dim * vae.gamma ** 2 / 2
    with pytest.warns(KLExplosionWarning, match="times BN-VAE's bound"):
        check_validation_kl(vae.module_, {"valid_kl": 274_921.0})
    with warnings.catch_warnings():
        warnings.simplefilter("error", KLExplosionWarning)
        check_validation_kl(vae.module_, {"valid_kl": 3 * bound})


# -- 10: divergence is caught in fine-tuning and dialogue training too -----------------------
def test_10_fine_tuning_divergence_raises(vae, texts_and_labels):
    model = FineTunedBNVAEClassifier(vae=FrozenEstimator(vae), fine_tuning_lr=1e9,
                                     fine_tuning_max_epochs=2, verbose=0, random_state=0)
    with pytest.raises(TrainingDivergedError, match=r"Fine-tuning diverged: the training loss "
                       r"became .* in epoch 1, batch \d+ of \d+.*smaller fine_tuning_lr"):
        model.fit(*texts_and_labels)


def test_10_dialogue_training_divergence_raises():
    contexts = [["hello .", "what color do you like ?"], ["hi .", "where do you live ?"]] * 20
    responses = ["i like red .", "in the city ."] * 20
    model = BNCVAE(embed_dim=8, utterance_dim=8, context_dim=8, decoder_dim=8, latent_dim=2,
                   batch_size=8, max_epochs=2, lr=1e9, clip_grad_norm=None, random_state=0, verbose=0)
    with pytest.raises(TrainingDivergedError, match="Dialogue training diverged: the training loss"):
        model.fit(contexts, responses)


# -- 11, 17, 20: tuning checks its storage and search space before any trial -----------------
def test_11_a_stored_study_refuses_another_search_space(texts_and_labels, tmp_path, capsys):
    pytest.importorskip("optuna")
    from ssl_textvae.tuning import tune

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    fixed = {f"vae__{name}": MICRO[name] for name in ("embed_dim", "hidden_dim", "max_epochs", "batch_size")}
    common = dict(storage=storage, study_name="s", fixed_params=fixed, cv_splits=2, cv_repeats=1,
                  random_state=0, verbose=0)
    study = tune(*texts_and_labels, n_trials=1, search_space={"vae__latent_dim": [4]}, **common)
    assert study.user_attrs["search_space"]
    with pytest.raises(ValueError, match="another search space .*use a new study name"):
        tune(*texts_and_labels, n_trials=2, search_space={"vae__latent_dim": [4, 8]}, **common)
    assert len(tune(*texts_and_labels, n_trials=1, search_space={"vae__latent_dim": [4]},
                    **common).trials) == 1   # the same space resumes
    # a study stored without the attribute (an older version) is compared with its trials
    import optuna

    old = optuna.create_study(storage=storage, study_name="old", direction="maximize")
    choices = optuna.distributions.CategoricalDistribution([4])
    old.add_trial(optuna.trial.create_trial(params={"vae__latent_dim": 4}, value=0.5,
                                            distributions={"vae__latent_dim": choices}))
    with pytest.raises(ValueError, match="'old' was created with another search space"):
        tune(*texts_and_labels, n_trials=2, search_space={"vae__latent_dim": [4, 8]},
             **dict(common, study_name="old"))
    train = tmp_path / "train.txt"
    train.write_text("".join(f"{label}\t{text}\n" for text, label in zip(*texts_and_labels)))
    arguments = ["tune", "--train", str(train), "--out", str(tmp_path / "out"), "--storage", storage,
                 "--study-name", "s", "--n-trials", "2", "--quiet"]
    capsys.readouterr()   # Optuna's log line of the study made above
    assert main(arguments) == 2
    one_error_line(capsys, "use a new study name")


@pytest.mark.parametrize("storage, message", [
    ("bogus://x", "unknown database scheme 'bogus'"),
    ("sqlite:///MISSING/deeper/study.db", "does not exist"),
])
def test_17_storage_urls_are_checked_first(texts_and_labels, tmp_path, capsys, storage, message):
    pytest.importorskip("optuna")
    from ssl_textvae.tuning import tune

    storage = storage.replace("MISSING", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match=message):
        tune(*texts_and_labels, n_trials=1, storage=storage, verbose=0)
    assert main(["tune", "--train", str(tmp_path / "not-read.txt"), "--storage", storage,
                 "--out", str(tmp_path / "out")]) == 2
    assert "--storage" in one_error_line(capsys, message)


@pytest.mark.parametrize("space, message", [
    ({"vae__latent_dim": [0, 4]}, r"holds 0, but vae__latent_dim must be an int in the range \[1, inf\)"),
    ({"vae__gamma": (-1.0, 1.0)}, "holds -1.0, but vae__gamma must be a float"),
    ({"vae__batch_size": (1, 8)}, "holds 1, but vae__batch_size"),
])
def test_20_the_search_space_is_checked_before_the_first_trial(texts_and_labels, space, message):
    pytest.importorskip("optuna")
    from ssl_textvae.tuning import tune

    with pytest.raises(ValueError, match=message):
        tune(*texts_and_labels, n_trials=1, search_space=space, verbose=0)


# -- 12: a lone surrogate names its item ------------------------------------------------------
def test_12_a_lone_surrogate_is_a_value_error_naming_the_item(classifier, texts_and_labels):
    texts = ["good food", "bad \ud800 text"]
    with pytest.raises(ValueError, match="Item 1 of X is not valid Unicode"):
        classifier.predict(texts)
    with pytest.raises(ValueError, match="Item 1 of X is not valid Unicode"):
        BNVAE(**MICRO).fit(texts + texts_and_labels[0][:10])


# -- 13: sizes no machine holds ----------------------------------------------------------------
@pytest.mark.parametrize("sizes", [dict(latent_dim=10**9), dict(hidden_dim=10**7)])
def test_13_sizes_beyond_the_memory_are_refused_before_allocation(texts_and_labels, sizes):
    with pytest.raises(ValueError, match=r"GiB in fp32 .* this machine has .* GiB of memory"):
        BNVAE(**dict(MICRO, **sizes)).fit(texts_and_labels[0])


# -- 14: every unavailable device gets the same clear error ------------------------------------
def test_14_unavailable_devices_are_a_clear_value_error():
    unavailable = ["xla"] + (["cuda:99"] if torch.cuda.is_available() else ["cuda", "cuda:7"])
    if not torch.backends.mps.is_available():
        unavailable.append("mps")
    for device in unavailable:
        with pytest.raises(ValueError, match=f"device={device!r} but"):
            resolve_device(device)
    with pytest.raises(ValueError, match="must be 'auto', 'cpu'"):
        resolve_device("bogus")
    assert resolve_device("cpu").type == "cpu"


# -- 16: a head parameter with the default head -------------------------------------------------
def test_16_head_parameters_with_the_default_head(train_file, tmp_path, capsys):
    with pytest.raises(ValueError, match=r"estimator__C needs an explicit estimator: estimator=None "
                       r"means LogisticRegression\(max_iter=1000\).*estimator=LogisticRegression"
                       r"\(max_iter=1000, C=...\)"):
        BNVAEClassifier().set_params(estimator__C=1)
    with pytest.raises(ValueError, match=r"vae__lr needs an explicit vae.*vae=BNVAE\(lr=...\)"):
        BNVAEClassifier().set_params(vae__lr=1)
    # the CLI has no way to pass a head object: there the default head is made explicit
    assert main(["fit", str(train_file), str(tmp_path / "m"), *MICRO_ARGS,
                 "--param", "estimator__C=0.5"]) == 0
    capsys.readouterr()
    from ssl_textvae import load

    assert load(tmp_path / "m").estimator_.C == 0.5


# -- 18: numeric options name themselves -----------------------------------------------------
@pytest.mark.parametrize("arguments, message", [
    (["fit", "T", "M", "--max-unlabeled", "-5"],
     "argument --max-unlabeled: expected a non-negative integer, got '-5'"),
    (["tune", "--train", "T", "--n-trials", "0"], "argument --n-trials: expected an integer >= 1"),
    (["tune", "--train", "T", "--latent-dims", "0"], "argument --latent-dims: expected an integer >= 1"),
    (["tune", "--train", "T", "--timeout", "nan"], "argument --timeout: expected a positive number"),
    (["tune", "--train", "T", "--max-epochs", "x"], "argument --max-epochs: expected a non-negative"),
    (["evaluate", "M", "T", "-k", "0"], "expected an integer >= 1, got '0'"),
    (["pretrain", "--texts", "T", "--out", "M", "--max-texts", "0"], "argument --max-texts"),
])
def test_18_numeric_options_are_checked_by_the_parser(capsys, arguments, message):
    with pytest.raises(SystemExit) as raised:
        main(arguments)
    assert raised.value.code == 2
    one_error_line(capsys, message)


# -- 19: a diverged run on the command line ---------------------------------------------------
def test_19_cli_diverged_training_is_one_line_and_status_2(train_file, tmp_path, capsys):
    assert main(["fit", str(train_file), str(tmp_path / "m"), *MICRO_ARGS, "--param", "vae__lr=1e9"]) == 2
    one_error_line(capsys, "Pretraining diverged")


def test_warnings_on_the_command_line_are_one_line_each(model_dir, tmp_path, capsys):
    path = tmp_path / "unknown.txt"
    path.write_text("zzz qqq\ngood food\n", encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert main(["predict", str(model_dir), str(path)]) == 0
    err = capsys.readouterr().err
    assert err.startswith("ssl-textvae predict: warning: ") and len(err.splitlines()) == 1, err
    assert np.isin(capsys.readouterr().out.split(), ["0", "1"]).all()
