"""The one label-file reader and the one per-text check."""

import pytest

from ssl_textvae.text.inputs import TextFile, check_texts, iterate_texts, read_labeled_file


def test_read_labeled_file_unlabeled_lines(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("1\tgood food\n-1\tcold soup\njust a text\n\tempty label\n\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"train.txt, line 3: expected 'label<TAB>text', got "
                                         r"'just a text'\. Mark unlabeled texts with the label -1"):
        read_labeled_file(path)
    texts, labels = read_labeled_file(path, allow_unlabeled=True)
    assert texts == ["good food", "cold soup", "just a text", "empty label"]
    assert labels == ["1", "-1", "-1", "-1"]


def test_text_file_splits_lines_as_the_reader_does(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text(" 1 \tgood\tfood\n0\trude\n", encoding="utf-8")
    texts, labels = read_labeled_file(path)
    assert list(TextFile(path, labeled=True)) == texts == ["good\tfood", "rude"]
    assert labels == ["1", "0"]


def test_a_file_without_texts_is_refused(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("\n\n", encoding="utf-8")
    with pytest.raises(ValueError, match="holds no texts"):
        read_labeled_file(path)


def test_one_message_for_a_non_string_text():
    message = "Expected every item of X to be a str; item 1 is bytes"
    with pytest.raises(TypeError, match=message):
        check_texts(["a", b"b"])
    with pytest.raises(TypeError, match=message):
        list(iterate_texts(["a", b"b"]))


def test_a_file_that_is_not_utf8_says_so_and_how_to_fix(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes("1\tgood food\n0\tcaf\u00e9 froid\n".encode("latin-1"))
    match = (r"latin.txt' is not valid utf-8 text: line 2 holds the byte 0xe9\. Convert it to UTF-8 "
             r"\(for example iconv -f latin1 -t utf-8 .*\) or pass its encoding \(encoding='latin-1'")
    with pytest.raises(ValueError, match=match):
        read_labeled_file(path)
    with pytest.raises(ValueError, match=match):
        list(TextFile(path, labeled=True))
    assert read_labeled_file(path, encoding="latin-1")[0] == ["good food", "caf\u00e9 froid"]
    assert list(TextFile(path, labeled=True, encoding="latin-1"))[1] == "caf\u00e9 froid"
