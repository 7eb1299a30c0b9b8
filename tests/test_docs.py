"""numpydoc See Also and Examples on every public class, and the examples run."""

import doctest
import importlib

import pytest

import ssl_textvae

PUBLIC_CLASSES = [getattr(ssl_textvae, name) for name in ssl_textvae.__all__
                  if isinstance(getattr(ssl_textvae, name), type)]
RUNNABLE = ["ssl_textvae.estimators.bnvae", "ssl_textvae.estimators.classifier", "ssl_textvae.estimators.fine_tuned",
            "ssl_textvae.text.inputs", "ssl_textvae.text.tokenization", "ssl_textvae.engine.diagnostics"]


def test_every_public_class_is_counted():
    assert {cls.__name__ for cls in PUBLIC_CLASSES} >= {
        "BNVAE", "BNVAEClassifier", "FineTunedBNVAEClassifier", "TextFile", "ConcatTexts",
        "TextTokenizer", "KLCollapseWarning", "TrainingDivergedError"}


@pytest.mark.parametrize("cls", PUBLIC_CLASSES + [pytest.importorskip("ssl_textvae.tuning").TuningObjective],
                         ids=lambda cls: cls.__name__)
def test_public_classes_have_see_also_and_examples(cls):
    for section in ("See Also\n    --------", "Examples\n    --------"):
        assert section in (cls.__doc__ or ""), f"{cls.__name__} lacks {section.split()[0]}"


@pytest.mark.parametrize("name", RUNNABLE)
def test_examples_run(name):
    failed, attempted = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert failed == 0 and attempted > 0
