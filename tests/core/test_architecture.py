"""The architecture holds by test: strategy knowledge stays in strategies/. Code outside strategies/ names no
built-in strategy (it reads what strategies declare: lossiness, hooks, declared attributes), and a strategy module
imports no other strategy (shared helpers live in private strategies/_*.py modules).

What counts as naming a strategy: a string constant in code that is a registered name or alias ('ga', 'quant4bit')
or a spec made of them ('lora+bf16'). Docstrings and argparse help= texts are prose and do not count. Names that are
also another library's vocabulary are not strategy names here: the dtype names (protocol.DTYPES: 'bf16' is also
accelerate's mixed_precision value) and 'mixed_precision' (accelerate's Accelerator argument).
"""

from __future__ import annotations

import ast
from pathlib import Path

from memfit.core.protocol import DTYPES
from memfit.core.registry import available

ROOT = Path(__file__).resolve().parents[2]
OTHER_VOCABULARY = set(DTYPES) | {"mixed_precision"}
# Strings that spell a strategy name but mean something else there; a new name anywhere outside strategies/ fails.
KNOWN = {
    ("memfit/ops/cross_entropy_kernels.py", "cce"),  # cut-cross-entropy's own name for its Triton implementation
}
STRATEGY_IMPORTS_KNOWN: set[tuple[str, str]] = set()


def strategy_names() -> set[str]:
    registry = available()
    return (set(registry) | {cls.name for cls in registry.values()}) - OTHER_VOCABULARY


def _prose(tree: ast.AST) -> set[int]:
    """ids of the string nodes that are documentation: docstrings and help= arguments."""
    prose = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body \
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            prose.add(id(body[0].value))
        if isinstance(node, ast.keyword) and node.arg == "help":
            prose.update(id(n) for n in ast.walk(node.value))
    return prose


def _names_a_strategy(text: str, names: set[str]) -> bool:
    parts = [p.split(":")[0].strip() for p in text.strip().lower().split("+")]
    return bool(parts) and all(parts) and any(p in names for p in parts) and \
        all(p in names or p in OTHER_VOCABULARY for p in parts)


def strategy_names_in(source: str, names: set[str]) -> list[tuple[int, str]]:
    tree = ast.parse(source)
    prose = _prose(tree)
    return [(node.lineno, node.value) for node in ast.walk(tree) if isinstance(node, ast.Constant)
            and isinstance(node.value, str) and id(node) not in prose and _names_a_strategy(node.value, names)]


def test_the_check_finds_names_used_as_logic_and_ignores_prose():
    source = '''
"""Docstring about 'lora+gc' and ga."""
def f(stack, p):
    """gc"""
    p.add_argument("--stack", help="lora+gc")
    label = "the stack's own 'ga'"
    if stack.get("gc") or "offload" in stack:
        return {"name": "ga", "mixed_precision": "bf16", "spec": "lora+bf16"}
'''
    found = [value for _, value in strategy_names_in(source, strategy_names())]
    assert sorted(found) == ["ga", "gc", "lora+bf16", "offload"]


def test_no_strategy_name_outside_strategies():
    names = strategy_names()
    found = {(str(path.relative_to(ROOT)), value): line
             for path in sorted((ROOT / "memfit").rglob("*.py")) if "strategies" not in path.relative_to(ROOT).parts
             for line, value in strategy_names_in(path.read_text(), names)}
    unexpected = [f"{file}:{line}: {value!r}" for (file, value), line in found.items() if (file, value) not in KNOWN]
    assert not unexpected, ("strategy knowledge outside strategies/: read what the strategies declare instead "
                            "(memfit.core.protocol)\n" + "\n".join(unexpected))


def test_a_strategy_imports_no_other_strategy():
    strategies = ROOT / "memfit" / "strategies"
    public = {p.stem for p in strategies.glob("*.py") if not p.stem.startswith("_")}
    found = set()
    for path in strategies.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and path.stem != "__init__":
                modules = [node.module] if node.module else [a.name for a in node.names]
                found |= {(path.stem, m.split(".")[0]) for m in modules if m.split(".")[0] in public}
    assert found <= STRATEGY_IMPORTS_KNOWN, f"strategies importing each other (share through strategies/_*.py): " \
                                            f"{sorted(found - STRATEGY_IMPORTS_KNOWN)}"
