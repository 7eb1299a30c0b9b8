"""recipes/few_label_benchmark.py on tiny synthetic split folders."""

import json

import numpy as np
import pytest

from conftest import make_corpus
from test_recipes import load_recipe


@pytest.fixture(scope="module")
def bench():
    return load_recipe("few_label_benchmark")


def write_split(root, name, n_pool=240, n_labeled=40, n_test=60):
    texts, labels = make_corpus(n_pool + n_test, seed=3)
    names = np.where(labels == 1, "pos", "neg")
    split = root / name / "split"
    split.mkdir(parents=True)
    (split / "pool.txt").write_text("\n".join(texts[:n_pool]) + "\n", encoding="utf-8")
    for path, rows in ((split / f"train.{n_labeled}.tsv", range(n_labeled)),
                       (split / "test.tsv", range(n_pool, n_pool + n_test))):
        path.write_text("".join(f"{names[i]}\t{texts[i]}\n" for i in rows), encoding="utf-8")
    return names[n_pool:]


def test_benchmark_writes_every_row_with_its_command(bench, tmp_path):
    pytest.importorskip("optuna")
    y_test = write_split(tmp_path, "tiny")
    prefix = tmp_path / "out" / "bench"
    argv = ["--quick", "--data-dir", str(tmp_path), "--sets", "tiny", "--budgets", "40",
            "--tune-seconds", "1", "--no-sentence-encoder", "--out-prefix", str(prefix),
            "--vae-param", "hidden_dim=16", "--vae-param", "embed_dim=8", "--vae-param", "latent_dim=4",
            "--vae-param", "max_epochs=1", "--vae-param", "batch_size=16"]
    bench.main(argv)
    result = json.loads(prefix.with_suffix(".json").read_text(encoding="utf-8"))
    assert result["command"].startswith("python recipes/few_label_benchmark.py --quick")
    rows = {r["row"]: r for r in result["rows"]}
    assert set(rows) == {"majority", "tfidf_lr", "bnvae_frozen", "bnvae_fine_tuned",
                         "bnvae_means_words", "bnvae_tuned"}
    labels = np.array([line.split("\t")[0] for line in
                       (tmp_path / "tiny" / "split" / "train.40.tsv").read_text().splitlines()])
    values, counts = np.unique(labels, return_counts=True)
    assert rows["majority"]["accuracy"] == round(100 * np.mean(y_test == values[counts.argmax()]), 2)
    assert all(0 <= r["accuracy"] <= 100 and r["seconds"] >= 0 and "macro_f1" not in r for r in rows.values())
    assert len(rows["bnvae_fine_tuned"]["best_epochs"]) == 5
    tuned = rows["bnvae_tuned"]
    assert tuned["trials"] >= 1 and tuned["default_vae_reused"]
    assert tuned["best_cv_accuracy"] >= tuned["default_cv_accuracy"]
    assert "word_weight" in tuned["best_params"]
    assert rows["tfidf_lr"]["C"] > 0 and rows["bnvae_means_words"]["C"] > 0
    facts = result["sets"]["tiny"]
    assert facts["vae_params"]["hidden_dim"] == 16 and facts["epochs_run"] == 1
    assert "MiniLM row left out" in result["notes"][0]
    table = prefix.with_suffix(".md").read_text(encoding="utf-8")
    assert "| TF-IDF + LR |" in table and result["command"] in table


def test_benchmark_errors_name_the_problem(bench, tmp_path):
    with pytest.raises(FileNotFoundError, match="make_splits.py"):
        bench.main(["--data-dir", str(tmp_path), "--sets", "missing"])
    with pytest.raises(SystemExit, match="Unknown BNVAE parameters"):
        bench.main(["--data-dir", str(tmp_path), "--vae-param", "hiden_dim=3"])
    write_split(tmp_path, "tiny")
    with pytest.raises(FileNotFoundError, match="budgets must be among"):
        bench.main(["--data-dir", str(tmp_path), "--sets", "tiny", "--budgets", "77"])


def test_vae_dir_keeps_the_pretrained_vae_and_reuses_it_only_with_the_same_parameters(bench, tmp_path):
    from ssl_textvae import BNVAE

    pool = make_corpus(80, seed=4)[0]
    tiny = dict(embed_dim=8, hidden_dim=8, latent_dim=2, max_epochs=1, batch_size=16, random_state=0,
                verbose=0)
    lines = []
    first, seconds = bench.pretrained(BNVAE(**tiny), pool, tmp_path / "set-seed0", lines.append)
    again, kept_seconds = bench.pretrained(BNVAE(**tiny), pool, tmp_path / "set-seed0", lines.append)
    assert kept_seconds == round(seconds, 1) and "reusing" in lines[-1]
    np.testing.assert_array_equal(again.transform(pool[:5]), first.transform(pool[:5]))
    other, _ = bench.pretrained(BNVAE(**dict(tiny, latent_dim=3)), pool, tmp_path / "set-seed0",
                                lines.append)
    assert "other parameters" in lines[-1] and other.transform(pool[:2]).shape == (2, 3)


def test_word_weight_cv_scores_means_words_and_both_on_the_labels_only(tmp_path):
    from ssl_textvae import BNVAE

    cv = load_recipe("word_weight_cv")
    write_split(tmp_path, "tiny")
    pool = (tmp_path / "tiny" / "split" / "pool.txt").read_text(encoding="utf-8").splitlines()
    BNVAE(embed_dim=8, hidden_dim=8, latent_dim=2, max_epochs=1, batch_size=16, random_state=0,
          verbose=0).fit(pool).save(str(tmp_path / "vaes" / "tiny-seed0"))
    (tmp_path / "tiny" / "split" / "test.tsv").unlink()      # it must not read the test set
    prefix = tmp_path / "out" / "cv"
    cv.main(["--vae-dir", str(tmp_path / "vaes"), "--data-dir", str(tmp_path), "--sets", "tiny",
             "--budgets", "40", "--weights", "1", "--Cs", "1", "10", "--out-prefix", str(prefix)])
    result = json.loads(prefix.with_suffix(".json").read_text(encoding="utf-8"))
    table = result["tables"]["tiny/40"]
    assert set(table["accuracy"]) == {"means", "words", "means + words x1"}
    assert all(set(row) == {"1", "10"} and all(0 <= v <= 100 for v in row.values())
               for row in table["accuracy"].values())
    assert table["n_scored"] == 40 and result["command"] in prefix.with_suffix(".md").read_text()
    with pytest.raises(SystemExit, match="No VAE in"):
        cv.main(["--vae-dir", str(tmp_path / "none"), "--data-dir", str(tmp_path), "--sets", "tiny",
                 "--budgets", "40"])
