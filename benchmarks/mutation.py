"""Mutation score of the engine's tests: how many one-node mutations of the core a mapped part of the fast
suite turns red.

Each mutant changes one AST node of one module (a comparison or arithmetic operator swapped, a sign
dropped, a term of a sum dropped, a constant changed, min <-> max, and <-> or, a ``not`` removed, True <->
False); it is written into a copy of ``src/`` and the module's test files (``MAP``) run against it with
``pytest -x`` under a per-mutant timeout. Killed: the tests fail (or time out twice, the second time with
three times the limit, or the module no longer imports); survived: they pass. A load spike on a shared
machine once made slow tests time out and counted their mutants killed: the retry and the list of
timeout kills in each section keep that visible. Prints a table (module, mutants, killed, survived, score) and writes the
survivors to ``benchmarks/results/mutation.md``.

    nice -n 10 python benchmarks/mutation.py --modules rl/gae.py rl/keep_best.py --max-mutants 40

``--max-mutants N`` takes an evenly spaced sample of N of a module's mutants (the same for the same code).
"""

from __future__ import annotations

import argparse
import ast
import copy
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "reinflow"
LEARN = "tests/rl/test_learning.py"
# module (under src/reinflow) -> the test files (or node ids) that guard it
MAP: dict[str, list[str]] = {
    "rl/gae.py": ["tests/rl/test_gae.py", LEARN],
    "rl/algorithms/ppo.py": ["tests/rl/test_ppo.py", "tests/rl/test_first_minibatch.py", LEARN],
    "rl/algorithms/ppo_batch.py": ["tests/rl/test_ppo.py", "tests/rl/test_first_minibatch.py", LEARN],
    "rl/algorithms/residual_ppo.py": ["tests/policies/test_residual.py", f"{LEARN}::test_residual_ppo_solves_the_delayed_target"],
    "rl/algorithms/dsrl.py": ["tests/rl/test_algorithm_dsrl.py", "tests/rl/test_envloop.py",
                              f"{LEARN}::test_dsrl_solves_the_delayed_target"],
    "rl/sac.py": ["tests/rl/test_sac.py", f"{LEARN}::test_dsrl_solves_the_delayed_target"],
    "rl/agent.py": ["tests/rl/test_agent.py", "tests/rl/test_envloop.py", "tests/rl/test_ppo.py",
                    "tests/rl/test_rollout.py", LEARN],
    "rl/envloop.py": ["tests/rl/test_envloop.py", "tests/rl/test_rollout.py", LEARN],
    "rl/rollout.py": ["tests/rl/test_rollout.py", "tests/rl/test_ppo.py", LEARN],
    "rl/keep_best.py": ["tests/rl/test_keep_best.py"],
    "flow/chain.py": ["tests/flow/test_chain.py", "tests/flow/test_noise_basis.py", "tests/rl/test_ppo.py"],
    "flow/noise.py": ["tests/flow/test_noise.py", "tests/rl/test_ppo.py"],
    "flow/scaling.py": ["tests/flow/test_scaling.py"],
    "policies/residual.py": ["tests/policies/test_residual.py", f"{LEARN}::test_residual_ppo_solves_the_delayed_target"],
}
SWAP_CMP = {ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Gt: ast.LtE, ast.LtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
            ast.Is: ast.IsNot, ast.IsNot: ast.Is, ast.In: ast.NotIn, ast.NotIn: ast.In}
SWAP_BIN = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.Pow: ast.Mult,
            ast.FloorDiv: ast.Mult, ast.Mod: ast.FloorDiv}
SWAP_NAME = {"min": "max", "max": "min", "minimum": "maximum", "maximum": "minimum", "amin": "amax", "amax": "amin"}


@dataclass
class Mutant:
    line: int
    what: str
    path: tuple          # where the node is: a list of (field, index) steps from the module


def _walk(node: ast.AST, path: tuple = ()):
    """(node, path) for every node; strings, docstrings, annotations and f-strings are not entered."""
    yield node, path
    for field, value in ast.iter_fields(node):
        if field in ("annotation", "returns", "decorator_list") or isinstance(node, ast.JoinedStr):
            continue
        items = value if isinstance(value, list) else [value]
        for i, child in enumerate(items):
            if isinstance(child, ast.AST):
                yield from _walk(child, path + ((field, i if isinstance(value, list) else None),))


def _get(tree: ast.AST, path: tuple) -> ast.AST:
    node = tree
    for field, i in path:
        node = getattr(node, field) if i is None else getattr(node, field)[i]
    return node


def _set(tree: ast.AST, path: tuple, new: ast.AST) -> None:
    parent = _get(tree, path[:-1])
    field, i = path[-1]
    if i is None:
        setattr(parent, field, new)
    else:
        getattr(parent, field)[i] = new


def mutations(node: ast.AST) -> list[tuple[str, ast.AST]]:
    """(description, replacement node) for each mutation of ``node`` itself."""
    out: list[tuple[str, ast.AST]] = []
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in SWAP_CMP:
        new = copy.deepcopy(node)
        new.ops = [SWAP_CMP[type(node.ops[0])]()]
        out.append((f"{type(node.ops[0]).__name__} -> {type(new.ops[0]).__name__}", new))
    elif isinstance(node, ast.BinOp) and type(node.op) in SWAP_BIN:
        new = copy.deepcopy(node)
        new.op = SWAP_BIN[type(node.op)]()
        out.append((f"{type(node.op).__name__} -> {type(new.op).__name__}", new))
        if isinstance(node.op, (ast.Add, ast.Sub)):
            out.append(("drop the right term", copy.deepcopy(node.left)))
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.Not)):
        out.append((f"drop the {'minus' if isinstance(node.op, ast.USub) else 'not'}", copy.deepcopy(node.operand)))
    elif isinstance(node, ast.BoolOp):
        new = copy.deepcopy(node)
        new.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        out.append((f"{type(node.op).__name__} -> {type(new.op).__name__}", new))
    elif isinstance(node, ast.Constant) and type(node.value) is bool:
        out.append((f"{node.value} -> {not node.value}", ast.Constant(not node.value)))
    elif isinstance(node, ast.Constant) and type(node.value) in (int, float):
        v = node.value
        new_v = 1 if v == 0 else v + 1 if isinstance(v, int) else v * 2
        out.append((f"{v!r} -> {new_v!r}", ast.Constant(new_v)))
    elif isinstance(node, ast.Name) and node.id in SWAP_NAME and isinstance(node.ctx, ast.Load):
        out.append((f"{node.id} -> {SWAP_NAME[node.id]}", ast.Name(SWAP_NAME[node.id], ast.Load())))
    elif isinstance(node, ast.Attribute) and node.attr in SWAP_NAME and isinstance(node.ctx, ast.Load):
        new = copy.deepcopy(node)
        new.attr = SWAP_NAME[node.attr]
        out.append((f".{node.attr} -> .{new.attr}", new))
    return out


def _is_docstring(path: tuple, tree: ast.AST) -> bool:
    return bool(path) and path[-1] == ("value", None) and isinstance(_get(tree, path[:-1]), ast.Expr)


def enumerate_mutants(source: str) -> list[tuple[Mutant, str]]:
    """Every mutant of a module: (Mutant, its source)."""
    tree = ast.parse(source)
    found = []
    for node, path in _walk(tree):
        if not path or _is_docstring(path, tree) or getattr(node, "lineno", None) is None:
            continue
        for what, new in mutations(node):
            mutated = copy.deepcopy(tree)
            _set(mutated, path, ast.copy_location(new, node))
            found.append((Mutant(node.lineno, what, path), ast.unparse(ast.fix_missing_locations(mutated))))
    return found


def sample(items: list, n: int | None) -> list:
    if n is None or n >= len(items):
        return items
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


def run_tests(src_root: Path, tests: list[str], timeout: float) -> tuple[bool | None, float]:
    """(passed, seconds) of the tests against the reinflow under ``src_root``; passed is None on a timeout."""
    env = {**os.environ, "PYTHONPATH": str(src_root), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    t0 = time.time()
    try:
        r = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests], cwd=ROOT,
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout)
        return r.returncode == 0, time.time() - t0
    except subprocess.TimeoutExpired:
        return None, time.time() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--modules", nargs="+", default=list(MAP), help=f"modules under src/reinflow (default: all of {list(MAP)})")
    ap.add_argument("--max-mutants", type=int, default=None, help="per module: an evenly spaced sample of this many")
    ap.add_argument("--timeout-factor", type=float, default=3.0, help="per-mutant timeout = factor x the clean run's time")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "mutation.md"))
    ap.add_argument("--append", action="store_true", help="add this run's section to --out instead of replacing it")
    args = ap.parse_args()
    unknown = [m for m in args.modules if m not in MAP]
    if unknown:
        print(f"error: modules={unknown}: allowed {', '.join(MAP)}", file=sys.stderr)
        return 2
    # SIGTERM unwinds like Ctrl-C: subprocess.run kills the running pytest and the temporary copy is removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rows, survivors, timeouts, t_start = [], [], [], time.time()
    with tempfile.TemporaryDirectory(prefix="reinflow-mutation-") as tmp:
        src_root = Path(tmp) / "src"
        shutil.copytree(SRC, src_root / "reinflow", ignore=shutil.ignore_patterns("__pycache__"))
        for module in args.modules:
            target, original = src_root / "reinflow" / module, (SRC / module).read_text()
            ok, clean_s = run_tests(src_root, MAP[module], timeout=600)
            if not ok:
                print(f"error: the clean tests of {module} fail; fix them first", file=sys.stderr)
                return 1
            mutants = sample(enumerate_mutants(original), args.max_mutants)
            killed = 0
            for k, (m, text) in enumerate(mutants):
                target.write_text(text)
                limit = args.timeout_factor * clean_s + 10
                passed, secs = run_tests(src_root, MAP[module], timeout=limit)
                if passed is None:  # a load spike or a real hang: once more with three times the limit
                    passed, secs = run_tests(src_root, MAP[module], timeout=3 * limit)
                if passed is None:
                    timeouts.append((module, m))
                killed += not passed
                if passed:
                    survivors.append((module, m))
                verdict = "SURVIVED" if passed else "killed" if passed is False else "killed (timeout)"
                print(f"  {module}:{m.line} {m.what}: {verdict} ({secs:.1f}s) [{k + 1}/{len(mutants)}]", flush=True)
            target.write_text(original)
            rows.append((module, len(mutants), killed))
    total_m, total_k = sum(r[1] for r in rows), sum(r[2] for r in rows)
    table = ["| module | mutants | killed | survived | score |", "| --- | ---: | ---: | ---: | ---: |"]
    table += [f"| {mod} | {n} | {k} | {n - k} | {100 * k / max(n, 1):.0f} % |" for mod, n, k in rows]
    table.append(f"| all | {total_m} | {total_k} | {total_m - total_k} | {100 * total_k / max(total_m, 1):.0f} % |")
    print("\n".join(table))
    cmd = "python benchmarks/mutation.py " + " ".join(sys.argv[1:])
    lines = [f"## `{cmd}`", "", f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
             f"{(time.time() - t_start) / 60:.0f} min, load average at the end {os.getloadavg()[0]:.1f} "
             f"({os.cpu_count()} CPUs)", "", *table, "", "Survivors:", ""]
    lines += [f"* `{mod}:{m.line}` {m.what}" for mod, m in survivors] or ["none"]
    lines += ["", "Killed by a timeout (twice):", ""]
    lines += [f"* `{mod}:{m.line}` {m.what}" for mod, m in timeouts] or ["none"]
    out = Path(args.out)
    head = out.read_text() if args.append and out.is_file() else "# Mutation score of the engine's tests\n"
    out.write_text(head + "\n" + "\n".join(lines) + "\n")
    print(f"survivors: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
