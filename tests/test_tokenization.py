"""TextTokenizer: vocabulary, special ids, truncation, persistence."""

import pickle

import pytest

from ssl_textvae.text.tokenization import (BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS, UNK_ID,
                                      TextTokenizer)

from conftest import make_corpus


@pytest.fixture(scope="module")
def texts():
    return make_corpus(200)[0]


@pytest.fixture(scope="module")
def word_tokenizer(texts):
    return TextTokenizer().fit(texts)


def test_special_tokens_take_ids_0_to_3(word_tokenizer):
    assert (PAD_ID, BOS_ID, EOS_ID, UNK_ID) == (0, 1, 2, 3)
    assert SPECIAL_TOKENS == ["<pad>", "<s>", "</s>", "<unk>"]
    vocab = word_tokenizer._fitted().get_vocab()
    for index, token in enumerate(SPECIAL_TOKENS):
        assert vocab[token] == index


def test_word_level_encode_decode_round_trip(word_tokenizer, texts):
    ids = word_tokenizer.encode_batch(texts[:20])
    for text, text_ids in zip(texts[:20], ids):
        assert len(text_ids) == len(text.split())
        assert min(text_ids) > UNK_ID  # every word of the fitted texts is known
        assert word_tokenizer.decode(text_ids) == text


def test_vocabulary_holds_each_word_once(word_tokenizer, texts):
    words = {word for text in texts for word in text.split()}
    assert word_tokenizer.vocab_size == len(words) + len(SPECIAL_TOKENS)


def test_unknown_word_and_literal_unk_map_to_unk_id(word_tokenizer):
    ids, = word_tokenizer.encode_batch(["the zebra was <unk> good"])
    assert ids[1] == UNK_ID  # never seen
    assert ids[3] == UNK_ID  # the literal token in the labeled short-Yelp files
    assert ids[0] != UNK_ID and ids[4] != UNK_ID


def test_decode_stops_at_eos_and_skips_pad_and_bos(word_tokenizer):
    ids, = word_tokenizer.encode_batch(["the food was good"])
    padded = [BOS_ID, *ids, EOS_ID, *ids, PAD_ID]
    assert word_tokenizer.decode(padded) == "the food was good"
    assert word_tokenizer.decode([BOS_ID, *ids[:2], PAD_ID, PAD_ID]) == "the food"


def test_max_length_truncates(texts):
    tokenizer = TextTokenizer(max_length=3).fit(texts)
    ids = tokenizer.encode_batch(["the food was good and great", "good"])
    assert [len(i) for i in ids] == [3, 1]
    assert tokenizer.decode(ids[0]) == "the food was"


def test_lowercase(texts):
    tokenizer = TextTokenizer(lowercase=True).fit(texts)
    assert tokenizer.encode_batch(["The FOOD"]) == tokenizer.encode_batch(["the food"])
    assert UNK_ID not in tokenizer.encode_batch(["The FOOD"])[0]


def test_bpe_round_trip():
    texts = ["the food was really good", "the staff was rude", "great place, friendly staff!"] * 30
    tokenizer = TextTokenizer(kind="bpe").fit(texts)
    vocab = tokenizer._fitted().get_vocab()
    assert [vocab[t] for t in SPECIAL_TOKENS] == [0, 1, 2, 3]
    for text in texts[:3]:
        ids, = tokenizer.encode_batch([text])
        assert ids and UNK_ID not in ids
        assert tokenizer.decode(ids) == text
        assert tokenizer.decode([BOS_ID, *ids, EOS_ID, PAD_ID]) == text
    assert UNK_ID in tokenizer.encode_batch(["the <unk> food"])[0]


def test_min_frequency_drops_rare_words():
    texts = ["common word"] * 3 + ["rare"]
    tokenizer = TextTokenizer(min_frequency=2).fit(texts)
    assert tokenizer.vocab_size == len(SPECIAL_TOKENS) + 2
    assert tokenizer.encode_batch(["rare common"])[0][0] == UNK_ID
    assert tokenizer.encode_batch(["rare common"])[0][1] != UNK_ID


def test_max_vocab_size_keeps_the_most_frequent():
    texts = ["a a a a b b b c c d"]
    tokenizer = TextTokenizer(max_vocab_size=len(SPECIAL_TOKENS) + 2).fit(texts)
    assert tokenizer.vocab_size == len(SPECIAL_TOKENS) + 2
    ids, = tokenizer.encode_batch(["a b c d"])
    assert ids[0] != UNK_ID and ids[1] != UNK_ID
    assert ids[2:] == [UNK_ID, UNK_ID]


@pytest.mark.parametrize("kind", ["word", "bpe"])
def test_to_dict_from_dict_and_pickle_round_trip(kind, texts):
    tokenizer = TextTokenizer(kind=kind, max_length=4, lowercase=True).fit(texts)
    sample = texts[:10] + ["The zebra <unk> FOOD good great"]
    expected = tokenizer.encode_batch(sample)
    for copy in (TextTokenizer.from_dict(tokenizer.to_dict()),
                 pickle.loads(pickle.dumps(tokenizer))):
        assert (copy.kind, copy.max_length, copy.lowercase) == (kind, 4, True)
        assert copy.vocab_size == tokenizer.vocab_size
        assert copy.encode_batch(sample) == expected
        assert copy.decode(expected[0]) == tokenizer.decode(expected[0])


def test_from_dict_refuses_a_tokenizer_without_the_special_ids(texts):
    other = TextTokenizer().fit(texts)
    state = other.to_dict()
    vocab = state["tokenizer"]["model"]["vocab"]
    vocab["<pad>"], vocab["the"] = vocab["the"], vocab["<pad>"]
    with pytest.raises(ValueError, match="ids 0-3"):
        TextTokenizer.from_dict(state)


def test_unfitted_tokenizer_pickles_and_raises_on_use():
    tokenizer = pickle.loads(pickle.dumps(TextTokenizer()))
    for use in (lambda: tokenizer.vocab_size, lambda: tokenizer.encode_batch(["a"]),
                lambda: tokenizer.decode([4]), tokenizer.to_dict):
        with pytest.raises(RuntimeError, match="not fitted yet"):
            use()


def test_unknown_kind_raises():
    with pytest.raises(ValueError, match="kind must be one of"):
        TextTokenizer(kind="char")
