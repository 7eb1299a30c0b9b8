"""Tokenized corpora and length-bucketed batches.

A tokenized corpus is kept as one flat ``int32`` array of ids plus offsets, so
its memory is the ids alone, whatever container the texts came from (the text
sources and their checks are in :mod:`ssl_textvae.text.inputs`).
"""

from __future__ import annotations

import itertools
import math
import warnings
from typing import List, Optional, Tuple

import numpy as np
import torch

from .inputs import check_text, empty_text_error, is_checked
from .tokenization import BOS_ID, EOS_ID, PAD_ID, UNK_ID

ENCODE_CHUNK = 20_000


# -- tokenized corpus -------------------------------------------------------------------
class EncodedCorpus:
    """Token ids of many texts as a flat ``int32`` array and ``int64`` offsets.

    Text ``i`` is ``ids[offsets[i]:offsets[i + 1]]`` (without ``<s>`` / ``</s>``).
    ``encoder_inputs``, for a VAE whose inference network is a pretrained transformer
    (:mod:`ssl_textvae.nn.pretrained`), is what that encoder reads of each text: its pooled
    vectors, float32 (n_texts, width), when it is frozen, or its own token ids as an
    ``EncodedCorpus`` when it trains; :func:`collate` hands them over with the batch.
    """

    def __init__(self, ids: np.ndarray, offsets: np.ndarray, encoder_inputs=None):
        self.ids = ids
        self.offsets = offsets
        self.encoder_inputs = encoder_inputs
        self.n_skipped = self.n_empty = 0   # what from_texts dropped, or encoded as <unk>

    @classmethod
    def from_texts(cls, tokenizer, texts, skip_empty=False, empty_as_unknown=False) -> "EncodedCorpus":
        """Encode in chunks so only the ids stay in memory. Empty or whitespace-only
        texts raise, unless ``skip_empty`` (for pretraining pools, where they are
        dropped and counted in ``n_skipped``) or ``empty_as_unknown`` (for predicted
        rows, one per text: they become one unknown token, counted in ``n_empty``).
        Texts already checked (:func:`~ssl_textvae.text.inputs.is_checked`) are not
        checked again."""
        id_chunks, lengths, n_skipped, n_empty, chunk = [], [], 0, 0, []
        checked = is_checked(texts)

        def flush():
            # one int32 array per chunk of texts: no per-text objects stay alive
            nonlocal n_skipped, n_empty
            encoded = tokenizer.encode_batch(chunk)
            if empty_as_unknown:
                n_empty += sum(not text_ids for text_ids in encoded)
                encoded = [text_ids or [UNK_ID] for text_ids in encoded]
            else:
                encoded = [text_ids for text_ids in encoded if text_ids]
            n_skipped += len(chunk) - len(encoded)
            chunk_lengths = [len(text_ids) for text_ids in encoded]
            id_chunks.append(np.fromiter(itertools.chain.from_iterable(encoded), dtype=np.int32,
                                         count=sum(chunk_lengths)))
            lengths.append(np.asarray(chunk_lengths, dtype=np.int64))
            chunk.clear()

        for index, text in enumerate(texts):
            if not (text if checked else check_text(text, index)).strip() and not empty_as_unknown:
                if not skip_empty:
                    raise empty_text_error(index)
                n_skipped += 1
                continue
            chunk.append(text)
            if len(chunk) >= ENCODE_CHUNK:
                flush()
        flush()
        ids = np.concatenate(id_chunks) if id_chunks else np.zeros(0, dtype=np.int32)
        lengths = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        corpus = cls(ids, offsets)
        corpus.n_skipped, corpus.n_empty = n_skipped, n_empty
        return corpus

    def __len__(self):
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def subset(self, indices) -> "EncodedCorpus":
        """The texts at ``indices``, in that order, as a new corpus (one vectorized gather)."""
        indices = np.asarray(indices, dtype=np.int64)
        starts = self.offsets[indices]
        lengths = self.offsets[indices + 1] - starts
        offsets = np.zeros(len(indices) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        extra = self.encoder_inputs
        if extra is not None:
            extra = extra[indices] if isinstance(extra, np.ndarray) else extra.subset(indices)
        return EncodedCorpus(self.ids[_ranges(starts, lengths, offsets)], offsets, extra)

    def n_tokens(self) -> int:
        """Tokens the decoder predicts: words plus one ``</s>`` per text."""
        return int(len(self.ids) + len(self))


def bucket_batches(lengths: np.ndarray, batch_size: int, shuffle: bool,
                   rng: Optional[np.random.Generator] = None, pool_factor: int = 50,
                   min_batch_size: int = 2) -> List[np.ndarray]:
    """Index batches whose texts have (nearly) equal lengths.

    Texts are shuffled, cut into pools of ``pool_factor * batch_size``, sorted by
    length inside each pool and split into batches, whose order is then shuffled:
    random batches with almost no padding. A trailing batch of fewer than
    ``min_batch_size`` texts (by default a single text, which batch norm cannot
    normalize) is merged into its neighbour; sharding a batch over N processes asks
    for 2 N, so that no process gets fewer than 2 texts.
    """
    n = len(lengths)
    order = rng.permutation(n) if shuffle else np.arange(n)
    pool = batch_size * pool_factor if shuffle else n
    batches = []
    for start in range(0, n, pool):
        chunk = order[start:start + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    if len(batches) > 1 and len(batches[-1]) < min_batch_size:
        last = batches.pop()  # pop first: `batches[-2] = f(batches.pop())` assigns after the pop
        batches[-1] = np.concatenate([batches[-1], last])
    if shuffle:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def collate(corpus: EncodedCorpus, indices) -> Tuple[torch.Tensor, ...]:
    """Padded ``[<s>, w_1..w_n, </s>]`` ids, shape (batch, max_len + 2), and lengths n + 2;
    where the corpus has ``encoder_inputs``, the batch's rows of them third: pooled vectors
    (batch, width), or the encoder's ids (batch, max_len) padded with -1. A model is called
    as ``module(*collate(corpus, indices))``."""
    indices = np.asarray(indices, dtype=np.int64)
    tokens, lengths = _collate_tokens(corpus, indices)
    extra = corpus.encoder_inputs
    if extra is None:
        return tokens, lengths
    if isinstance(extra, np.ndarray):
        return tokens, lengths, torch.from_numpy(np.ascontiguousarray(extra[indices]))
    starts = extra.offsets[indices]
    words = extra.offsets[indices + 1] - starts
    ids = np.full((len(indices), max(1, int(words.max()))), -1, dtype=np.int64)
    offsets = np.zeros(len(indices) + 1, dtype=np.int64)
    np.cumsum(words, out=offsets[1:])
    ids[np.arange(ids.shape[1]) < words[:, None]] = extra.ids[_ranges(starts, words, offsets)]
    return tokens, lengths, torch.from_numpy(ids)


def _collate_tokens(corpus, indices):
    starts = corpus.offsets[indices]
    words = corpus.offsets[indices + 1] - starts                          # (batch,) n
    lengths = words + 2
    batch = np.full((len(indices), int(lengths.max())), PAD_ID, dtype=np.int64)
    batch[:, 0] = BOS_ID
    inside = np.arange(batch.shape[1] - 2) < words[:, None]               # (batch, max_len)
    offsets = np.zeros(len(indices) + 1, dtype=np.int64)
    np.cumsum(words, out=offsets[1:])
    batch[:, 1:-1][inside] = corpus.ids[_ranges(starts, words, offsets)]  # row-major = text order
    batch[np.arange(len(indices)), words + 1] = EOS_ID
    return torch.from_numpy(batch), torch.from_numpy(lengths)


def _ranges(starts: np.ndarray, lengths: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Positions ``starts[i] .. starts[i] + lengths[i] - 1`` of every i, concatenated;
    ``offsets`` is the cumulative sum of ``lengths`` with a leading 0."""
    return np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1], dtype=np.int64)


def rows_after_skipping(texts, indices) -> np.ndarray:
    """The rows that ``texts[indices]`` (non-empty texts) take in the corpus of
    ``EncodedCorpus.from_texts(tokenizer, source, skip_empty=True)``, ``source`` being
    ``texts`` or a chain that starts with them: the number of non-empty texts before each."""
    kept = np.fromiter((bool(text.strip()) for text in texts), dtype=np.int64, count=len(texts))
    return (np.cumsum(kept) - 1)[np.asarray(indices, dtype=np.int64)]


def padding_fraction(lengths: np.ndarray, batches) -> float:
    """Share of the padded token grid that is padding (a check on the bucketing)."""
    real = sum(int(lengths[b].sum()) for b in batches)
    grid = sum(int(lengths[b].max()) * len(b) for b in batches)
    return 1.0 - real / grid if grid else 0.0


def n_batches(n_texts: int, batch_size: int, min_batch_size: int = 2) -> int:
    """How many batches :func:`bucket_batches` makes of ``n_texts`` texts (pools hold
    whole batches, so only a final batch under ``min_batch_size`` texts is merged
    into its neighbour)."""
    count = math.ceil(n_texts / batch_size)
    return count - 1 if count > 1 and 0 < n_texts % batch_size < min_batch_size else count


# -- checks of a tokenized corpus (the estimators' input) --------------------------------
def warn_unknown_rows(corpus):
    """Warn, counting them, about rows that are empty or of unknown words only."""
    unknown = np.add.reduceat(corpus.ids != UNK_ID, corpus.offsets[:-1]) == 0
    n_unknown = int(np.sum(unknown)) - corpus.n_empty
    if corpus.n_empty or n_unknown:
        warnings.warn(f"{corpus.n_empty} of {len(corpus)} texts are empty and {n_unknown} consist "
                      "of out-of-vocabulary tokens only; each is encoded as one unknown token, so "
                      "they all get the same representation. Check the input against the "
                      "pretraining texts.", UserWarning)


def check_distinct(corpus):
    """Refuse texts that are all the same after tokenization: every batch then has zero
    variance before the batch norm on the means, which divides by sqrt(eps) (1e6) and
    sends the means and the KL to hundreds of thousands."""
    lengths = corpus.lengths
    if len(corpus) > 1 and (lengths == lengths[0]).all():
        rows = corpus.ids.reshape(len(corpus), int(lengths[0]))             # (n_texts, length)
        if (rows == rows[0]).all():
            raise ValueError(f"All {len(corpus)} pretraining texts are the same after tokenization "
                             f"({len(rows[0])} tokens); BN-VAE needs at least 2 distinct texts (the "
                             "batch norm on the means divides by their spread). Pass varied texts.")


def check_vocabulary_overlap(corpus):
    """Refuse input where every text is unknown words only; warn when some are."""
    unknown = np.add.reduceat(corpus.ids != UNK_ID, corpus.offsets[:-1]) == 0 if len(corpus) else []
    n_unknown = int(np.sum(unknown))
    if n_unknown and n_unknown == len(corpus):
        raise ValueError(f"All {n_unknown} texts consist of out-of-vocabulary tokens only; the "
                         "model cannot tell them apart. Check the language and tokenization of "
                         "the input against the pretraining texts.")
    if n_unknown:
        warnings.warn(f"{n_unknown} of {len(corpus)} texts consist of out-of-vocabulary tokens "
                      "only; they all get the same representation.", UserWarning)
