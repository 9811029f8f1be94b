"""Every model of models/manifest.json on the same images: FER2013 val, six emotions, then the
models that predict all seven emotions on all seven.

The manifest's figures were each measured on other data (a held-out share of the AU table for the
AU models, val that also picked the CNN's best epoch), so Home could not set them side by side.
This runs the workbench's one comparison (``fer_core.evaluation.compare.run_comparison``) on the
val split's angry, disgust, happy, neutral, sad and surprise images (fear is left out: the bundled
models do not predict it; a model that does is wrong when it says fear on these images, as in any
comparison). Then every model whose classes include all seven emotions is scored again on all of
val, fear included (the seven-emotion table; models of fewer emotions are skipped there). A face the
detector does not find counts as wrong for every model that needs one; the 95 % interval is the
comparison's (Wilson score interval). The results, with each model file's SHA-256 so Home can tell a figure left
behind by a retrained model, go to ``models/scores_fer2013_val.json`` and
``models/scores_fer2013_val_seven.json`` (``fer_core.evaluation.scores``).

Run: python bench/bundled_scores.py [--workers 2] [--split val] [--models-dir models/]
A model that cannot be loaded or run is recorded under "failed" with its reason; the rest go on.
Measurements are cached by file content (.cache/), so a rerun after retraining one model is quick.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fer_core import config
from fer_core.emotions import SEVEN_EMOTIONS, SIX_EMOTIONS
from fer_core.errors import FerError, one_line
from fer_core.evaluation.compare import run_comparison
from fer_core.evaluation.scores import BundledScores, ModelScore, TestSet, predicts_all_seven, write_scores
from fer_core.images import scan_images
from fer_core.manifest import read_manifest, sha256_file
from fer_core.provenance import sidecar_sha256


def _progress(desc: str = "bundled scores"):
    """The comparison's (fraction, text) progress on a tqdm bar (shown also when not a terminal)."""
    from tqdm import tqdm

    tqdm.monitor_interval = 0
    bar = tqdm(total=1000, desc=desc, mininterval=5.0, file=sys.stderr)

    def update(fraction: float, text: str) -> None:
        bar.set_postfix_str(text, refresh=False)
        bar.n = int(round(1000 * min(max(fraction, 0.0), 1.0)))
        bar.refresh()

    return update, bar


def score_test_set(entries, listing, classes, split: str, workers: int, command: str) -> BundledScores:
    """``entries`` on the images of ``listing`` scored on ``classes`` (images of other emotions left
    out and counted): one score per model that ran, one line per model that could not."""
    update, bar = _progress(f"{len(classes)} emotions")
    comparison = run_comparison(entries, listing.items, classes=classes, workers=workers, progress=update)
    bar.close()

    failed = {}
    for line in comparison.failed_models:  # one line each, starting with the model's name or file
        name = next((e.name for e in entries if line.startswith(e.name) or str(e.file) in line), line)
        failed[name] = line
    scored = []
    for entry in entries:
        if entry.name not in comparison.reports:
            failed.setdefault(entry.name, f"{entry.name}: not scored")
            continue
        scored.append(ModelScore.from_report(comparison.reports[entry.name], entry.kind, sha256_file(entry.file),
                                             sidecar_sha256(entry.file)))

    first = next(iter(comparison.reports.values()))
    test_set = TestSet(name=f"FER2013 {split}", root=f"fer2013/{split}", classes=tuple(comparison.classes),
                       per_emotion={e: s.n for e, s in first.per_class.items()},
                       left_out=dict(comparison.skipped),
                       unreadable=len(comparison.unreadable) + len(listing.skipped_lines))
    return BundledScores(test_set=test_set, date=dt.date.today().isoformat(), command=command,
                         models=tuple(scored), failed=failed, seconds=comparison.seconds)


def _print(scores: BundledScores, path: Path) -> None:
    test_set = scores.test_set
    print(f"{test_set.name}, {len(test_set.classes)} emotions: {test_set.n:,} images of {', '.join(test_set.classes)}; "
          "left out " + (", ".join(f"{n} {e}" for e, n in test_set.left_out.items()) or "none")
          + f"; {scores.seconds / 60:.1f} min")
    for s in scores.models:
        lo, hi = s.accuracy_ci95
        print(f"  {s.name:28s} accuracy {s.accuracy:.3f} (95% CI {lo:.3f}-{hi:.3f})  macro-F1 {s.macro_f1:.3f}  "
              f"no face {s.no_face}")
    for name, why in scores.failed.items():
        print(f"  {name}: NOT SCORED - {why}")
    print(f"-> {path}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", default="val", help="FER2013 split under $FER_DATA_DIR/fer2013 (default val; "
                        "Home's scores are val's, so another split needs --models-dir, a folder of its own)")
    parser.add_argument("--workers", type=int, default=2, help="processes measuring faces (default 2)")
    parser.add_argument("--models-dir", type=Path, default=None, help="folder of manifest.json (default: models/)")
    args = parser.parse_args()

    if args.split != "val" and args.models_dir is None:  # it wrote train's scores as Home's val ones
        raise FerError(f"--split {args.split}: Home reads its scores file as FER2013 val's; give --models-dir, a "
                       "copy of the models folder, so val's scores stay as they are")
    root = config.fer_split_dir(args.split)
    listing = scan_images(root)  # every emotion: run_comparison counts the left-out ones (fear)
    entries = read_manifest(args.models_dir)
    if not entries:
        raise FerError("models/manifest.json lists no models")
    command = "python bench/bundled_scores.py" + "".join(
        f" {shlex.quote(a)}" for a in sys.argv[1:])
    six = score_test_set(entries, listing, SIX_EMOTIONS, args.split, args.workers, command)
    _print(six, write_scores(six, args.models_dir))
    seven_models = [e for e in entries if predicts_all_seven(e)]
    if not seven_models:
        print("no model predicts all seven emotions: no seven-emotion scores")
        return 0
    # the faces are cached by file content: only the fear images are measured anew
    seven = score_test_set(seven_models, listing, SEVEN_EMOTIONS, args.split, args.workers, command)
    _print(seven, write_scores(seven, args.models_dir))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except FerError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        sys.exit(2)
