"""The validation table: runs the solver validation tests and writes the figure each one measured.

    uv run python experiments/validation.py                 # default and slow tests, 12 min on 2 shared CPU cores
    uv run python experiments/validation.py --default-only  # the default suite's tests only
    uv run python experiments/validation.py --render        # rewrite the .md from the .json, running nothing

Each validation test calls the ``record_figure`` fixture (``tests/conftest.py``) with its row name,
the measured value, its own tolerance, the compute dtype and where the figure is taken, before it
asserts. This script runs those tests with ``$PDESURROGATE_FIGURES`` pointing at a scratch file
and turns the recorded lines into ``experiments/results/validation_<backend>.{md,json}``, one
row per recorded figure, in the order the tests ran. Nothing is written unless every test passes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEST_FILES = ("test_acoustic_physics.py", "test_acoustic_jwave.py", "test_acoustic_autodiff.py",
              "test_acoustic_stencils.py", "test_maxwell_validation.py", "test_maxwell_stepper.py",
              "test_maxwell_gradients.py")
FIGURES_ENV = "PDESURROGATE_FIGURES"  # tests/conftest.py reads the same name


def format_value(value: float, unit: str) -> str:
    if unit == "dB":
        return f"{value:.0f} dB"
    if unit == "order":
        return f"{value:.2f}"
    if unit == "ratio":
        return f"{value:.3f}"
    return f"{value:.2g}"


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [f"# Solver validation ({meta['backend']}, {meta['date']})", "",
             f"`{meta['command']}`: JAX {meta['jax']}, Python {meta['python']}, {meta['device']}. "
             f"{meta['tests']} tests passed ({meta['selection']}) in {meta['wall_s']:.0f} s. One row per figure a test recorded "
             "before asserting on it; the tolerance is the test's own bound.", "",
             "| check | measured | tolerance | dtype | how the test measures it | test |", "|---|---|---|---|---|---|"]
    for r in rows:
        measured = format_value(r["value"], r["unit"]) + (f" ({r['detail']})" if r["detail"] else "")
        cells = [r["check"], measured, r["tolerance"], r["dtype"], r["region"]]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells)
                     + f" | `{r['test'].removeprefix('tests/')}` |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--default-only", action="store_true", help="skip the slow tests (-m slow)")
    ap.add_argument("--render", action="store_true", help="rewrite the Markdown table from the JSON file only")
    ap.add_argument("--results", default=str(REPO / "experiments" / "results"))
    args = ap.parse_args(argv)
    if args.render:
        for path in Path(args.results).glob("validation_*.json"):
            data = json.loads(path.read_text())
            path.with_suffix(".md").write_text(markdown(data["rows"], data["meta"]))
        return 0
    selection = "not slow" if args.default_only else "slow or not slow"
    with tempfile.TemporaryDirectory() as tmp:
        figures = Path(tmp) / "figures.jsonl"
        cmd = [sys.executable, "-m", "pytest", *(f"tests/{f}" for f in TEST_FILES), "-q", "-m", selection,
               "-p", "no:cacheprovider", "--junitxml", str(Path(tmp) / "junit.xml")]
        env = dict(os.environ, **{FIGURES_ENV: str(figures)})
        t0 = time.time()
        proc = subprocess.run(cmd, cwd=REPO, env=env)
        if proc.returncode != 0:
            print(f"pytest failed (status {proc.returncode}); nothing written", file=sys.stderr)
            return proc.returncode
        rows = [json.loads(line) for line in figures.read_text().splitlines()]
        junit = (Path(tmp) / "junit.xml").read_text()
    import jax  # after the tests: this process never runs JAX before them

    tests = int(junit.split('tests="', 1)[1].split('"', 1)[0])
    backend = jax.default_backend()
    meta = {"command": "uv run python experiments/validation.py" + (" --default-only" if args.default_only else ""),
            "selection": "default suite" if args.default_only else "default and slow suites",
            "tests": tests, "backend": backend, "device": str(jax.devices()[0]), "jax": jax.__version__,
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%d", time.gmtime()),
            "wall_s": round(time.time() - t0, 1)}
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"validation_{backend}" + ("_default" if args.default_only else "")
    (out / f"{stem}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    (out / f"{stem}.md").write_text(markdown(rows, meta))
    print(f"{len(rows)} figures from {tests} tests -> {out / stem}.{{md,json}}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
