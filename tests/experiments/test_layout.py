"""The layout DESIGN.md asks of experiments/: no experiment imports another, each one reads
alone in at most 400 lines (parsed with ``ast``; nothing is imported or run)."""

import ast
import pathlib

import pytest

EXPERIMENTS = sorted((pathlib.Path(__file__).parents[2] / "experiments").glob("[a-z]*.py"))
MAX_LINES = 400


def imported_modules(tree: ast.AST) -> list[str]:
    """Every module an ``import`` or ``from ... import`` names, at any depth (functions too)."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # a relative import inside the experiments package
                names.append("experiments." + (node.module or ""))
            else:
                names.append(node.module or "")
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None))
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names.append(str(node.args[0].value))
    return names


def test_there_are_experiments():
    assert len(EXPERIMENTS) >= 20


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_no_experiment_imports_another_and_each_is_short(path):
    source = path.read_text()
    imports = imported_modules(ast.parse(source, filename=str(path)))
    others = [m for m in imports if m == "experiments" or m.startswith("experiments.")]
    assert not others, f"{path.name} imports {others}: shared pieces belong in lexicon"
    lines = len(source.splitlines())
    assert lines <= MAX_LINES, f"{path.name} has {lines} lines (at most {MAX_LINES})"


def test_the_rule_catches_every_form_of_import():
    forms = [
        "from experiments import regularization",
        "import experiments.depth",
        "from experiments.probes import STAGES",
        "from . import sawtooth",
        "def f():\n    from experiments import transfer",
        "importlib.import_module('experiments.losses')",
    ]
    for code in forms:
        found = imported_modules(ast.parse(code))
        assert any(m == "experiments" or m.startswith("experiments.") for m in found), code
    assert imported_modules(ast.parse("from lexicon import experiments_util")) == ["lexicon"]
