"""Text -> token ids with the Hugging Face ``tokenizers`` library.

The vocabulary is fitted on the (unlabeled) pretraining text. Word-level is the
default because the reference corpora are already tokenized; ``"bpe"`` is for raw
text. Ids 0-3 are always ``<pad>``, ``<s>``, ``</s>``, ``<unk>``, and a literal
``<unk>`` in the input (the labeled short-Yelp files carry one) maps to the
unknown id.
"""

from __future__ import annotations

import json
import re
from typing import Iterable, List

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK]
_SPECIALS = re.compile("|".join(re.escape(token) for token in SPECIAL_TOKENS))
PAD_ID, BOS_ID, EOS_ID, UNK_ID = range(4)
KINDS = ("word", "bpe")


class TextTokenizer:
    """Vocabulary and ids for the VAE.

    Parameters
    ----------
    kind : {"word", "bpe"}, default="word"
        ``"word"`` splits on whitespace (for pre-tokenized corpora such as short
        Yelp); ``"bpe"`` learns byte-pair merges for raw text.
    max_vocab_size : int or None, default=None
        Keep at most this many tokens (special tokens included); None keeps all.
    min_frequency : int, default=1
        Tokens seen fewer times become ``<unk>``.
    lowercase : bool, default=False
        Lowercase before splitting.
    max_length : int or None, default=None
        Truncate each text to its first ``max_length`` tokens (``</s>`` is added
        after truncation, so a sequence holds at most ``max_length + 2`` ids).

    See Also
    --------
    BNVAE : fits one on its pretraining texts (``tokenizer_``), with the same options.

    Examples
    --------
    >>> from ssl_textvae import TextTokenizer
    >>> tokenizer = TextTokenizer().fit(["the food was good", "the staff was rude"])
    >>> tokenizer.decode(tokenizer.encode_batch(["the food was rude"])[0])
    'the food was rude'
    """

    def __init__(self, kind="word", max_vocab_size=None, min_frequency=1, lowercase=False,
                 max_length=None):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}.")
        self.kind = kind
        self.max_vocab_size = max_vocab_size
        self.min_frequency = min_frequency
        self.lowercase = lowercase
        self.max_length = max_length
        self._tokenizer = None

    # -- fitting -----------------------------------------------------------------
    def fit(self, texts: Iterable[str]) -> "TextTokenizer":
        """Learn the vocabulary from an iterable of strings (streamed, never stored)."""
        vocab_size = self.max_vocab_size if self.max_vocab_size is not None else 10**9
        if self.kind == "word":
            tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
            tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
            trainer = trainers.WordLevelTrainer(
                vocab_size=vocab_size, min_frequency=self.min_frequency,
                special_tokens=SPECIAL_TOKENS, show_progress=False)
        else:
            tokenizer = Tokenizer(models.BPE(unk_token=UNK))
            tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
            tokenizer.decoder = decoders.Metaspace()
            trainer = trainers.BpeTrainer(
                vocab_size=min(vocab_size, 30000), min_frequency=max(self.min_frequency, 2),
                special_tokens=SPECIAL_TOKENS, show_progress=False)
        if self.lowercase:
            tokenizer.normalizer = normalizers.Lowercase()
        # A literal special token in the texts (short Yelp writes rare words as "<unk>")
        # would be counted as a word and given a second id past vocab_size; train on
        # the texts without them, so "<unk>" keeps id 3 and ids stay below vocab_size.
        tokenizer.train_from_iterator((_SPECIALS.sub(" ", text) for text in texts), trainer=trainer)
        self._tokenizer = tokenizer
        return self

    # -- encoding / decoding -------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self._fitted().get_vocab_size()

    def encode_batch(self, texts: List[str]) -> List[List[int]]:
        """Token ids of each text, truncated to ``max_length``, without specials."""
        encodings = self._fitted().encode_batch(texts, add_special_tokens=False)
        limit = self.max_length
        return [e.ids[:limit] if limit else e.ids for e in encodings]

    def decode(self, ids) -> str:
        """Ids -> text; stops at ``</s>`` and skips ``<pad>`` / ``<s>``."""
        ids = list(ids)
        if EOS_ID in ids:
            ids = ids[:ids.index(EOS_ID)]
        ids = [i for i in ids if i not in (PAD_ID, BOS_ID)]
        if self.kind == "word":
            vocab = self._id_to_token()
            return " ".join(vocab[i] for i in ids)
        return self._fitted().decode(ids, skip_special_tokens=False)

    def _id_to_token(self):
        if getattr(self, "_id_cache", None) is None:
            vocab = self._fitted().get_vocab()
            self._id_cache = [None] * len(vocab)
            for token, index in vocab.items():
                self._id_cache[index] = token
        return self._id_cache

    # -- persistence ---------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"kind": self.kind, "max_vocab_size": self.max_vocab_size,
                "min_frequency": self.min_frequency, "lowercase": self.lowercase,
                "max_length": self.max_length,
                "tokenizer": json.loads(self._fitted().to_str())}

    @classmethod
    def from_dict(cls, state: dict) -> "TextTokenizer":
        state = dict(state)
        tokenizer_json = state.pop("tokenizer")
        self = cls(**state)
        self._tokenizer = Tokenizer.from_str(json.dumps(tokenizer_json))
        if self._tokenizer.token_to_id(UNK) != UNK_ID or self._tokenizer.token_to_id(PAD) != PAD_ID:
            raise ValueError("The stored tokenizer does not put <pad>, <s>, </s>, <unk> at ids 0-3.")
        return self

    def __getstate__(self):
        return self.to_dict() if self._tokenizer is not None else dict(self.__dict__)

    def __setstate__(self, state):
        if "tokenizer" in state:
            self.__dict__.update(TextTokenizer.from_dict(state).__dict__)
        else:
            self.__dict__.update(state)

    def _fitted(self) -> Tokenizer:
        if self._tokenizer is None:
            raise RuntimeError("This TextTokenizer is not fitted yet; call fit(texts) first.")
        return self._tokenizer

