"""Property-based: arbitrary unicode texts, lengths and label mixes reach the tokenizer
and the estimators (issue 17). Nothing raises but the documented ValueError and
TypeError, and predict gives one row per text sent; ``ssl-textvae predict`` on any file
(byte-order mark, blank lines, CRLF, lone CR, mixed) gives one output line per input
line or a one-line exit-2 error. Models are fitted once per module and the examples are
few, so the file runs in seconds."""

import re
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ssl_textvae import BNVAE, BNVAEClassifier, TextTokenizer
from ssl_textvae.cli import main
from ssl_textvae.text.inputs import check_labels

from conftest import TINY

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])
# any code point but surrogates (not encodable as UTF-8, so never in a real str from a file)
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
TEXTS = st.lists(TEXT, min_size=1, max_size=12)


@pytest.fixture(scope="module")
def classifier():
    from conftest import make_corpus

    texts, labels = make_corpus(80, seed=5)
    return BNVAEClassifier(vae=BNVAE(**dict(TINY, max_epochs=1))).fit(texts, labels)


@SETTINGS
@given(texts=TEXTS, kind=st.sampled_from(["word", "bpe"]), lowercase=st.booleans())
def test_tokenizer_encodes_any_unicode(texts, kind, lowercase):
    if not any(text.strip() for text in texts):
        texts = texts + ["a"]
    tokenizer = TextTokenizer(kind, lowercase=lowercase).fit(texts)
    encoded = tokenizer.encode_batch(texts)
    assert len(encoded) == len(texts)
    assert all(isinstance(i, int) and 0 <= i < tokenizer.vocab_size for ids in encoded for i in ids)


@SETTINGS
@given(texts=TEXTS)
def test_predict_returns_one_row_per_text(classifier, texts):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)   # empty / unknown rows are counted
        predicted = classifier.predict(texts)
        proba = classifier.predict_proba(texts)
    assert predicted.shape == (len(texts),)
    assert proba.shape == (len(texts), 2) and np.isfinite(proba).all()
    assert set(predicted) <= set(classifier.classes_)


LABEL = st.one_of(st.integers(-1, 3), st.sampled_from(["-1", "a", "b"]), st.none(),
                  st.floats(allow_nan=True))


@SETTINGS
@given(labels=st.lists(LABEL, min_size=1, max_size=10))
def test_any_label_mix_is_read_or_refused(labels):
    try:
        y, unlabeled = check_labels(labels, len(labels))
    except ValueError as error:   # documented: floats, NaN, None, mixed int and str
        assert "expected" in str(error).lower()
        return
    assert y.dtype.kind in "iU" and len(y) == len(labels) == len(unlabeled)
    kinds = {isinstance(label, str) for label in labels}
    assert len(kinds) == 1   # never a silent mix


BASE_TEXTS, BASE_LABELS = ["good food", "rude staff", "great place", "cold food"], [1, 0, 1, 0]


@settings(max_examples=8, deadline=None, derandomize=True)
@given(texts=st.lists(TEXT, max_size=12), data=st.data())
def test_classifier_fit_on_any_texts_and_labels(texts, data):
    labels = data.draw(st.lists(st.sampled_from([-1, 0, 1, "-1", "x"]), min_size=len(texts),
                                max_size=len(texts)))
    if labels and isinstance(labels[0], str):   # one label type (mixes are tested above)
        texts, labels = BASE_TEXTS + texts, [str(v) for v in BASE_LABELS + labels]
    else:
        texts, labels = BASE_TEXTS + texts, [v if isinstance(v, int) else -1
                                             for v in BASE_LABELS + labels]
    tiny = dict(TINY, embed_dim=8, hidden_dim=8, latent_dim=2, max_epochs=1, batch_size=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            model = BNVAEClassifier(vae=BNVAE(**tiny)).fit(texts, labels)
        except ValueError as error:   # documented: too few texts or classes, empty labeled rows
            assert "empty or whitespace only" in str(error), error   # an empty labeled row
            return
        assert model.predict(texts).shape == (len(texts),)
        assert model.predict(texts[4:] + [""]).shape == (len(texts) - 3,)


# -- the command line's predict on arbitrary files ---------------------------------------
@pytest.fixture(scope="module")
def saved_classifier(classifier, tmp_path_factory):
    path = tmp_path_factory.mktemp("properties") / "model"
    classifier.save(path)
    return path


# Words of the model and others, blanks, a tab, and separators that are no line end for a
# text file (\x85, \u2028, \x0c: str.splitlines would split at them, a file does not).
LINE = st.lists(st.sampled_from(["good", "food", "rude", "zzz", " ", "\t", "é", "\x85", "\u2028",
                                "\x0c"]), max_size=6).map("".join)
ENDING = st.sampled_from(["\n", "\r\n", "\r"])
# Universal newlines, as Python's text files read them: a line ends at \r\n, \r or \n.
LINES = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")


@settings(max_examples=20, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(lines=st.lists(st.tuples(LINE, ENDING), max_size=8), last=LINE, bom=st.booleans(),
       bad_byte=st.booleans(), proba=st.booleans())
def test_cli_predict_gives_one_line_per_input_line(saved_classifier, tmp_path_factory, capsys, lines,
                                                   last, bom, bad_byte, proba):
    text = "".join(line + ending for line, ending in lines) + last
    data = ("\ufeff" if bom else "").encode("utf-8") + text.encode("utf-8")
    if bad_byte:
        data += b"\xff\n"
    path = tmp_path_factory.mktemp("predict") / "texts.txt"
    path.write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("always")   # each warning reaches stderr, one line each
        status = main(["predict", str(saved_classifier), str(path)] + (["--proba"] if proba else []))
    captured = capsys.readouterr()
    errors = captured.err.splitlines()
    assert all(line.startswith("ssl-textvae predict: ") for line in errors), captured.err
    n_lines = len(LINES.findall(text)) + bad_byte
    if status == 2:   # documented: not UTF-8, or no line at all
        assert bad_byte or n_lines == 0, captured.err
        assert len([line for line in errors if ": error: " in line]) == 1 and not captured.out
        assert ("is not valid utf-8 text: line" if bad_byte else "is empty") in errors[-1]
        return
    assert status == 0 and not bad_byte
    out = captured.out.splitlines()
    assert len(out) == n_lines + proba, (text, out)
    assert {row.split("\t")[0] for row in out[proba:]} <= {"0", "1"}
