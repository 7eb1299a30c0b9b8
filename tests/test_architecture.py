"""The package's layers as STYLE.md draws them: subpackages that import only downwards, no
import circle, torch-only lower layers, no module over about 400 lines."""

import ast
import os

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ssl_textvae")
# The subpackages, lowest first: a module may import from its own subpackage or one below it.
LAYERS = ("runtime", "text", "nn", "engine", "estimators", "dialogue", "tuning")
# Above every layer: the public entry points (and the public paths kept for moved modules);
# _version sits below every layer.
TOP_LEVEL = {"__init__", "_version", "cli", "_cli_args", "_cli_data", "loading", "presets",
             "pretrained", "persistence", "distributed"}
TORCH_ONLY_LAYERS = ("runtime", "text", "nn", "engine")
TORCH_ONLY_MODULES = ("dialogue.cvae", "dialogue.training", "dialogue.metrics", "estimators.persistence")
ESTIMATORS_AND_ABOVE = {"estimators.bnvae", "estimators._classifier_base", "estimators.classifier",
                        "estimators.fine_tuned", "dialogue", "dialogue.bncvae", "loading", "tuning",
                        "cli", "__init__"}
MAX_LINES = 400


def module_names():
    """Dotted names inside the package ("bnvae", "tuning.search"); the package itself is "__init__"."""
    names = []
    for root, _, files in os.walk(PACKAGE):
        for file in files:
            if file.endswith(".py"):
                parts = os.path.relpath(os.path.join(root, file), PACKAGE)[:-3].split(os.sep)
                names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts) or "__init__")
    return sorted(names)


def path_of(name):
    base = os.path.join(PACKAGE, *([] if name == "__init__" else name.split(".")))
    return os.path.join(base, "__init__.py") if os.path.isdir(base) else base + ".py"


def package_of(name):
    if name == "__init__":
        return []
    parts = name.split(".")
    return parts if os.path.isdir(os.path.join(PACKAGE, *parts)) else parts[:-1]


def imports(name):
    """Package modules and third-party roots that ``name`` imports anywhere, functions included."""
    known = set(module_names())
    tree = ast.parse(open(path_of(name), encoding="utf-8").read())
    local, external = set(), set()

    def add(parts):   # the deepest known module among parts, else the package itself
        for end in range(len(parts), 0, -1):
            if ".".join(parts[:end]) in known:
                local.add(".".join(parts[:end]))
                return
        local.add("__init__")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "ssl_textvae":
                    add(alias.name.split(".")[1:])
                else:
                    external.add(alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and (node.module or "").split(".")[0] != "ssl_textvae":
                external.add(node.module.split(".")[0])
                continue
            if node.level == 0:
                base = node.module.split(".")[1:]
            else:
                package = package_of(name)
                base = package[:len(package) - node.level + 1] + (node.module.split(".") if node.module else [])
            for alias in node.names:
                add(base + [alias.name] if ".".join(base + [alias.name]) in known else base)
    local.discard(name)
    return local, external


def find_cycles(graph):
    """Import circles of ``graph`` (module -> modules it imports), each as a path."""
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target):] + [node, target])
            elif target not in state:
                visit(target, stack + [node])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return cycles


def test_the_import_graph_has_no_cycle():
    graph = {name: imports(name)[0] for name in module_names()}
    assert find_cycles(graph) == []


def test_find_cycles_finds_a_circle_through_lazy_imports():
    # the circle issue 13 found: estimator -> persistence -> fine_tuning -> estimator
    graph = {"estimator": {"persistence"}, "persistence": {"fine_tuning"},
             "fine_tuning": {"estimator", "data"}, "data": set()}
    assert find_cycles(graph) == [["estimator", "persistence", "fine_tuning", "estimator"]]


def test_the_graph_is_read_correctly():
    local, external = imports("estimators.bnvae")
    assert {"estimators.persistence", "nn.inference", "engine.training", "nn.model"} <= local
    assert "sklearn" in external
    assert {"estimators.bnvae", "estimators.classifier", "estimators.fine_tuned", "loading"} <= imports("__init__")[0]
    assert imports("engine.training")[0] >= {"engine.loop", "text.data"}   # from . import loop as engine


def layer_of(name):
    """The index of ``name``'s subpackage in LAYERS; -1 for _version, len(LAYERS) for the top level."""
    if name == "_version":
        return -1
    first = name.split(".")[0]
    return LAYERS.index(first) if first in LAYERS else len(LAYERS)


def upward_imports(graph, layer_of):
    """``module -> imported`` pairs of ``graph`` that import a layer above the module's own."""
    return [f"{name} -> {target}" for name in sorted(graph) for target in sorted(graph[name])
            if layer_of(target) > layer_of(name)]


def test_subpackages_import_only_their_own_layer_or_those_below():
    graph = {name: imports(name)[0] for name in module_names()}
    assert upward_imports(graph, layer_of) == []


def test_upward_imports_finds_an_import_against_the_order():
    graph = {"text.data": {"runtime.devices"}, "nn.model": {"text.data", "engine.loop"},
             "engine.loop": {"nn.model"}, "cli": {"engine.loop"}, "runtime.devices": {"_version"}}
    assert upward_imports(graph, layer_of) == ["nn.model -> engine.loop"]


def test_every_module_lives_in_a_subpackage_with_a_stated_job():
    assert {name for name in module_names() if "." not in name and name not in LAYERS} == TOP_LEVEL
    for layer in LAYERS:
        tree = ast.parse(open(path_of(layer), encoding="utf-8").read())
        assert ast.get_docstring(tree), f"ssl_textvae/{layer}/__init__.py has no docstring"


def torch_only():
    return [name for name in module_names()
            if name.split(".")[0] in TORCH_ONLY_LAYERS or name in TORCH_ONLY_MODULES]


def test_lower_layers_never_import_scikit_learn():
    assert {"nn.model", "engine.loop", "text.data", "runtime.devices"} <= set(torch_only())
    for name in torch_only():
        local, external = imports(name)
        assert "sklearn" not in external, f"{name} imports scikit-learn"
        upper = {module for module in local if module in ESTIMATORS_AND_ABOVE}
        assert not upper, f"{name} imports the layer above it: {upper}"


def script_imports():
    """``(script, from-import node)`` of every ``from ssl_textvae... import`` in recipes/ and benchmarks/."""
    root = os.path.dirname(PACKAGE)
    for folder in ("recipes", "benchmarks"):
        for file in sorted(os.listdir(os.path.join(root, folder))):
            if file.endswith(".py"):
                tree = ast.parse(open(os.path.join(root, folder, file), encoding="utf-8").read())
                for node in ast.walk(tree):
                    if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ssl_textvae"):
                        yield f"{folder}/{file}", node


def test_recipes_and_benchmarks_import_no_private_name():
    private = [f"{script}: {node.module}.{name}" for script, node in script_imports()
               for name in node.module.split(".")[1:] + [alias.name for alias in node.names]
               if name.startswith("_") and name != "__version__"]
    assert not private, private


def test_recipes_and_benchmarks_import_names_that_exist():
    import importlib

    missing = []
    for script, node in script_imports():
        module = importlib.import_module(node.module)
        missing += [f"{script}: {node.module}.{alias.name}" for alias in node.names
                    if not hasattr(module, alias.name) and not (
                        hasattr(module, "__path__")
                        and importlib.util.find_spec(f"{node.module}.{alias.name}"))]
    assert not missing, missing


def test_no_module_is_longer_than_about_400_lines():
    long = {name: n for name in module_names()
            if (n := sum(1 for _ in open(path_of(name), encoding="utf-8"))) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


# A recipe is what a user would write: it imports only the public API. Public means: a module
# listed here, and from it a name in its __all__ (every public module defines one) or a public
# module below it; ``import ssl_textvae`` then ``ssl_textvae.NAME`` with NAME in ssl_textvae.__all__.
PUBLIC_MODULES = ("ssl_textvae", "ssl_textvae.tuning", "ssl_textvae.presets", "ssl_textvae.dialogue",
                  "ssl_textvae.pretrained")


def private_uses(tree):
    """``module.name`` strings of the imports and ``ssl_textvae.X`` attributes in ``tree``
    that are not public."""
    import importlib

    exported = {name: set(importlib.import_module(name).__all__) for name in PUBLIC_MODULES}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names
                      if alias.name.split(".")[0] == "ssl_textvae" and alias.name not in PUBLIC_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "ssl_textvae":
            found += [f"{node.module}.{alias.name}" for alias in node.names
                      if node.module not in PUBLIC_MODULES or (
                          alias.name not in exported[node.module]
                          and f"{node.module}.{alias.name}" not in PUBLIC_MODULES)]
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
              and node.value.id == "ssl_textvae" and node.attr not in exported["ssl_textvae"]
              and f"ssl_textvae.{node.attr}" not in PUBLIC_MODULES):
            found.append(f"ssl_textvae.{node.attr}")
    return found


def test_recipes_import_only_the_public_api():
    root = os.path.join(os.path.dirname(PACKAGE), "recipes")
    private = [f"recipes/{file}: {use}" for file in sorted(os.listdir(root)) if file.endswith(".py")
               for use in private_uses(ast.parse(open(os.path.join(root, file), encoding="utf-8").read()))]
    assert not private, private


def test_private_uses_tells_public_from_private():
    tree = ast.parse("import ssl_textvae\nimport ssl_textvae.tuning\nfrom ssl_textvae import BNVAE, SOFTMAXES\n"
                     "from ssl_textvae.presets import auto_vae\nfrom ssl_textvae import tuning\n"
                     "ssl_textvae.load\nssl_textvae.__version__\n"
                     "from ssl_textvae.nn.model import SOFTMAXES\nfrom ssl_textvae import inputs\n"
                     "from ssl_textvae.presets import math\nimport ssl_textvae.runtime\nssl_textvae.features\n")
    assert private_uses(tree) == ["ssl_textvae.nn.model.SOFTMAXES", "ssl_textvae.inputs",
                                  "ssl_textvae.presets.math", "ssl_textvae.runtime", "ssl_textvae.features"]
