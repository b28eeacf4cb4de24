"""Run ``pdesurrogate demo`` end to end and commit what it wrote: ``experiments/results/demo_cpu.md``
(the wall time, the stepper's evaluation and the optical reconstruction) and the figures the docs show
(``demo_simulation.png``, ``demo_rollout.png``, ``demo_worst_sample.png``, ``demo_reconstruction.png``).

    uv run python experiments/demo_cpu.py --work demo_output
"""

from __future__ import annotations

import argparse
import datetime
import shutil
import time
from pathlib import Path

from pdesurrogate.io import write_text
from training.demo import run_demo

RESULTS = Path(__file__).resolve().parent / "results"
FIGURES = {"simulation/simulation.png": "demo_simulation.png", "evaluation/rollout.png": "demo_rollout.png",
           "evaluation/worst_sample.png": "demo_worst_sample.png",
           "evaluation/error_histogram.png": "demo_error_histogram.png",
           "reconstruction/reconstruction.png": "demo_reconstruction.png"}


def page(work: Path, wall: float) -> str:
    """``demo_cpu.md``: the command and wall time, then the demo's own evaluation and reconstruction pages."""
    text = {d: (work / d / f"{d}.md").read_text().rstrip() for d in ("evaluation", "reconstruction")}
    for source, name in FIGURES.items():  # the pages' figure links, to the copies next to this page
        d, figure = source.split("/")
        if d in text:
            text[d] = text[d].replace(f"]({figure})", f"]({name})")
    return "\n".join([
        f"# pdesurrogate demo (CPU, 2 cores, {datetime.date.today().isoformat()})", "",
        f"Command: `uv run pdesurrogate demo --out {work.name}` ({wall:.0f} s wall in total on the shared 2-core "
        "CPU host with other jobs running alongside, written by `experiments/demo_cpu.py`). Training uses "
        "samples 0-47, validation (checkpoint selection) 48-55, and the test set below is samples 56-63.", "",
        text["evaluation"], "", "#" + text["reconstruction"], ""])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="demo_output", help="the demo's output directory")
    args = ap.parse_args()
    work = Path(args.work)
    t0 = time.perf_counter()
    run_demo(work, progress=False)
    wall = time.perf_counter() - t0
    write_text(RESULTS / "demo_cpu.md", page(work, wall))
    for source, name in FIGURES.items():
        shutil.copyfile(work / source, RESULTS / name)


if __name__ == "__main__":
    main()
