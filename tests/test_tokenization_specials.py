"""Special tokens written in the training texts keep their reserved ids."""

import pytest

from ssl_textvae import TextTokenizer
from ssl_textvae.text.tokenization import BOS_ID, EOS_ID, PAD_ID, UNK_ID


@pytest.mark.parametrize("kind", ["word", "bpe"])
def test_literal_special_tokens_in_training_texts_keep_reserved_ids(kind):
    texts = ["the food was <unk> good", "service <s> was bad </s>", "the staff <pad> was nice"] * 5
    tokenizer = TextTokenizer(kind).fit(texts)
    vocab = tokenizer._fitted().get_vocab()
    assert [vocab[token] for token in ("<pad>", "<s>", "</s>", "<unk>")] == [PAD_ID, BOS_ID, EOS_ID, UNK_ID]
    assert sorted(vocab.values()) == list(range(tokenizer.vocab_size))   # no hole, no id out of range
    ids = tokenizer.encode_batch(["the food was <unk> good"])[0]
    assert UNK_ID in ids and max(ids) < tokenizer.vocab_size
