"""Start the dashboard: ``python -m ui.launch [streamlit options]`` (what ``make run`` does).

It is ``streamlit run app.py`` with the first visitor's waits moved to the server's start:
- a cold server's first page run spends most of a second importing pandas and the workbench before
  it draws anything, so they are imported before the server starts listening (before, not beside:
  two threads importing pandas and plotly at once can leave one holding a half-made module). Only
  modules without Streamlit (``fer_core`` has none by design): Streamlit's caches must be made
  inside the running server;
- Try it's MediaPipe worker (a process of its own, seconds to load) is started too, without
  waiting, so it is loading while the server starts and the browser opens; app.py would otherwise
  start it on the first page visit.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

APP = Path(__file__).resolve().parents[1] / "app.py"
# What Home and Try it import beyond Streamlit itself, slowest first; nothing that starts TensorFlow
# or MediaPipe (those stay lazy, in their own processes or on first use).
WARM_MODULES: tuple[str, ...] = (
    "pandas",
    "plotly.graph_objects",
    "fer_core.evaluation.scores",
    "fer_core.pipeline",
    "fer_core.figures.plots",
    "fer_core.masks",
)


def warm_imports(modules: tuple[str, ...] = WARM_MODULES) -> None:
    """Import ``modules``; one that fails is left for the page, which reports it the usual way."""
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # the page's own import will say what is wrong
            continue


def main(argv: list[str] | None = None) -> None:
    from streamlit.web import cli

    warm_imports()
    from fer_core.measure.tasks import start_photo_worker

    start_photo_worker()
    cli.main(prog_name="streamlit", args=["run", str(APP), *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
