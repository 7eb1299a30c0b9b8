"""Text sources, the encoded corpus, length-bucketed batches and collation."""

import numpy as np
import pytest
import torch

from ssl_textvae.text.data import EncodedCorpus, bucket_batches, collate, n_batches, padding_fraction
from ssl_textvae.text.inputs import TextFile, iterate_texts, read_labeled_file
from ssl_textvae.text.tokenization import BOS_ID, EOS_ID, PAD_ID, TextTokenizer

from conftest import make_corpus


@pytest.fixture(scope="module")
def tokenizer():
    return TextTokenizer().fit(make_corpus(200)[0])


@pytest.fixture
def labeled_file(tmp_path):
    path = tmp_path / "labeled.txt"
    path.write_text("1\tthe food was good\n0\tthe staff was rude\tand cold\n\n2\tlove it\n",
                    encoding="utf-8")
    return path


# -- text sources ------------------------------------------------------------------------
def test_text_file_is_re_iterable(tmp_path):
    path = tmp_path / "plain.txt"
    path.write_text("the food was good\nthe staff was rude\n", encoding="utf-8")
    texts = TextFile(path)
    assert list(texts) == ["the food was good", "the staff was rude"]
    assert list(texts) == list(texts)
    assert list(iterate_texts(texts)) == list(texts)
    assert "plain.txt" in repr(texts)


def test_labeled_text_file_yields_texts_only(tmp_path):
    path = tmp_path / "labeled.txt"
    path.write_text("1\tthe food was good\n0\tthe staff was rude\tand cold\n", encoding="utf-8")
    texts = TextFile(path, labeled=True)
    assert list(texts) == ["the food was good", "the staff was rude\tand cold"]
    assert list(texts) == list(texts)


def test_labeled_text_file_blank_and_malformed_lines(tmp_path):
    path = tmp_path / "labeled.txt"
    path.write_text("1\tgood food\n\n0\trude\n", encoding="utf-8")
    assert list(TextFile(path, labeled=True)) == ["good food", "", "rude"]
    path.write_text("1\tgood food\nno label here\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 2: expected 'label<TAB>text'"):
        list(TextFile(path, labeled=True))


def test_load_hf_texts_from_a_local_csv(tmp_path):
    pytest.importorskip("datasets")
    from ssl_textvae import load_hf_texts

    path = tmp_path / "pool.csv"
    path.write_text("label,text\n1,the food was good\n0,rude staff\n", encoding="utf-8")
    kwargs = dict(data_files=str(path), cache_dir=str(tmp_path / "cache"))
    texts, labels = load_hf_texts("csv", text_column="text", label_column="label", **kwargs)
    assert list(iterate_texts(texts)) == ["the food was good", "rude staff"]
    assert labels == [1, 0]
    assert list(iterate_texts(load_hf_texts("csv", **kwargs))) == ["the food was good", "rude staff"]
    with pytest.raises(ValueError, match="Column 'body' not in the data set"):
        load_hf_texts("csv", text_column="body", **kwargs)


def test_text_file_missing_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="No such text file"):
        TextFile(tmp_path / "missing.txt")


def test_read_labeled_file(labeled_file):
    texts, labels = read_labeled_file(labeled_file)
    assert labels == ["1", "0", "2"]  # the blank line is skipped
    assert texts == ["the food was good", "the staff was rude\tand cold", "love it"]


def test_read_labeled_file_malformed_line_names_the_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("1\tgood\nno tab here\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 2: expected 'label<TAB>text'"):
        read_labeled_file(path)


def test_iterate_texts_accepts_lists_and_arrays():
    texts = ["a b", "c"]
    assert list(iterate_texts(texts)) == texts
    assert list(iterate_texts(np.array(texts, dtype=object))) == texts


@pytest.mark.parametrize("bad, error, match", [
    ("just one text", TypeError, "got a single string"),
    (None, ValueError, "got None"),
    ((text for text in ["a", "b"]), TypeError, "one-shot iterator"),
    (iter(["a", "b"]), TypeError, "one-shot iterator"),
    (42, TypeError, "got int"),
    (np.array([["a", "b"]]), ValueError, "1-d array"),
])
def test_iterate_texts_errors(bad, error, match):
    with pytest.raises(error, match=match):
        iterate_texts(bad)


def test_iterate_texts_reads_a_datasets_dataset():
    datasets = pytest.importorskip("datasets")
    dataset = datasets.Dataset.from_dict({"label": [1, 0, 1], "text": ["a b", "c", "d e f"]})
    texts = iterate_texts(dataset)
    assert len(texts) == 3
    assert list(texts) == ["a b", "c", "d e f"]
    assert list(texts) == list(texts)  # re-iterable


def test_iterate_texts_refuses_a_dataset_without_string_column():
    datasets = pytest.importorskip("datasets")
    dataset = datasets.Dataset.from_dict({"label": [1, 0]})
    with pytest.raises(ValueError, match="no string column"):
        iterate_texts(dataset)


# -- encoded corpus ------------------------------------------------------------------------
def test_encoded_corpus_from_texts(tokenizer):
    texts = ["the food was good", "bad", "the staff was really rude"]
    corpus = EncodedCorpus.from_texts(tokenizer, texts)
    assert len(corpus) == 3 and corpus.n_skipped == 0
    assert corpus.ids.dtype == np.int32
    np.testing.assert_array_equal(corpus.lengths, [4, 1, 5])
    assert corpus.n_tokens() == 10 + 3
    for i, ids in enumerate(tokenizer.encode_batch(texts)):
        assert list(corpus.ids[corpus.offsets[i]:corpus.offsets[i + 1]]) == ids
    sub = corpus.subset([2, 0])
    np.testing.assert_array_equal(sub.lengths, [5, 4])
    assert list(sub.ids[:5]) == tokenizer.encode_batch([texts[2]])[0]
    assert len(corpus.subset([])) == 0


@pytest.mark.parametrize("empty", ["", "   ", "\t"])
def test_empty_text_raises_unless_skip_empty(tokenizer, empty):
    texts = ["the food", empty, "was good"]
    with pytest.raises(ValueError, match="Item 1 of X is empty or whitespace only"):
        EncodedCorpus.from_texts(tokenizer, texts)
    corpus = EncodedCorpus.from_texts(tokenizer, texts, skip_empty=True)
    assert len(corpus) == 2 and corpus.n_skipped == 1


def test_non_string_text_raises(tokenizer):
    with pytest.raises(TypeError, match="item 1 is int"):
        EncodedCorpus.from_texts(tokenizer, ["the food", 3])


# -- batches ---------------------------------------------------------------------------------
@pytest.mark.parametrize("n, batch_size", [(65, 32), (33, 32), (64, 32), (3, 2), (200, 7)])
@pytest.mark.parametrize("shuffle", [False, True])
def test_bucket_batches_cover_every_index_once_without_size_one(n, batch_size, shuffle):
    lengths = np.random.default_rng(0).integers(1, 30, n)
    batches = bucket_batches(lengths, batch_size, shuffle, rng=np.random.default_rng(1),
                             pool_factor=2)
    indices = np.concatenate(batches)
    np.testing.assert_array_equal(np.sort(indices), np.arange(n))
    assert min(len(b) for b in batches) >= 2
    assert max(len(b) for b in batches) <= batch_size + 1


def test_bucket_batches_remainder_of_one_is_merged():
    # 65 = 2 * 32 + 1: without the merge the last batch would hold one text.
    lengths = np.full(65, 5)
    batches = bucket_batches(lengths, 32, shuffle=False)
    assert sorted(len(b) for b in batches) == [32, 33]


def test_bucket_batches_remainder_of_one_is_merged_in_every_pool():
    # Shuffled, with pools of 2 * 32 texts: 130 = 64 + 64 + 2 texts, remainders 0, 0, 2;
    # 129 texts = 64 + 64 + 1 leave a last pool of one text.
    lengths = np.random.default_rng(0).integers(1, 30, 129)
    batches = bucket_batches(lengths, 32, shuffle=True, rng=np.random.default_rng(0), pool_factor=2)
    assert min(len(b) for b in batches) >= 2
    assert sum(len(b) for b in batches) == 129


def test_bucket_batches_have_little_padding():
    lengths = np.random.default_rng(0).integers(1, 60, 5000)
    batches = bucket_batches(lengths, 32, shuffle=True, rng=np.random.default_rng(0))
    assert padding_fraction(lengths, batches) < 0.05
    random_batches = np.array_split(np.random.default_rng(0).permutation(5000), 5000 // 32)
    assert padding_fraction(lengths, random_batches) > 0.3  # the comparison is not trivial


def test_bucket_batches_shuffle_is_reproducible():
    lengths = np.random.default_rng(0).integers(1, 30, 300)
    first = bucket_batches(lengths, 16, True, rng=np.random.default_rng(5))
    second = bucket_batches(lengths, 16, True, rng=np.random.default_rng(5))
    other = bucket_batches(lengths, 16, True, rng=np.random.default_rng(6))
    assert len(first) == len(second)
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_n_batches():
    # the count bucket_batches gives, a lone trailing text merged into its neighbour
    for n in (0, 1, 2, 31, 32, 33, 64, 65, 66, 1601, 3201):
        batches = bucket_batches(np.ones(n, dtype=np.int64), 32, shuffle=True,
                                 rng=np.random.default_rng(0))
        assert n_batches(n, 32) == len(batches), n


def test_collate_pads_and_adds_bos_eos(tokenizer):
    texts = ["the food was good", "bad", "the staff was really rude"]
    corpus = EncodedCorpus.from_texts(tokenizer, texts)
    tokens, lengths = collate(corpus, np.array([0, 1, 2]))
    assert tokens.dtype == torch.int64 and tokens.shape == (3, 5 + 2)
    assert lengths.tolist() == [6, 3, 7]
    assert (tokens[:, 0] == BOS_ID).all()
    for row, text_ids in enumerate(tokenizer.encode_batch(texts)):
        n = len(text_ids)
        assert tokens[row, 1:n + 1].tolist() == text_ids
        assert tokens[row, n + 1] == EOS_ID
        assert (tokens[row, n + 2:] == PAD_ID).all()
    assert (tokens != PAD_ID).sum(1).tolist() == lengths.tolist()
