"""Command line: ``python -m fer_core COMMAND``. Errors are one line on stderr, exit status 2."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .errors import FerError

DEFAULT_MODEL = "au-logreg-fer2013"


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    args.command_line = "python -m fer_core " + " ".join(sys.argv[1:] if argv is None else argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return args.func(args) or 0
    except FerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fer_core", description="Explainable facial-emotion workbench")
    sub = p.add_subparsers(metavar="COMMAND")

    s = sub.add_parser("predict", help="AUs and an explained emotion for each face in images "
                       "(--json: one object for one image, a list for several)")
    s.add_argument("images", nargs="+")
    s.add_argument("--model", default=DEFAULT_MODEL, help="AU model: manifest name or .json path")
    s.add_argument("--top", type=int, default=3, help="how many AUs to give as reasons")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_predict)

    s = sub.add_parser("extract", help="AU table (CSV) of a folder of images")
    s.add_argument("folder")
    s.add_argument("--out", required=True)
    s.add_argument("--backend", choices=("mediapipe", "openface-docker"), default="mediapipe")
    s.add_argument("--workers", type=int, default=None, help="processes (default: up to 2)")
    s.add_argument("--classes", default=None,
                   help="only these emotions: six, seven or a comma list (default: every image, labelled or not)")
    s.add_argument("--no-cache", action="store_true", help="recompute even files seen before")
    s.set_defaults(func=cmd_extract)

    s = sub.add_parser("import-openface", help="AU table from OpenFace 2 CSV output (file or folder)")
    s.add_argument("source")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_import_openface)

    s = sub.add_parser("train-au", help="fit the AU model (logistic regression or the study's MLP)")
    s.add_argument("table", help="AU table CSV (this workbench's, or OpenFace output)")
    s.add_argument("--out", required=True, help="model .json to write")
    s.add_argument("--kind", choices=("logreg", "mlp"), default="logreg")
    s.add_argument("--classes", default="six")
    s.add_argument("--class-weight", choices=("none", "balanced"), default="none")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--name", help="register in models/manifest.json under this name")
    s.set_defaults(func=cmd_train_au)

    s = sub.add_parser("evaluate", help="score a model on labelled images or an AU table")
    s.add_argument("--model", default=DEFAULT_MODEL)
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", help="folder: <emotion>/*.jpg or emotion-prefixed names")
    src.add_argument("--au-table", help="AU table CSV with labels (AU models only)")
    s.add_argument("--workers", type=int, default=None)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("compare", help="several models on the same labelled images")
    s.add_argument("--images", required=True)
    s.add_argument("--models", nargs="+", default=None, help="default: every model in the manifest")
    s.add_argument("--classes", default=None, help="default: the classes the models share")
    s.add_argument("--csv", help="write per-image predictions here")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_compare)

    s = sub.add_parser("draw-testset", help="copy a reproducible N-per-emotion test set")
    s.add_argument("source", help="a split folder, e.g. ../shared/datasets/fer2013/val")
    s.add_argument("out")
    s.add_argument("--per-class", type=int, default=10)
    s.add_argument("--classes", default="six")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_draw_testset)

    s = sub.add_parser("models", help="list the models in models/manifest.json")
    s.set_defaults(func=cmd_models)

    _add_cnn_commands(sub)
    return p


def _add_cnn_commands(sub) -> None:
    s = sub.add_parser("train-cnn", help="train a CNN on FER2013-style 48x48 images")
    s.add_argument("--data", required=True, help="train folder (Kaggle layout)")
    s.add_argument("--val", help="validation folder (default: 10%% of train held out)")
    s.add_argument("--out", required=True, help="model .keras to write")
    s.add_argument("--preset", choices=("original", "strong", "tiny"), default="strong")
    s.add_argument("--epochs", type=int, default=30)
    s.add_argument("--batch-size", type=int, default=64)
    s.add_argument("--classes", default="six")
    s.add_argument("--limit-per-class", type=int, default=None)
    s.add_argument("--class-weighting", action="store_true", help="weight classes by inverse frequency")
    s.add_argument("--max-minutes", type=float, default=None, help="stop after this long, keeping the best epoch")
    s.add_argument("--name", help="register in models/manifest.json under this name")
    s.set_defaults(func=cmd_train_cnn)


# -- commands ------------------------------------------------------------------------------
def cmd_predict(args) -> int:
    from .analysis import analyze_image
    from .au_model import AUModel
    from .faces import FaceAnalyzer
    from .images import load_image
    from .manifest import find_entry, resolve_path, verify_checksum

    entry = find_entry(args.model)
    if entry["kind"] not in ("au-logreg", "au-mlp"):
        raise FerError(f"{args.model}: predict explains with an AU model; use evaluate/compare for CNN or Teachable Machine")
    verify_checksum(entry)
    model = AUModel.load(resolve_path(entry["path"]))
    results = []
    status = 0
    with FaceAnalyzer() as analyzer:
        for path in args.images:
            try:
                faces = analyze_image(load_image(path), model, analyzer, top=args.top)
            except FerError as exc:
                results.append({"file": path, "error": str(exc), "faces": []})
                status = 2
                continue
            for f in faces:
                f.pop("landmarks")
            entry_out = {"file": path, "model": entry["name"], "faces": faces}
            if not faces:
                entry_out["error"] = f"{path}: no face found; use a clearer, frontal, well-lit photo"
            results.append(entry_out)
    if args.json:
        print(json.dumps(results if len(results) > 1 else results[0], indent=1, default=_jsonable))
        return status
    for r in results:
        if r.get("error"):
            print(f"{r['file']}: {r['error'].split(': ', 1)[-1]}")
            continue
        for i, f in enumerate(r["faces"]):
            probs = ", ".join(f"{k} {v:.2f}" for k, v in sorted(f["probabilities"].items(), key=lambda kv: -kv[1]))
            aus = " ".join(f"{k[:4]}={v:.1f}" for k, v in f["aus"].items())
            print(f"{r['file']} face {i + 1} box {[round(v) for v in f['box']]} conf {f['confidence']:.2f}")
            print(f"  {f['sentence']}\n  probabilities: {probs}\n  AUs: {aus}")
    return status


def cmd_extract(args) -> int:
    from .emotions import parse_classes
    from .images import list_images

    items = list_images(args.folder, parse_classes(args.classes) if args.classes else None)
    if not items:
        raise FerError(f"{args.folder}: no images found; expected <emotion>/*.jpg, emotion-prefixed file names or plain images")
    if args.backend == "openface-docker":
        from .openface import OpenFaceDocker

        table = OpenFaceDocker().extract(items, progress=_tqdm_progress("OpenFace"))
    else:
        from .extract import default_workers, extract_table

        table = extract_table(items, workers=args.workers or default_workers(), use_cache=not args.no_cache,
                              progress=_tqdm_progress("faces"))
    root = Path(args.folder).resolve()
    table["file"] = [_relative(f, root) for f in table["file"]]
    _write_table(table, args.out)
    ok = int(table["success"].sum())
    images = table["file"].nunique()
    failed = table[table["success"] == 0]
    print(f"{images} images, {ok} faces -> {args.out}; {len(failed)} without a face or unreadable", file=sys.stderr)
    for reason, n in failed["reason"].value_counts().head(5).items():
        print(f"  {n} x {reason}", file=sys.stderr)
    return 0


def cmd_import_openface(args) -> int:
    from .openface import import_openface_dir, read_au_table

    source = Path(args.source)
    table = import_openface_dir(source) if source.is_dir() else read_au_table(source)
    _write_table(table, args.out)
    print(f"{len(table)} rows -> {args.out}", file=sys.stderr)
    return 0


def cmd_train_au(args) -> int:
    from .au_model import fit_au_model
    from .emotions import parse_classes
    from .manifest import register_model, relative_to_repo

    table = read_any_au_table(args.table)
    kind = "au-logreg" if args.kind == "logreg" else "au-mlp"
    model = fit_au_model(table, parse_classes(args.classes), kind=kind, seed=args.seed,
                         class_weight=None if args.class_weight == "none" else args.class_weight,
                         description=f"{args.table}")
    model.info["command"] = args.command_line
    sha = model.save(args.out)
    m = model.info["metrics"]["holdout"]
    print(f"{kind} on {model.info['data']['rows']} faces; held-out accuracy {m['accuracy']:.3f} "
          f"(95% CI {m['accuracy_ci95'][0]:.3f}-{m['accuracy_ci95'][1]:.3f}), macro-F1 {m['macro_f1']:.3f} -> {args.out}")
    if args.name:
        register_model({"name": args.name, "kind": kind, "path": relative_to_repo(args.out),
                        "classes": list(model.classes), "metrics": {"holdout_accuracy": m["accuracy"],
                                                                    "holdout_macro_f1": m["macro_f1"]},
                        "command": model.info["command"]})
        print(f"registered as {args.name!r} in models/manifest.json (sha256 {sha[:12]}…)")
    return 0


def cmd_evaluate(args) -> int:
    from .manifest import find_entry, load_predictor

    entry = find_entry(args.model)
    predictor = load_predictor(entry)
    if args.au_table:
        if not hasattr(predictor, "model"):
            raise FerError("--au-table works with AU models only; use --images for CNN or Teachable Machine")
        from .au_model import evaluate_on_table

        report = evaluate_on_table(predictor.model, read_any_au_table(args.au_table), name=entry["name"])
    else:
        report = _evaluate_images(predictor, args.images, entry["name"])
    if args.json:
        print(json.dumps(report))
    else:
        _print_report(report)
    return 0


def _evaluate_images(predictor, folder: str, name: str) -> dict:
    from .compare import compare_report, load_labeled, predictions_table
    from .images import list_images

    items = list_images(folder, predictor.classes)
    if not items:
        raise FerError(f"{folder}: no labelled images of {', '.join(predictor.classes)} found")
    images, kept, problems = load_labeled(items)
    for line in problems:
        print(f"skipped: {line}", file=sys.stderr)
    table = predictions_table([predictor], kept, images, progress=_tqdm_progress("images"))
    report = compare_report(table, [predictor.name], predictor.classes)["models"][predictor.name]
    report["model"] = name
    return report


def cmd_compare(args) -> int:
    from .compare import compare_report, load_labeled, predictions_table
    from .emotions import parse_classes
    from .images import list_images
    from .manifest import find_entry, load_predictor, read_manifest

    refs = args.models or [e["name"] for e in read_manifest()]
    if not refs:
        raise FerError("no models: train one or pass --models")
    predictors = [load_predictor(find_entry(r)) for r in refs]
    names = [p.name for p in predictors]
    if len(set(names)) != len(names):
        raise FerError(f"models share a name ({', '.join(names)}); give distinct models")
    classes = parse_classes(args.classes) if args.classes else tuple(
        c for c in predictors[0].classes if all(c in p.classes for p in predictors))
    items = list_images(args.images, classes)
    if not items:
        raise FerError(f"{args.images}: no labelled images of {', '.join(classes)} found")
    images, kept, problems = load_labeled(items)
    for line in problems:
        print(f"skipped: {line}", file=sys.stderr)
    table = predictions_table(predictors, kept, images, progress=_tqdm_progress("predicting"))
    report = compare_report(table, names, classes)
    report["skipped"] = problems
    if args.csv:
        table.to_csv(args.csv, index=False)
    if args.json:
        print(json.dumps(report))
        return 0
    for name, r in report["models"].items():
        _print_report(r)
    for pair in report["mcnemar"]:
        print(f"McNemar {pair['a']} vs {pair['b']}: only-A {pair['only_a_correct']}, only-B {pair['only_b_correct']}, p = {pair['p_value']:.4f}")
    return 0


def cmd_draw_testset(args) -> int:
    from .emotions import parse_classes
    from .images import draw_test_set

    chosen = draw_test_set(args.source, args.out, args.per_class, parse_classes(args.classes), args.seed)
    print(f"{len(chosen)} images ({args.per_class} per emotion, seed {args.seed}) -> {args.out}")
    return 0


def cmd_models(args) -> int:
    from .manifest import read_manifest

    for e in read_manifest():
        metrics = ", ".join(f"{k} {v}" for k, v in (e.get("metrics") or {}).items())
        print(f"{e['name']:28s} {e['kind']:10s} {e['path']}  {metrics}")
    return 0


def cmd_train_cnn(args) -> int:
    import time

    from .cnn import train_cnn
    from .emotions import parse_classes
    from .manifest import register_model, relative_to_repo

    classes = parse_classes(args.classes)
    deadline = time.monotonic() + args.max_minutes * 60 if args.max_minutes else None
    bar = _tqdm_progress("epochs", total=args.epochs)
    result = train_cnn(args.data, args.val, classes=classes, preset=args.preset, epochs=args.epochs,
                       batch_size=args.batch_size, out=args.out, limit_per_class=args.limit_per_class,
                       class_weighting=args.class_weighting, command=args.command_line,
                       progress=lambda epoch, logs: bar(epoch + 1, args.epochs),
                       should_stop=(lambda: time.monotonic() > deadline) if deadline else None)
    ev = result.evaluation
    print(f"{args.preset} CNN, {result.epochs_run} epochs in {result.seconds / 60:.1f} min: validation accuracy "
          f"{ev['accuracy']:.3f} (95% CI {ev['accuracy_ci95'][0]:.3f}-{ev['accuracy_ci95'][1]:.3f}), "
          f"macro-F1 {ev['macro_f1']:.3f} -> {args.out}")
    if args.name:
        register_model({"name": args.name, "kind": "cnn", "path": relative_to_repo(args.out),
                        "classes": list(classes),
                        "metrics": {"val_accuracy": ev["accuracy"], "val_macro_f1": ev["macro_f1"]},
                        "command": args.command_line})
        print(f"registered as {args.name!r} in models/manifest.json")
    return 0


# -- helpers -------------------------------------------------------------------------------
def read_any_au_table(path: str):
    """This workbench's AU table, or OpenFace output (per-image or merged), by content."""
    from .openface import read_au_table

    return read_au_table(path)


def _relative(file: str, root: Path) -> str:
    """File names in a written table are relative to the folder given, so tables travel."""
    try:
        return str(Path(file).resolve().relative_to(root))
    except ValueError:
        return file


def _write_table(table, out: str) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)


def _tqdm_progress(desc: str, total: int | None = None):
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, disable=not sys.stderr.isatty() and os.environ.get("FER_PROGRESS") != "1")

    def update(done: int, total_now: int) -> None:
        bar.total = total_now
        bar.n = done
        bar.refresh()
        if done >= total_now:
            bar.close()

    return update


def _print_report(r: dict) -> None:
    lo, hi = r.get("accuracy_ci95", [None, None])
    print(f"{r['model']}: n {r['n']}, accuracy {r['accuracy']:.3f} (95% CI {lo:.3f}-{hi:.3f}), "
          f"macro-F1 {r['macro_f1']:.3f}, no face {r['no_face']}")
    for emotion, v in r["per_class"].items():
        acc = "-" if v["accuracy"] is None else f"{v['accuracy']:.2f}"
        print(f"  {emotion:9s} n {v['n']:5d}  accuracy {acc}")


def _jsonable(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)
