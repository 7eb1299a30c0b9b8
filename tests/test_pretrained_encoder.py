"""BNVAE(encoder=...): a tiny randomly initialized BERT built here (no download, no network)."""

import pickle

import numpy as np
import pytest

transformers = pytest.importorskip("transformers")

from ssl_textvae import BNVAE, BNVAEClassifier, FineTunedBNVAEClassifier, load  # noqa: E402
from ssl_textvae.nn.pretrained import EmbeddingCache  # noqa: E402
from sklearn.frozen import FrozenEstimator  # noqa: E402

from conftest import write_tiny_bert  # noqa: E402

WORDS = "the food was good great bad rude staff place cold tasty awful friendly slow".split()
POSITIVE = ["the food was good", "great place", "tasty food", "friendly staff", "good staff"]
NEGATIVE = ["the food was bad", "rude staff", "cold food", "awful place", "slow staff"]
TEXTS = (POSITIVE + NEGATIVE) * 4
LABELS = ([1] * 5 + [0] * 5) * 4
POOL = [f"{word} {thing}" for word in ("good", "bad", "tasty", "cold") for thing in ("food", "staff", "place")]
SMALL = dict(latent_dim=4, embed_dim=8, hidden_dim=16, max_epochs=2, batch_size=8, verbose=0,
             random_state=0, precision="fp32")


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory):
    """A directory holding a 1-layer BERT of width 16 and its WordPiece tokenizer."""
    return write_tiny_bert(tmp_path_factory.mktemp("tiny_bert"), WORDS)


@pytest.mark.parametrize("frozen", [True, False])
def test_kl_bound_and_active_units_with_a_pretrained_encoder(tiny_encoder, frozen):
    vae = BNVAE(**SMALL, encoder=tiny_encoder, freeze_encoder=frozen).fit(TEXTS)
    bound = vae.latent_dim * vae.gamma ** 2 / 2
    for record in vae.history_:   # the paper's batch norm on the mean, whatever the encoder
        assert record["train_kl"] >= bound * 0.99
    # every unit active (variance of its mean over the texts above 0.01, Burda et al.)
    assert (vae.transform(TEXTS).var(0) > 0.01).all()
    assert vae.transform(["good food", "rude staff"]).shape == (2, 4)
    trainable = [p.requires_grad for p in vae.module_.encoder.backbone.parameters()]
    assert not any(trainable) if frozen else all(trainable)


def test_frozen_encoder_is_left_unchanged_and_trained_one_moves(tiny_encoder):
    frozen = BNVAE(**SMALL, encoder=tiny_encoder).fit(TEXTS)
    trained = BNVAE(**SMALL, encoder=tiny_encoder, freeze_encoder=False, encoder_lr=1e-2).fit(TEXTS)
    original = transformers.AutoModel.from_pretrained(tiny_encoder).state_dict()
    name = "embeddings.word_embeddings.weight"
    assert (frozen.module_.encoder.backbone.state_dict()[name] == original[name]).all()
    assert not (trained.module_.encoder.backbone.state_dict()[name] == original[name]).all()
    # the cached vectors of the frozen one are what its transformer computes (unit norm)
    cached, fresh = frozen.embed(["good food"]), trained.embed(["good food"])
    assert np.allclose(np.linalg.norm(cached, axis=1), 1) and np.allclose(np.linalg.norm(fresh, axis=1), 1)
    assert not np.allclose(cached, fresh)


def test_frozen_vectors_are_computed_once_per_text(tiny_encoder, monkeypatch):
    from ssl_textvae.nn import pretrained

    EmbeddingCache.clear()
    calls = []
    real = pretrained.embed_texts
    monkeypatch.setattr(pretrained, "embed_texts", lambda *a, **k: calls.append(len(a[2])) or real(*a, **k))
    BNVAE(**SMALL, encoder=tiny_encoder).fit(TEXTS)
    BNVAE(**dict(SMALL, latent_dim=3), encoder=tiny_encoder).fit(TEXTS)   # another trial, same pool
    assert calls == [len(set(TEXTS))]


@pytest.mark.parametrize("frozen", [True, False])
def test_save_load_and_pickle_round_trip(tiny_encoder, tmp_path, frozen):
    vae = BNVAE(**SMALL, encoder=tiny_encoder, freeze_encoder=frozen).fit(TEXTS)
    means = vae.transform(["good food", "awful place"])
    vae.save(tmp_path / "vae")
    loaded = load(tmp_path / "vae")
    assert np.array_equal(loaded.transform(["good food", "awful place"]), means)
    assert loaded.get_params()["encoder"] == tiny_encoder
    assert np.array_equal(pickle.loads(pickle.dumps(vae)).transform(["good food", "awful place"]), means)


def test_classifier_with_the_embedding_beside_the_means(tiny_encoder, tmp_path):
    vae = BNVAE(**SMALL, encoder=tiny_encoder).fit(TEXTS)
    means_only = BNVAEClassifier(vae=FrozenEstimator(vae)).fit(TEXTS, LABELS)
    both = BNVAEClassifier(vae=FrozenEstimator(vae), embedding_weight=1.0).fit(TEXTS, LABELS)
    assert both.estimator_.coef_.shape[1] == 4 + 16 and means_only.estimator_.coef_.shape[1] == 4
    both.save(tmp_path / "clf")
    loaded = load(tmp_path / "clf")
    assert np.allclose(loaded.predict_proba(TEXTS[:6]), both.predict_proba(TEXTS[:6]))


def test_embedding_weight_needs_a_pretrained_encoder():
    vae = BNVAE(**SMALL).fit(TEXTS)
    with pytest.raises(ValueError, match="pretrained encoder"):
        BNVAEClassifier(vae=FrozenEstimator(vae), embedding_weight=1.0).fit(TEXTS, LABELS)


def test_fine_tuned_classifier_trains_the_transformer(tiny_encoder):
    vae = BNVAE(**SMALL, encoder=tiny_encoder).fit(TEXTS)
    clf = FineTunedBNVAEClassifier(FrozenEstimator(vae), fine_tuning_max_epochs=3, random_state=0,
                                   verbose=0, precision="fp32").fit(TEXTS, LABELS)
    name = "embeddings.word_embeddings.weight"
    assert not (clf.module_.encoder.backbone.state_dict()[name]
                == vae.module_.encoder.backbone.state_dict()[name]).all()
    assert clf.predict(["good food"]).shape == (1,)
    restored = pickle.loads(pickle.dumps(clf))   # the transformer rebuilt from its config
    assert np.array_equal(restored.predict_proba(TEXTS[:6]), clf.predict_proba(TEXTS[:6]))
    # the VAE itself is left as it was: its encoder stays frozen
    assert not any(p.requires_grad for p in vae.module_.encoder.backbone.parameters())


def test_bad_encoder_gives_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="Could not load the pretrained encoder"):
        BNVAE(**SMALL, encoder=str(tmp_path)).fit(TEXTS)
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="is a file"):
        BNVAE(**SMALL, encoder=str(tmp_path / "weights.bin")).fit(TEXTS)
    with pytest.raises(ValueError, match="encoder"):
        BNVAE(**SMALL, encoder=3).fit(TEXTS)


def load_recipe():
    """recipes/pretrained_encoder.py loaded as a script runs (its folder on sys.path for ``common``)."""
    import importlib.util
    import sys
    from pathlib import Path

    recipes = Path(__file__).resolve().parents[1] / "recipes"
    sys.path.insert(0, str(recipes))
    try:
        spec = importlib.util.spec_from_file_location("recipe_pretrained_encoder", recipes / "pretrained_encoder.py")
        recipe = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(recipe)
    finally:
        sys.path.remove(str(recipes))
    return recipe


def test_the_recipes_pick_chooses_on_the_labels_only(tiny_encoder):
    recipe = load_recipe()
    vae = BNVAE(**SMALL, encoder=tiny_encoder).fit(TEXTS)
    recipe.FINE_TUNED = dict(recipe.FINE_TUNED, fine_tuning_max_epochs=1)
    labels = np.asarray(["pos" if label else "neg" for label in LABELS], dtype=object)
    model, chosen, fitted, teacher = recipe.pick(vae, TEXTS, labels, seed=0, fine_tune=True)
    cv = {name: score for name, (score, _) in fitted.items()}
    assert set(cv) == {"frozen, embedding_weight 0", "frozen, embedding_weight 1", "fine-tuned ensemble"}
    assert chosen == max(cv, key=cv.get) and all(0 <= value <= 1 for value in cv.values())
    assert teacher is None and model is fitted[chosen][1] and 0 <= model.score(TEXTS[:8], labels[:8]) <= 1


def test_self_training_pseudo_labels_each_fold_with_the_model_that_never_saw_it(tiny_encoder, monkeypatch):
    """Fold k's student learns from teacher k's pseudo-labels and is scored on teacher k's held-out
    fold, so the self-trained candidate's CV accuracy never sees a label its fold held out."""
    recipe = load_recipe()
    vae = BNVAE(**SMALL, encoder=tiny_encoder).fit(TEXTS)
    monkeypatch.setattr(recipe, "FINE_TUNED", dict(recipe.FINE_TUNED, fine_tuning_max_epochs=1))
    monkeypatch.setattr(recipe, "SELF_TRAINING", {"pool_sentences": 12, "pseudo_labels": 6})
    labels = np.asarray(LABELS)
    labeled_by = []
    real = recipe.pseudo_labels
    monkeypatch.setattr(recipe, "pseudo_labels", lambda model, *a: labeled_by.append(model) or real(model, *a))
    model, chosen, fitted, teacher = recipe.pick(vae, TEXTS, labels, seed=0, fine_tune=True, pool=POOL)
    assert "fine-tuned ensemble" not in fitted and teacher is not None
    cv, student = fitted["fine-tuned ensemble, self-trained"]
    assert labeled_by == teacher[1].models   # fold k's pseudo-labels by fold k's teacher, in order
    assert [list(held[0]) for held in student.held_out] == [list(held[0]) for held in teacher[1].held_out]
    assert 0 < len(real(teacher[1].models[0], POOL, 6, labels)[0]) <= 6
    assert cv == np.mean([m.score(*held) for m, held in zip(student.models, student.held_out)])


def test_tune_searches_the_encoder_freezing_like_any_parameter(tiny_encoder):
    optuna = pytest.importorskip("optuna")
    from ssl_textvae.tuning import build_classifier, tune

    fixed = {f"vae__{k}": v for k, v in SMALL.items() if k not in ("random_state", "verbose")}
    fixed.update(vae__encoder=tiny_encoder, vae__max_epochs=1)
    grid = {"vae__freeze_encoder": [True, False]}
    study = tune(TEXTS, LABELS, n_trials=2, search_space=grid, fixed_params=fixed, cv_splits=2, cv_repeats=1,
                 random_state=0, sampler=optuna.samplers.GridSampler(grid, seed=0), verbose=0)
    assert sorted(t.params["vae__freeze_encoder"] for t in study.trials) == [False, True]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert build_classifier(study).vae.encoder == tiny_encoder


def test_cli_fit_and_predict_with_a_pretrained_encoder(tiny_encoder, tmp_path, capsys):
    from ssl_textvae.cli import main

    train = tmp_path / "train.txt"
    train.write_text("".join(f"{label}\t{text}\n" for text, label in zip(TEXTS, LABELS)), encoding="utf-8")
    (tmp_path / "new.txt").write_text("good food\nrude staff\n", encoding="utf-8")
    params = [f"vae__{k}={v}" for k, v in SMALL.items() if k not in ("random_state", "verbose", "precision")]
    args = ["fit", str(train), str(tmp_path / "model"), "--param", f"vae__encoder={tiny_encoder}"]
    for param in params:
        args += ["--param", param]
    assert main(args) == 0
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "model"), str(tmp_path / "new.txt")]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2


def test_a_frozen_encoders_fingerprint_is_hashed_once_and_forgotten_on_load(tiny_encoder):
    encoder = BNVAE(**SMALL, encoder=tiny_encoder).fit(TEXTS).module_.encoder
    first = encoder.fingerprint()
    assert encoder._fingerprint == first   # kept: every transform asks for it
    state = encoder.state_dict()
    name = "backbone.embeddings.word_embeddings.weight"
    encoder.load_state_dict({**state, name: state[name] + 1})
    assert encoder.fingerprint() != first


def test_baselines_only_leaves_the_bnvae_rows_out(monkeypatch):
    """``--baselines-only`` (vae None): the baselines on the same labels, no VAE and no
    bnvae_pretrained row to overwrite the committed one."""
    recipe = load_recipe()
    monkeypatch.setattr(recipe, "embed", lambda texts: np.asarray([[("good" in t) + 0.0, len(t)] for t in texts]))
    labels = np.asarray(LABELS)
    data = {20: (TEXTS[:20], labels[:20]), "test": (TEXTS[20:], labels[20:])}
    written = []
    rows, _ = recipe.rows_for(None, data, [20], TEXTS, 0, use_setfit=False, setfit_budgets=[],
                              done=lambda rows, details: written.append(set(rows)))
    assert set(rows) == {"tfidf_lr", "minilm_lr"} and written == [{"tfidf_lr", "minilm_lr"}]
    assert all(0 <= rows[row]["20"] <= 100 for row in rows)


def test_the_fine_tuned_candidate_is_one_model_with_a_tenth_held_out_from_single_model_from(tiny_encoder,
                                                                                             monkeypatch):
    recipe = load_recipe()
    vae = BNVAE(**SMALL, encoder=tiny_encoder).fit(TEXTS)
    monkeypatch.setattr(recipe, "FINE_TUNED", dict(recipe.FINE_TUNED, fine_tuning_max_epochs=1))
    labels = np.asarray(LABELS)
    cv, ensemble = recipe.fine_tuned_candidate(vae, TEXTS, labels, seed=0)
    assert len(ensemble.models) == 5 and sum(len(held[1]) for held in ensemble.held_out) == len(TEXTS)
    monkeypatch.setattr(recipe, "SINGLE_MODEL_FROM", len(TEXTS))
    cv, ensemble = recipe.fine_tuned_candidate(vae, TEXTS, labels, seed=0)
    assert len(ensemble.models) == 1 and len(ensemble.held_out[0][1]) == len(TEXTS) // 10
    assert cv == ensemble.models[0].score(*ensemble.held_out[0])


def test_the_self_training_table_applies_the_keep_rule(tmp_path, monkeypatch):
    recipe = load_recipe()
    monkeypatch.setattr(recipe, "FIGURES", tmp_path)
    assert recipe.self_training_lines() == []
    teacher = {"100": [93.0, 93.2, 93.1], "500": [94.0, 94.0, 94.0]}
    student = {"100": [93.5, 93.6, 93.6], "500": [94.1, 93.9, 94.5]}   # 100: +0.47 > spread 0.2; 500: one loss
    for seed in range(3):
        details = {b: {"accuracy": {"teacher": teacher[b][seed], "fine-tuned ensemble, self-trained": student[b][seed]}}
                   for b in teacher}
        recipe.write_json(tmp_path / "pretrained_encoder_valid" / f"seed{seed}.json",
                          {"seed": seed, "details": {"few-label/bnvae_pretrained": details}})
        if seed == 1:
            assert recipe.self_training_lines()[5].endswith("| not yet (2 seeds) |")
    rows = recipe.self_training_lines()[5:]
    assert rows[0].startswith("| 100 | 0, 1, 2 |") and rows[0].endswith("| 0.20 | yes |")
    assert rows[1].endswith("| no |")
