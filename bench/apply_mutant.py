"""Write one mutmut mutant into a copy of a module, to run any test command against it.

    .venv/bin/python bench/apply_mutant.py MUTANTS_DIR NAME OUT_DIR

MUTANTS_DIR is the ``mutants/`` directory of a mutation run (bench/mutation.sh leaves it
in ``MUTATION_DIR/TARGET/mutants``); NAME is mutmut's name of the mutant, e.g.
``s3gate.auth.cli.x_cmd_add__mutmut_14`` or ``s3gate.auth.database.xǁSQLiteDatabaseǁopen__mutmut_3``;
OUT_DIR is a copy of the project (never the working tree). The module in OUT_DIR gets the
mutated function (or method) in place of the original; the rest of the file is left as
it is. Used to run mutants mutmut did not reach, or against wider tests than its own
selection; ``git checkout`` the copy's module (or copy it again) to undo.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)


def _body(tree: ast.Module, cls: str | None) -> list[ast.stmt]:
    if cls is None:
        return tree.body
    return next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls).body


def _function(body: list[ast.stmt], name: str) -> ast.FunctionDef | ast.AsyncFunctionDef:
    return next(n for n in body if isinstance(n, FUNCTIONS) and n.name == name)


def apply(mutants_dir: Path, name: str, out_dir: Path) -> Path:
    module, _, mutant = name.rpartition(".")
    parsed = re.fullmatch(r"x(?:ǁ(\w+)ǁ|_)(\w+?)__mutmut_\d+", mutant)
    if not parsed:
        raise SystemExit(f"not a mutmut mutant name: {name}")
    cls, function = parsed.groups()
    relative = Path(*module.split(".")).with_suffix(".py")
    mutated_source = (mutants_dir / relative).read_text()
    node = _function(_body(ast.parse(mutated_source), cls), mutant)
    code = ast.get_source_segment(mutated_source, node, padded=True)
    code = code.replace(f"def {mutant}(", f"def {function}(", 1)
    target = out_dir / relative
    source = target.read_text()
    original = _function(_body(ast.parse(source), cls), function)
    lines = source.splitlines(keepends=True)
    new = "".join(lines[: original.lineno - 1]) + code.rstrip("\n") + "\n" + "".join(lines[original.end_lineno :])
    compile(new, str(target), "exec")
    target.write_text(new)
    return target


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    print(apply(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])))
