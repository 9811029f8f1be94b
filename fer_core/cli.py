"""Command line: ``python -m fer_core COMMAND``. Errors are one line on stderr, exit status 2."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import re
import shlex
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NoReturn

from . import fileio
from .errors import FerError, ModelNotFoundError, OutputFileError, StoppedBeforeAnEpoch, one_line, printable

DEFAULT_MODEL = "au-logreg-fer2013"


class _NoTracebacks(logging.Filter):
    """The command line's logs keep their one line: a model that failed to load or run is said by
    the command in one line, and its traceback (18 lines for a plugin's error, before that line)
    is logged only with FER_DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.exc_info or bool(os.environ.get("FER_DEBUG"))


def _log_in_one_line() -> None:
    """On the "fer_core" logger (where every traceback is logged), and on Python's last-resort
    handler, which prints a record no handler took (a module's own child logger's too)."""
    for where in (logging.getLogger("fer_core"), logging.lastResort):
        if where is not None and not any(isinstance(f, _NoTracebacks) for f in where.filters):
            where.addFilter(_NoTracebacks())


class _ClosedOutput(io.TextIOBase):
    """Standard output of a run started with it closed: writes go nowhere, and are remembered, so
    the run says its results were lost rather than ending as if they were given."""

    lost = False

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.lost = self.lost or bool(text)
        return len(text)


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # file names that are not UTF-8 must not end a run
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    _log_in_one_line()
    parser = _parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said by the parser whose options were meant: the command's, unless before it
        files = [a for a in unknown if a.startswith("-") and os.path.lexists(a)]  # `predict *` met "--help.jpg"
        hint = (f" ({printable(files[0])} is a file: put -- before the files, or write ./{printable(files[0])})"
                if files else "")
        _parser_of(unknown[0], parser, args).error(f"unrecognized arguments: {' '.join(unknown)}{hint}")
    # as a shell reads it again: a path with a space or a quote stays one argument
    args.command_line = "python -m fer_core " + shlex.join(sys.argv[1:] if argv is None else argv)
    if not getattr(args, "func", None):  # a usage error, as a wrong option is: help on stderr, status 2
        parser.print_help(sys.stderr)
        return 2
    try:
        if sys.stdout is None:  # started with its output closed (>&-): what is printed there goes nowhere
            sys.stdout = _ClosedOutput()
        status = args.func(args) or 0
        if getattr(sys.stdout, "lost", False):
            print("error: standard output was closed, so the results printed there were lost; redirect it to "
                  "a file instead", file=sys.stderr)
            return 2 if status == 0 else status
        sys.stdout.flush()  # a reader that has gone (| head) is met here, not in Python's exit
        return status
    except BrokenPipeError as exc:
        if _stdout_gone():
            return _reader_gone()
        return _unexpected(exc)
    except FerError as exc:
        _end_progress_bars()
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        with contextlib.suppress(OSError):  # a hung-up terminal (SIGHUP) takes no more writes: EIO
            _end_progress_bars()
            print("interrupted" + _resume_hint(args), file=sys.stderr)
        return _interrupted_status(exc)
    except MemoryError:
        _end_progress_bars()
        print("error: out of memory; use a smaller input or a machine with more memory", file=sys.stderr)
        return 2
    except Exception as exc:
        return _unexpected(exc)


def _resume_hint(args) -> str:
    """What an interrupted command keeps: faces measured locally with MediaPipe are cached by
    file content (written when the run stops; a video's by each finished part of it), so the same
    command goes on from there."""
    from .measure.video import is_video

    measures_folder = ((args.func is cmd_extract and (Path(args.folder).is_dir() or is_video(args.folder)))
                       or (args.func in (cmd_evaluate, cmd_compare) and getattr(args, "images", None)))
    local = getattr(args, "engine", "local") == "local" and getattr(args, "backend", "mediapipe") == "mediapipe"
    if measures_folder and local and not getattr(args, "no_cache", False):
        from .measure.extract import CACHE_DIR_HINT, cache_writable

        if not cache_writable():  # a read-only install's own cache: the same command starts again
            return f"; nothing measured was kept: the measurement cache cannot be written; {CACHE_DIR_HINT}"
        return "; the faces measured so far are cached, so the same command goes on from there"
    return ""


def _end_progress_bars() -> None:
    """Close the progress bars still drawn, so that the line said next starts a line of its own
    ("interrupted" was written on the end of the bar's line, and the bar drawn again after it)."""
    bars = getattr(getattr(sys.modules.get("tqdm"), "tqdm", None), "_instances", ())
    for bar in list(bars):
        bar.close()


def _unexpected(exc: Exception) -> int:
    """A bug, not the user's fault: one line here, the traceback on request."""
    if os.environ.get("FER_DEBUG"):
        raise exc
    _end_progress_bars()
    print(f"error: unexpected {one_line(exc)} (a bug; FER_DEBUG=1 shows the details)", file=sys.stderr)
    return 2


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a scheduler or container stopping the run) or SIGHUP (its terminal closed,
    an SSH session dropped): ended as Ctrl-C ends it, so an output being written is removed whole,
    worker processes are stopped, the faces measured so far are cached and a Ray run keeps its rows,
    instead of the process vanishing mid-write."""

    def __init__(self, signum: int = 15) -> None:
        super().__init__()
        self.signum = signum


def on_terminate(signum: int, frame: object) -> NoReturn:
    """The command line's SIGTERM and SIGHUP handler (``python -m fer_core`` installs it)."""
    raise Terminated(signum)


def _interrupted_status(exc: KeyboardInterrupt) -> int:
    """130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP: what a shell reports for a command those
    signals ended."""
    return 128 + exc.signum if isinstance(exc, Terminated) else 130


SIGPIPE_STATUS = 141  # what a shell reports for a command a closed pipe ended (128 + SIGPIPE)


def _stdout_gone() -> bool:
    """Whether stdout is a pipe whose reader has closed it (not some other pipe of the run's)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no file descriptor (a test's capture), or no poll
        return False


def _reader_gone() -> int:
    """``... | head -1``: the reader took what it wanted and closed the pipe. That is no error of
    the command's: nothing is printed, and the rest of the output goes nowhere (Python would
    otherwise complain again when it flushes stdout at exit)."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return SIGPIPE_STATUS


class _Parser(argparse.ArgumentParser):
    """argparse, but a wrong option is one ``error:`` line (exit status 2) like every other error,
    with the command or option meant when a typo is close to one (Python 3.11's argparse has none)."""

    def parse_known_args(self, args=None, namespace=None):
        """Kept: the words given, for a typo argparse reports only as a required option missing."""
        self.given = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        guess = _did_you_mean(message, self)
        if guess:  # the one meant, instead of every command after which it came last, unseen
            message = _INVALID_CHOICE.sub(lambda refused: f"invalid choice: '{refused[1]}'", message)
        self.exit(2, f"error: {message}{guess} (see {self.prog} --help)\n")


_INVALID_CHOICE = re.compile(r"invalid choice: '([^']*)' \(choose from (.*)\)")


def _did_you_mean(message: str, parser: argparse.ArgumentParser) -> str:
    """"; did you mean 'extract'?" for ``extrct`` or ``--wokers``: the closest command, choice or
    option of ``parser`` to the word argparse refused, or nothing when none is close."""
    import difflib

    refused = _INVALID_CHOICE.search(message)
    if refused:
        word, known = refused[1], re.findall(r"'([^']*)'", refused[2])
    elif message.startswith("unrecognized arguments: "):
        word = next((w.split("=")[0] for w in message.split(": ", 1)[1].split() if w.startswith("--")), "")
        known = [option for action in parser._actions for option in action.option_strings]
    elif message.startswith("the following arguments are required: "):  # --ouut: --out is missing
        known = [option for action in parser._actions for option in action.option_strings]
        unknown = [w.split("=")[0] for w in getattr(parser, "given", ()) if w.startswith("--")]
        word = next((w for w in unknown if not any(option.startswith(w) for option in known)), "")
        close = difflib.get_close_matches(word, known, n=1, cutoff=0.6) if word else []
        return f"; did you mean {close[0]!r} for {word!r}?" if close else ""
    else:
        return ""
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.6) if word else []
    return f"; did you mean {close[0]!r}?" if close else ""


def _parser_of(word: str, parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The parser ``word`` was given to: the command's, or the whole parser's for a word before the
    command (``--jsn models`` is no option of ``models``) or when there is no command."""
    commands = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    command = getattr(args, "command", None)
    if commands is None or command not in commands.choices:
        return parser
    given = getattr(parser, "given", [])
    if word in given and command in given and given.index(word) < given.index(command):
        return parser
    return commands.choices[command]


def _seed(text: str) -> int:
    """A --seed: a whole number numpy and scikit-learn accept (0 to 2**32 - 1)."""
    from .predictors.au_models import MAX_SEED

    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 0 to {MAX_SEED}")
    return value


def _name_free(name: str | None, kind: str, out: str | None = None, replace: bool = False) -> str:
    """Before training: ``--name`` is a valid model name, and not that of a model of another kind,
    nor (without ``--replace``) of a registered model in another file, and ``--out`` is no other
    registered model's file (which registering refuses, or the training would break, after
    minutes or hours of training). Retraining a model into its own file replaces it, as
    ``make au-model`` does; another file under its name dropped it from the manifest unsaid, the
    bundled default included. Returns what the "registered" line adds: the model it replaces."""
    from .manifest import (
        read_manifest,
        refuse_other_kind,
        refuse_registered_file,
        relative_to_repo,
        validate_model_name,
    )

    if out is not None:
        try:
            registered = read_manifest(strict=bool(name))
        except FerError:
            if name:  # registering needs the manifest: said now, not after the training
                raise
            registered = []  # a model kept out of the manifest needs none
        refuse_registered_file(name, out, registered)
    if not name:
        if replace:
            raise FerError("--replace replaces a registered model by --name; give the --name to register under")
        return ""
    validate_model_name(name, [])
    registered = read_manifest(strict=True)  # registering writes it back: an entry it cannot read, said now
    refuse_other_kind(name, kind, registered)
    same = next((e for e in registered if e.name == name), None)
    if (same is not None and not replace and out is not None
            and same.file.resolve() != Path(out).resolve()):
        raise FerError(f"a model named {name!r} is already registered (file {printable(relative_to_repo(same.file))}); "
                       "choose another --name, or add --replace to register this one in its place")
    return "" if same is None else f", in place of the model of that name in {printable(relative_to_repo(same.file))}"


def _add_register_arguments(s) -> None:
    """--name and --replace of the training commands (checked by ``_name_free``)."""
    s.add_argument("--name", help="register in models/manifest.json under this name")
    s.add_argument("--replace", action="store_true",
                   help="with --name: register in place of a model of that name in another file")


def _manifest_shown() -> str:
    """The manifest written, as a person names it: models/manifest.json, or FER_MODELS_DIR's."""
    from .manifest import manifest_path, relative_to_repo

    return relative_to_repo(manifest_path())


def _int_at_least(least: int, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = least - 1
    if value < least:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least {least}")
    return value


def _positive_int(text: str) -> int:
    return _int_at_least(1, text)


def _whole_number(text: str) -> int:
    """A count that may be 0 (--epochs 0: the warm start is the model)."""
    return _int_at_least(0, text)


def _finite(text: str) -> float:
    """A float option that is a number (argparse's float takes nan and inf)."""
    import math

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number")
    return value


def _share(text: str) -> float:
    """A share strictly between 0 and 1 (a held-out share)."""
    value = _finite(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a share above 0 and below 1 (such as 0.1)")
    return value


def _non_negative(text: str) -> float:
    value = _finite(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of at least 0")
    return value


def _positive(text: str) -> float:
    value = _finite(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number above 0")
    return value


def _interactions(text: str) -> int | float:
    """--interactions: a whole number of AU pairs, or a share below 1 (2.5 would silently be 2)."""
    import math

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if math.isfinite(value) and value >= 0 and (value.is_integer() or value < 1):
        return int(value) if value.is_integer() else value
    raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of AU pairs (0, 1, 2 …) or a share of the "
                                     "AUs below 1 (such as 0.5)")


EXIT_STATUSES = """exit status:
  0    done
  2    an error, said in one line on stderr, or a wrong command line; also when extract measured
       no face at all (its table is written, a row per file saying why), compare or mask-report
       could not run a model (the rest is still done), or predict gave no answer for one of its
       images (unreadable, or no face found; the others' answers are still given: each image
       named is a question). Otherwise a batch where some files fail is done (0): each failure
       is a row of the output or a line on stderr
  130  interrupted by Ctrl-C: nothing is left half-written
  143  stopped by kill (SIGTERM), as Ctrl-C stops it (129: its terminal closed, SIGHUP)
  141  the reader of the output closed it (... | head); nothing is said

FER_DEBUG=1 shows the traceback of an unexpected error. `python -m fer_core COMMAND --help`
describes a command.

environment: FER_MODELS_DIR (models folder, default models/), FER_CACHE_DIR (measurement cache,
default .cache/), FER_DATA_DIR (datasets, default ../shared/datasets), FER_PROGRESS=1 (progress
bars into a log file); the README's "Environment variables" lists every one."""
JSON_HELP = "print JSON on stdout instead of text (errors stay one line each on stderr)"
CLASSES_HELP = "emotions: six, seven or a comma list such as happy,sad,neutral (default: six)"
TABLE_OUT_HELP = "AU table to write; its ending chooses the format: .csv, .csv.gz, .csv.bz2, .csv.xz or .parquet"
MASK_STYLE_HELP = "surgical (light blue), white or cloth (black) (default: surgical)"
BATCH_HELP = "images per training step (default: 64)"
MAX_MINUTES_HELP = "stop after this many minutes, keeping the best epoch (default: no limit)"


CROPS_HELP = ("the images are face crops (e.g. 224 px, the face filling each), measured in face-crop mode as "
              "extract --crops measures them (images under 160 px always are)")
NO_CACHE_EVAL_HELP = ("measure every face and run every model again (by default, measurements and the networks' "
                      "answers kept from an earlier run on the same files, models and code are reused)")
CROPS_EVAL_HELP = CROPS_HELP + "; a pixel model is given each whole, as FER2013's crops are"
# predict's "no face" for a picture that looks like a face crop (``images.looks_like_face_crop``)
CROP_NO_FACE_MESSAGE = ("no face found; if the picture is a face crop, the face filling it, add --crops to measure it as "
                        "one; a face in a wide shot must be a thirtieth of the shorter side or more: crop around it")
CROPS_NOT_FOR_TABLES = "an AU table's faces were measured when it was extracted (extract --crops)"


class _VersionAction(argparse.Action):
    """``--version``: the distribution's name and version, and the commit it runs from (``+modified``
    with local edits), as a methods section or a bug report names it; git is asked only then."""

    def __init__(self, option_strings, version: str, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                 help="print the version and the git commit, then exit"):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)
        self.version = version

    def __call__(self, parser, namespace, values, option_string=None):
        from .provenance import DISTRIBUTION, source_commit

        commit = source_commit()
        print(f"{DISTRIBUTION} {self.version}" + (f" (commit {commit})" if commit else ""))
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    p = _Parser(prog="python -m fer_core", description="Explainable facial-emotion workbench",
                epilog=EXIT_STATUSES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action=_VersionAction, version=__version__)
    sub = p.add_subparsers(metavar="COMMAND", dest="command")

    s = sub.add_parser("predict", help="AUs and an explained emotion for each face in images (a CNN, ensemble or "
                       "Teachable Machine model: its emotion and probabilities, without reasons) "
                       "(--json: one object for one image, a list for several; --jsonl: one line per image), "
                       "or for each row of an AU table (--au-table)")
    s.add_argument("images", nargs="*", help="image files; one that cannot be read or has no face is said, the rest "
                   "are done")
    s.add_argument("--au-table", help="instead of images: an AU table (extract's, of a folder or a long video, or "
                   "OpenFace's); every row's emotion, probabilities and AU contributions go to --out, no image "
                   "is read again (an AU model only)")
    s.add_argument("--out", help="with --au-table: the table to write (.csv, .csv.gz or .parquet)")
    s.add_argument("--model", default=DEFAULT_MODEL,
                   help="the model that answers: an AU model or an AU-bottleneck network explain in AUs; a CNN, an "
                        "ensemble or a Teachable Machine model give emotion and probabilities only (manifest name or "
                        f"file path; default: {DEFAULT_MODEL})")
    s.add_argument("--top", type=_positive_int, default=3, help="how many AUs to give as reasons (default: 3)")
    s.add_argument("--crops", action="store_true", help=CROPS_HELP)
    shape = s.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help=JSON_HELP)
    shape.add_argument("--jsonl", action="store_true",
                       help="JSON Lines on stdout: one object per image, in the order given, the same shape for one "
                            "image or many (what a shell glob matched does not change it)")
    s.set_defaults(func=cmd_predict)

    s = sub.add_parser("extract", help="AU table (CSV, CSV.gz or Parquet by extension) of a folder of images "
                                       "and videos, or of a video (MP4, MOV, AVI, WebM)",
                       epilog="Progress bars show on a terminal; FER_PROGRESS=1 keeps them when stderr goes to a file.")
    s.add_argument("folder", help="a folder of images (and videos), or a video file; a video gives one row per "
                                  "sampled frame and face (time_s)")
    s.add_argument("--fps", type=float, default=None,
                   help="videos, alone or in the folder: frames measured per second of video, by their time, above 0 "
                        "and at most 60 (default: 10)")
    s.add_argument("--out", required=True, help=TABLE_OUT_HELP)
    s.add_argument("--backend", choices=("mediapipe", "openface-docker"), default="mediapipe",
                   help="mediapipe: the embedded face mesh; openface-docker: OpenFace 2 in Docker (default: mediapipe)")
    s.add_argument("--workers", type=_positive_int, default=None,
                   help="processes (default: up to 2); with --engine ray, measuring actors (default: one per CPU)")
    s.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: worker processes here; ray: a Ray Data pipeline, resumable (requirements-ray.txt) "
                        "(default: local)")
    s.add_argument("--ray-address", default=None, metavar="ADDRESS",
                   help="with --engine ray: join this cluster (host:6379, auto or ray://...; default: start Ray here)")
    s.add_argument("--classes", default=None,
                   help="only these emotions: six, seven or a comma list (default: every image, labelled or not)")
    s.add_argument("--no-cache", action="store_true", help="recompute even files seen before")
    s.add_argument("--part", type=_part, default=None, metavar="I/N",
                   help="measure only part I of N of the folder's files (a cluster's array job: one part each, "
                        "each to its own --out; the parts' rows together are the whole table, each file in one part)")
    s.add_argument("--crops", action="store_true",
                   help="the images are face crops (e.g. 224 px, the face filling each): face-crop mode, a direct "
                        "pass on the whole image first, then the full search, then the image shrunk and measured as "
                        "one face, where it can see a face that is not there (automatic for images under 160 px, "
                        "e.g. FER2013; the local mediapipe engine, without --mask)")
    s.add_argument("--mask", default=None, metavar="STYLE",
                   help="measure each face under a drawn mask (surgical, white or cloth): masked = 1, hidden AUs empty")
    s.set_defaults(func=cmd_extract)

    s = sub.add_parser("import-openface", help="AU table from OpenFace 2 CSV output (file or folder)")
    s.add_argument("source", help="an OpenFace 2 CSV file, or a folder of them")
    s.add_argument("--out", required=True, help=TABLE_OUT_HELP)
    s.add_argument("--images", help="the image folder OpenFace read (with a folder of CSVs): each CSV joins its "
                   "image, named as extract names it, with its label; an image without a CSV is a no-face row")
    s.set_defaults(func=cmd_import_openface)

    s = sub.add_parser("au-agreement", help="how well two AU tables of the same images agree, per AU (e.g. "
                                            "extract's against import-openface's)")
    s.add_argument("table_a", help="an AU table (extract's, or any the workbench reads)")
    s.add_argument("table_b", help="another AU table of the same images, joined by file name")
    s.add_argument("--out", help="write the per-AU table here (.csv, .csv.gz or .parquet)")
    s.add_argument("--json", action="store_true", help=JSON_HELP)
    s.set_defaults(func=cmd_au_agreement)

    s = sub.add_parser("import-teachable", help="register a Teachable Machine export (zip, folder or model file), "
                                                "as the dashboard's Teachable Machine page saves one")
    s.add_argument("export", help="the export's zip, its folder, or its model file (keras_model.h5, model.json, "
                                  ".tflite) with labels.txt / metadata.json / weights beside it")
    s.add_argument("--name", required=True, help="register in models/manifest.json under this (new) name")
    s.add_argument("--map", action="append", default=[], metavar="CLASS=EMOTION",
                   help="the emotion a class stands for where its name does not say it ('Class 1=happy'); "
                        "'Background=' leaves a class out; repeat for each class (default: read from the class names)")
    s.set_defaults(func=cmd_import_teachable)

    s = sub.add_parser("train-au", help="fit an AU model (logistic regression, the study's MLP or the GAM)")
    s.add_argument("table", help="AU table CSV (this workbench's, or OpenFace output)")
    s.add_argument("--out", required=True, help="model .json to write")
    s.add_argument("--kind", choices=("logreg", "mlp", "gam"), default="logreg",
                   help="logreg: logistic regression; mlp: the study's MLP; gam: additive glass-box (EBM) "
                        "(default: logreg)")
    s.add_argument("--interactions", type=_interactions, default=None,
                   help="gam: AU pairs it may use, a count or a share of the number of AUs "
                        "(default: interpret's, three times as many pairs as AUs, all pairs for 7 AUs or fewer)")
    s.add_argument("--outer-bags", type=_positive_int, default=None,
                   help="gam: bagged boosting fits averaged; fewer fit faster, with rougher shape functions "
                        "(default: interpret's, 14)")
    s.add_argument("--workers", type=_positive_int, default=None,
                   help="gam: bagged fits run at once, in threads (default: up to 2)")
    s.add_argument("--classes", default="six", help=CLASSES_HELP)
    s.add_argument("--class-weight", choices=("none", "balanced"), default="none",
                   help="balanced: weigh each emotion's faces by the inverse of its count (default: none)")
    s.add_argument("--seed", type=_seed, default=0, help="seed of the held-out split and the fit (default: 0)")
    s.add_argument("--holdout", type=_share, default=0.25,
                   help="share of the table held out from fitting for the model's score (default: 0.25, as the "
                        "dashboard's slider)")
    s.add_argument("--group-by", metavar="REGEX", default=None,
                   help="hold out whole participants: a regular expression whose match in each file name (its first "
                        "group, if it has one) names the participant, e.g. '^(P\\d+)' for P07_session2_happy.jpg; "
                        "each one's photos are then all fitted or all held out")
    s.add_argument("--aus", default="all",
                   help="AUs the model may use: all, upper (those a mask leaves visible) or a comma list (AU01,AU04) "
                        "(default: all)")
    s.add_argument("--max-rows", type=_positive_int, default=None,
                   help="fit on at most this many faces, a stratified sample above it (default: 100,000)")
    _add_register_arguments(s)
    s.set_defaults(func=cmd_train_au)

    s = sub.add_parser("evaluate", help="score a model on labelled images or an AU table")
    s.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"manifest name or file path of the model to score (default: {DEFAULT_MODEL})")
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", help="folder: <emotion>/*.jpg or emotion-prefixed names")
    src.add_argument("--au-table", help="AU table CSV with labels (AU models only)")
    s.add_argument("--crops", action="store_true", help=CROPS_EVAL_HELP + "; with --images")
    _add_label_arguments(s)
    s.add_argument("--workers", type=_positive_int, default=None, help="processes measuring faces (default: up to 2)")
    s.add_argument("--no-cache", action="store_true", help=NO_CACHE_EVAL_HELP)
    s.add_argument("--csv", help="with --images: write per-image predictions here (.csv, .csv.gz or .parquet), as "
                   "compare --csv writes them (for an AU table's rows: predict --au-table TABLE --out OUT)")
    s.add_argument("--json", action="store_true", help=JSON_HELP)
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("compare", help="several models on the same labelled images")
    s.add_argument("--images", required=True, help="folder: <emotion>/*.jpg or emotion-prefixed names")
    _add_label_arguments(s)
    s.add_argument("--group-by", metavar="COLUMN", action="append", default=None,
                   help="with --labels: a column of the sheet whose values group the images (the poser's sex, age "
                   "band, stimulus set; at most 10 groups; repeat or comma-separate for several): each model's "
                   "emotion-balanced accuracy per group, the gaps between groups with 95%% intervals and "
                   "Holm-adjusted p, and whether two models' gaps differ; the column goes into --csv too")
    s.add_argument("--cluster-by", metavar="COLUMN", default=None,
                   help="with --group-by: the sheet's column naming who posed each image (a participant or poser "
                   "ID): one person's images are alike, and taken as independent they make the intervals too "
                   "narrow; with it they allow for that (cluster-robust standard errors)")
    s.add_argument("--models", nargs="+", default=None,
                   help="names or files, spaced or comma-separated (default: every model in the manifest)")
    s.add_argument("--classes", default=None,
                   help="emotions scored: six, seven or a comma list (default: those every model predicts)")
    s.add_argument("--csv", help="write per-image predictions here (.csv, .csv.gz or .parquet), as the dashboard's "
                   "download: file relative to --images, label, each model's answer ('no face' where it could not "
                   "judge), whether it was right, and its probability of the labelled emotion")
    s.add_argument("--tables", metavar="DIR", help="write every table of the comparison into this folder as CSV, "
                   "as the dashboard's downloads: compare_predictions, _probabilities, _summary (95%% Wilson "
                   "intervals), _precision_recall_f1, _confusion, _mcnemar (Holm-adjusted), _calibration, "
                   "_calibration_by_answer, _groups and _group_gaps (with --group-by) and _left_out")
    s.add_argument("--report", help="write one self-contained HTML report here (figures, tables, and the faces "
                   "each model got wrong, with their file names)")
    s.add_argument("--no-faces", action="store_true", help="a --report to share outside the study: no face, "
                   "file name or folder of the test set in it")
    s.add_argument("--lang", default="en", choices=["en", "ko"], help="language of the report (default: en)")
    s.add_argument("--crops", action="store_true", help=CROPS_EVAL_HELP)
    s.add_argument("--workers", type=_positive_int, default=None, help="processes measuring faces (default: up to 2)")
    s.add_argument("--no-cache", action="store_true", help=NO_CACHE_EVAL_HELP)
    s.add_argument("--json", action="store_true", help=JSON_HELP)
    s.set_defaults(func=cmd_compare)

    s = sub.add_parser("draw-testset", help="copy a reproducible N-per-emotion test set")
    s.add_argument("source", help="a split folder, e.g. ../shared/datasets/fer2013/val")
    s.add_argument("out", help="a new or empty folder to copy the images into")
    s.add_argument("--per-class", type=_positive_int, default=10, help="images copied of each emotion (default: 10)")
    s.add_argument("--classes", default="six", help=CLASSES_HELP)
    s.add_argument("--seed", type=_seed, default=0,
                   help="which images are drawn; the same seed, the same set (default: 0)")
    s.add_argument("--unlike", action="append", default=[], metavar="FOLDER",
                   help="draw no image that is a byte-for-byte copy of a file in FOLDER, e.g. the training split "
                        "(FER2013 val holds 280 files of train); repeatable (default: none)")
    s.set_defaults(func=cmd_draw_testset)

    s = sub.add_parser("cache", help="the measurement cache (FER_CACHE_DIR): what it holds, or forget a study's "
                       "measurements and the networks' answers on its faces for good")
    s.add_argument("action", nargs="?", choices=("info", "forget", "prune", "clear"), default="info",
                   help="info: where it is and how many measurements and models' answers it holds; forget PATH "
                        "...: the measurements and answers of these files, or of every file in these folders "
                        "(deleted files are no longer there to name: forget before deleting, or clear); prune: "
                        "those an older version of the measuring code made, never used again after an upgrade; "
                        "clear: every measurement and answer (default: info)")
    s.add_argument("paths", nargs="*", help="files or folders (with forget)")
    s.set_defaults(func=cmd_cache)

    s = sub.add_parser("models", help="list the models in models/manifest.json (FER_MODELS_DIR's, where set)")
    s.add_argument("--json", action="store_true", help="print the entries as JSON (a list: name, kind, path, file, "
                   "file_present, classes, metrics, sha256, command, ...) instead of text")
    s.set_defaults(func=cmd_models)

    s = sub.add_parser("register", help="register a model file you already have (a .keras CNN with its .meta.json, "
                                        "an AU model .json, an ensemble) under a name, with its checksum: then "
                                        "every command and page lists it, and a file changed since is refused")
    s.add_argument("model", help="the model file (it stays where it is: keep it there)")
    s.add_argument("--name", required=True, help="the name to list it under (2-63 letters, digits, '-' or '_')")
    s.add_argument("--description", help="what it is, shown with it (e.g. the data it was trained on)")
    s.add_argument("--replace", action="store_true", help="register it in place of a model of that name")
    s.set_defaults(func=cmd_register)

    s = sub.add_parser("unregister", help="take a model out of the manifest (its files are kept, and said)")
    s.add_argument("name", help="the model's name, as `models` lists it")
    s.set_defaults(func=cmd_unregister)

    s = sub.add_parser("mask", help="masked copies of a folder of faces (same layout; failures listed); each JPEG or "
                                    "PNG written is marked as masked, so predict, compare, evaluate and extract read "
                                    "what the mask hides as unknown, and a marked file is not masked again")
    s.add_argument("folder", help="a folder of face images (<emotion>/*.jpg, emotion-prefixed or plain names)")
    s.add_argument("--out", required=True, help="folder to write the masked images to")
    s.add_argument("--style", default="surgical", help=MASK_STYLE_HELP)
    s.add_argument("--seed", type=_seed, default=0,
                   help="varies shade and folds; the same seed, the same masks (default: 0)")
    s.add_argument("--crops", action="store_true", help=CROPS_HELP + " (larger face crops, such as AffectNet's)")
    s.add_argument("--workers", type=_positive_int, default=None, help="processes (default: up to 2)")
    s.set_defaults(func=cmd_mask)

    s = sub.add_parser("mask-report", help="every model on the same faces with and without a mask")
    s.add_argument("--images", required=True, help="folder: <emotion>/*.jpg or emotion-prefixed names")
    _add_label_arguments(s)
    s.add_argument("--models", nargs="+", default=None,
                   help="names or files, spaced or comma-separated (default: every model in the manifest)")
    s.add_argument("--classes", default=None,
                   help="emotions scored: six, seven or a comma list (default: those every model predicts)")
    s.add_argument("--style", default="surgical", help=MASK_STYLE_HELP)
    s.add_argument("--seed", type=_seed, default=0,
                   help="varies shade and folds; the same seed, the same masks (default: 0)")
    s.add_argument("--csv", help="write per-image answers here (.csv, .csv.gz or .parquet), as the Masks page's "
                   "download: file relative to --images, label, each model's answer without and with the mask")
    s.add_argument("--crops", action="store_true", help=CROPS_EVAL_HELP)
    s.add_argument("--workers", type=_positive_int, default=None, help="processes measuring faces (default: up to 2)")
    s.add_argument("--json", action="store_true", help=JSON_HELP)
    s.set_defaults(func=cmd_mask_report)

    _add_cnn_commands(sub)
    return p


def _add_cnn_commands(sub) -> None:
    from .predictors.cnn import PRESETS
    from .predictors.recipe import add_recipe_arguments

    s = sub.add_parser("train-cnn", help="train a CNN on FER2013-style 48x48 images")
    s.add_argument("--data", required=True, help="train folder (Kaggle layout)")
    s.add_argument("--val", help="validation folder (default: none: a share of --data held out, --holdout or "
                   "10%%, chooses the epoch)")
    s.add_argument("--out", required=True, help="model .keras to write")
    s.add_argument("--preset", choices=PRESETS, default="strong",
                   help="architecture: strong (VGG-style, 1.2 M weights), resnet (deeper, residual, 2.9 M), "
                        "original (the study's), tiny (pipeline check) (default: strong)")
    s.add_argument("--epochs", type=_positive_int, default=30,
                   help="at most this many epochs; training stops sooner after 10 without a better one (default: 30)")
    s.add_argument("--batch-size", type=_positive_int, default=64, help=BATCH_HELP)
    s.add_argument("--classes", default="six", help=CLASSES_HELP)
    s.add_argument("--limit-per-class", type=_positive_int, default=None,
                   help="at most this many images per emotion, of the training and of the --val folder (quick runs; "
                        "default: all)")
    s.add_argument("--class-weighting", action="store_true", help="weight classes by inverse frequency")
    s.add_argument("--holdout", type=_share, default=None,
                   help="share of --data held out to choose the best epoch; --val is then scored once at the "
                        "end, never used for a choice (default: --val chooses the epoch)")
    s.add_argument("--init", help="trained CNN that starts the network (manifest name or .keras path, same "
                   "--preset): its trunk and the head of the emotions both class sets share, e.g. cnn-fer2013 "
                   "for a seven-emotion CNN")
    s.add_argument("--learning-rate", type=_positive, default=1e-3, help="Adam's starting rate (default: 1e-3; "
                   "3e-4 suits fine-tuning from --init)")
    s.add_argument("--seed", type=_seed, default=0, help="seed of the held-out split, augmentation and starting "
                   "weights (default: 0; TensorFlow on CPU is still not bit-reproducible)")
    s.add_argument("--max-minutes", type=_positive, default=None, help=MAX_MINUTES_HELP)
    _add_register_arguments(s)
    s.add_argument("--register-anyway", action="store_true",
                   help="with --name: register the network even when it answers one emotion for nearly every image "
                        "or does no better than guessing (otherwise it is kept unregistered, out of Try it and Compare)")
    add_recipe_arguments(s)
    s.set_defaults(func=cmd_train_cnn)

    s = sub.add_parser("train-au-bottleneck", help="train the AU-bottleneck network: pixels -> 17 AUs -> one "
                       "linear layer (explained like the AU logistic regression)")
    s.add_argument("--data", required=True, help="train folder (Kaggle layout)")
    s.add_argument("--val", help="validation folder, scored once at the end (never used for a choice)")
    s.add_argument("--out", required=True, help="model .keras to write (+ .meta.json)")
    s.add_argument("--train-au-table", help="AU table of --data (extract output; default: measure now, cached)")
    s.add_argument("--val-au-table", help="AU table of --val, for the AU fidelity (default: measure now, cached)")
    s.add_argument("--recipe", choices=("joint", "sequential", "independent"), default="joint",
                   help="joint: AU and emotion losses at once; sequential: the AUs first, then the head on the "
                        "network's AUs; independent: the AUs first, then the head on the measured AUs (default: joint)")
    s.add_argument("--lam", type=_non_negative, default=1.0,
                   help="weight of the AU loss against the emotion loss (joint); 0 or more (default: 1)")
    s.add_argument("--init", default="cnn-fer2013", help="CNN whose trunk starts the network: manifest name, "
                   ".keras path, or 'none' (default: cnn-fer2013)")
    s.add_argument("--preset", choices=PRESETS, default="strong",
                   help="trunk architecture, as --init's (default: strong)")
    s.add_argument("--tap", choices=("dense", "gap"), default="dense",
                   help="AU units read the CNN's last hidden layer (dense) or its pooled features (gap) "
                        "(default: dense)")
    s.add_argument("--epochs", type=_whole_number, default=10,
                   help="fine-tuning epochs after the warm start; 0 keeps the trunk frozen (the warm start is the "
                        "model) (default: 10)")
    s.add_argument("--batch-size", type=_positive_int, default=64, help=BATCH_HELP)
    s.add_argument("--learning-rate", type=_positive, default=1e-4,
                   help="starting learning rate of the fine-tuning (default: 1e-4)")
    s.add_argument("--no-warm-start", action="store_true",
                   help="start the AU units and head at random instead of ridge / logistic fits on the trunk")
    s.add_argument("--classes", default="six", help=CLASSES_HELP)
    s.add_argument("--limit-per-class", type=_positive_int, default=None,
                   help="at most this many images per emotion, of --data and of --val (quick runs; default: all)")
    s.add_argument("--no-augment", action="store_true", help="no flips, rotations, shifts or zoom")
    s.add_argument("--holdout", type=_share, default=0.1,
                   help="share of --data held out from fitting to choose the best epoch (default: 0.1)")
    s.add_argument("--seed", type=_seed, default=0, help="seed of the held-out split, augmentation and starting weights "
                   "(default: 0)")
    s.add_argument("--max-minutes", type=_positive, default=None, help=MAX_MINUTES_HELP)
    _add_register_arguments(s)
    add_recipe_arguments(s, schedule="cosine", soft_labels=False)
    s.set_defaults(func=cmd_train_au_bottleneck)

    s = sub.add_parser("ensemble", help="register the mean of several pixel models (CNNs, AU bottleneck, "
                       "Teachable Machine) as one model, optionally scored on a labelled folder")
    s.add_argument("--models", required=True, help="comma list of manifest names, e.g. "
                   "cnn-fer2013,au-bottleneck-fer2013 (members are found by name: register a model file first)")
    s.add_argument("--name", required=True, help="register in models/manifest.json under this name")
    s.add_argument("--classes", default=None, help="emotions it predicts (default: those every member predicts)")
    s.add_argument("--val", help="labelled folder to score it on (its accuracy goes into the manifest)")
    s.add_argument("--workers", type=_positive_int, default=None, help="processes measuring faces (default: up to 2)")
    s.set_defaults(func=cmd_ensemble)

    s = sub.add_parser("export-lite", help="(re)make the TensorFlow Lite twin of a CNN or AU-bottleneck model, "
                       "so it predicts without TensorFlow (training writes it itself)")
    s.add_argument("--model", required=True, help="manifest name (e.g. cnn-fer2013) or .keras path")
    s.set_defaults(func=cmd_export_lite)


# -- commands ------------------------------------------------------------------------------
def cmd_predict(args) -> int:
    from .emotions import CLOSE_CALL_MARGIN
    from .images import (
        FIRST_FRAME_ONLY,
        VIDEO_SUFFIXES,
        LabeledImage,
        has_more_frames,
        load_image,
        looks_like_face_crop,
        shown_size,
    )
    from .masks import drawn_mask_of
    from .measure.extract import default_workers, measure_items
    from .pipeline import (
        NO_FACE_MESSAGE,
        face_order,
        faces_from_measurements,
        is_face_crop,
        no_face_message,
        whole_crop_face,
        why_no_face_crop,
    )
    from .predictors.registry import load_predictor

    if args.au_table or args.out:
        if args.crops:
            raise FerError(f"--crops is for image files: {CROPS_NOT_FOR_TABLES}")
        return _predict_table(args)
    if not args.images:
        raise FerError("predict needs image files, or --au-table TABLE --out OUT")
    predictor = load_predictor(args.model)  # a CNN, an ensemble or a Teachable Machine model answers without reasons
    results: list[dict | None] = [None] * len(args.images)
    status = 0
    from .provenance import models_sha256

    sha256 = next(iter(models_sha256([args.model]).values()), None)  # the name alone may be another file later
    # Faces are measured in worker processes first (a native crash, or a file that is not an image,
    # costs that image only); then each photo is decoded here just for its own faces and dropped,
    # so a few hundred phone photos do not all sit in memory at once.
    measured = measure_items([LabeledImage(Path(p), None) for p in args.images],
                             workers=min(default_workers(), len(args.images)) or 1, crops=args.crops)
    for i, source in enumerate(args.images):
        path = printable(source)
        found = measured.get(i, "not measured")
        if isinstance(found, str) and Path(source).suffix.lower() in VIDEO_SUFFIXES:
            found = (f"a video: measure it with extract {shlex.quote(path)} --out au.csv, then predict --au-table au.csv "
                     "--out emotions.csv")
        try:
            if isinstance(found, str):
                raise FerError(f"{path}: {found}")
            rgb = load_image(source, name=path)
            masked = drawn_mask_of(source) is not None  # a file mask wrote
            faces = faces_from_measurements(rgb, found, predictor, top=args.top, masked=masked)
            whole = (not faces and predictor.inputs == "pixels" and is_face_crop(rgb, args.crops)
                     and why_no_face_crop(rgb) is None)  # a blank picture: no emotion to explain
            if whole:  # as evaluate and compare score it: the crop is the face
                faces = [whole_crop_face(rgb, predictor, args.top, masked)]
        except FerError as exc:
            results[i] = {"file": path, "error": one_line(exc), "faces": []}
            status = 2
            continue
        # boxes in the file's own pixels (a photo over 4,096 px was decoded smaller), and faces
        # numbered left to right as Try it numbers them
        width, height = shown_size(source) or (rgb.shape[1], rgb.shape[0])
        scale = width / rgb.shape[1]
        entry_out = {"file": path, "model": predictor.name, "model_sha256": sha256, "width": int(width), "height": int(height),
                     "faces": [{"face": number, **faces[k].to_dict(scale)}
                               for number, k in enumerate(face_order(faces), start=1)]}
        if whole:
            entry_out["note"] = (f"no face was measured in this face crop: {predictor.name} answered the whole crop, "
                                 "as evaluate and compare score it; its measured AUs are unknown")
        elif faces and has_more_frames(source):
            entry_out["note"] = FIRST_FRAME_ONLY
        if not faces:  # the advice for a photo; a face crop the search missed is measured with --crops
            said = no_face_message(rgb, source)
            entry_out["error"] = f"{path}: " + (said if said != NO_FACE_MESSAGE
                                                 else CROP_NO_FACE_MESSAGE if not args.crops
                                                 and looks_like_face_crop(source) else NO_FACE_MESSAGE)
            status = 2  # no answer for it, as for a file that could not be read
        results[i] = entry_out
    if args.json or args.jsonl:
        for r in results:  # in the JSON, and said on stderr as without --json: a script sees why it failed
            if r.get("error"):
                print(r["error"], file=sys.stderr)
        if args.jsonl:
            print("\n".join(json.dumps(r, default=_jsonable) for r in results))
        else:
            print(json.dumps(results if len(results) > 1 else results[0], indent=1, default=_jsonable))
        return status
    for r in results:
        if r.get("error"):
            print(r["error"], file=sys.stderr)  # an error, one line naming the file, on stderr as every error
            continue
        if r.get("note"):
            print(f"note: {r['note']}", file=sys.stderr)
        for f in r["faces"]:
            probs = ", ".join(f"{k} {v:.2f}" for k, v in sorted(f["probabilities"].items(), key=lambda kv: -kv[1]))
            aus = " ".join(f"{k[:4]}={v:.1f}" for k, v in f["aus"].items() if v is not None)
            unknown = [k[:4] for k, v in f["aus"].items() if v is None]  # hidden by a drawn mask, or none measured
            if unknown:
                aus += (f"; unknown (hidden by the mask): {' '.join(unknown)}" if aus else "none measured")
            print(f"{r['file']} face {f['face']} box {[round(v) for v in f['box']]} conf {f['confidence']:.2f}"
                  # no detector's score: measured whole, as a picture without a face would be too
                  + (" (upside down: measured in the photo turned over)" if f.get("turned_upright") else "")
                  + ((" (low confidence: the detector is unsure this is a face)" if f.get("low_confidence") else "")
                     if f["confidence"] else " (no face measured: the crop was given whole to the model)"
                     if r.get("note") not in (None, FIRST_FRAME_ONLY)
                     else " (no face detected: the whole picture was measured as one face)"))
            print(f"  {f['sentence'] if 'sentence' in f else f['emotion'] + ' (this model gives no reasons)'}\n"
                  f"  probabilities: {probs}")
            if f.get("close_call"):
                print(f"  a close call: {f['runner_up']} is within {CLOSE_CALL_MARGIN:.2f} of {f['emotion']}; "
                      "the model can hardly tell the two apart here")
            if "aus_network" in f:  # the AU-bottleneck network explains with the AUs it reads itself
                network = " ".join(f"{k[:4]}={v:.1f}" for k, v in f["aus_network"].items())
                print(f"  AUs the network read (the sentence's): {network}\n  AUs measured: {aus}")
            else:
                print(f"  AUs: {aus}")
    return status


def _refuse_writing_over(source: str, target: Path) -> None:
    """--out naming the table being read would replace what was measured with what was made of it."""
    with contextlib.suppress(OSError):
        if target.exists() and os.path.samefile(source, target):
            raise FerError(f"{printable(str(target))}: --out is the table being read; choose another file")


def _predict_table(args) -> int:
    """``predict --au-table``: an AU model's answer for every row of a table, written to --out."""
    from . import au_table
    from .evaluation.compare import au_source_note, table_sources, zero_to_one_note
    from .pipeline import masked_note, predict_table
    from .predictors.registry import load_predictor

    if args.images and not args.au_table:
        raise FerError("predict IMAGE --out: --out is for --au-table's answers; an image's answers go to standard "
                       "output (--jsonl > answers.jsonl, one line per image); a folder's: extract FOLDER --out au.csv, "
                       "then predict --au-table au.csv --out emotions.csv (or compare --csv for a labelled folder)")
    if args.images or not args.au_table or not args.out or args.json or args.jsonl:
        raise FerError("predict --au-table TABLE --out OUT: the table's rows are the faces (no images), and the "
                       "answers go to --out (not --json or --jsonl)")
    _refuse_writing_over(args.au_table, fileio.table_output_path(args.out, "--out"))  # said before the work
    predictor = load_predictor(args.model)
    table = _read_au_table(args.au_table)
    answers = predict_table(table, predictor, top=args.top, progress=_tqdm_progress("faces"))
    target = fileio.write_frame(answers, args.out)
    judged = answers["emotion"].notna()
    counts = answers.loc[judged, "emotion"].value_counts()
    print(f"{len(answers):,} rows, {int(judged.sum()):,} faces judged by {predictor.name} -> {printable(str(target))}"
          + (": " + ", ".join(f"{e} {n:,}" for e, n in counts.items()) if len(counts) else ""),
          file=sys.stderr)  # as extract's and import-openface's summaries: the result is the file
    for note in filter(None, [masked_note(answers["unknown_aus"]), zero_to_one_note(table),
                              au_source_note(predictor, table_sources(table))]):
        print(f"note: {note}", file=sys.stderr)
    invalid = int(answers["reason"].astype(str).str.startswith("not judged: AU values").sum())
    if invalid:
        print(f"note: {_counted(invalid, 'row')} not judged, {au_table.AU_INVALID} (said in their reason)",
              file=sys.stderr)
    return 0


def cmd_extract(args) -> int:
    from .emotions import parse_classes
    from .images import scan_images
    from .measure.extract import MeasureCache

    MeasureCache.gave_up.clear()  # this run's cache, said in its summary

    fileio.table_output_path(args.out, "--out")  # a bad --out is said before measuring, not after
    from .measure.video import is_video

    if is_video(args.folder) and not Path(args.folder).is_dir():
        if args.engine == "ray" or args.crops or args.classes:
            raise FerError(f"{args.folder}: --engine ray, --crops and --classes are for folders of images, not a video")
        return _extract_video(args)
    if Path(args.folder).is_file():  # a video of another format (MKV, M4V) is not a folder either
        raise FerError(f"{args.folder}: not a folder of images or a video this reads; give a folder, or a video "
                       "file (MP4, MOV, AVI or WebM; convert others to MP4)")
    if args.engine == "ray":
        _ray_options_usable(args)
    elif args.ray_address:
        raise FerError("--ray-address needs --engine ray")
    if args.crops and (args.engine == "ray" or args.backend != "mediapipe" or args.mask):
        raise FerError("--crops works with the local mediapipe engine and without --mask")
    if args.mask and args.backend != "mediapipe":  # OpenFace would measure the faces unmasked
        raise FerError("--mask draws masks for the embedded MediaPipe; use --backend mediapipe, or mask the "
                       "images first (python -m fer_core mask) and measure those with OpenFace")
    listing = scan_images(args.folder, parse_classes(args.classes, least=1) if args.classes else None)
    # said in the summary: images of emotions --classes leaves out are not measured
    other_emotions = len(scan_images(args.folder).items) - len(listing.items) if args.classes else 0
    items = listing.items
    if not items and not listing.skipped:
        if other_emotions:
            raise FerError(f"{args.folder}: no images of {args.classes} (--classes); its {_counted(other_emotions, 'image')} "
                           "are of other emotions or unlabelled")
        raise FerError(f"{args.folder}: no images found; expected <emotion>/*.jpg, emotion-prefixed file names or plain images")
    from .measure.video import DEFAULT_FPS, check_fps, videos_apart, videos_in

    videos = videos_in(listing.skipped)
    videos_kept_out = _videos_kept_out(args)
    if args.fps is not None and (not videos or videos_kept_out):
        raise FerError(f"{args.folder}: --fps is for videos (MP4, MOV, AVI or WebM), " + (
            f"and with {videos_kept_out} a folder's videos are passed over" if videos
            else _why_no_video_is_read(args.folder, listing.skipped, args.fps)))
    check_fps(args.fps)  # before the images are measured, not as every video's failure after them
    measured_videos, skipped = videos_apart(listing.skipped, measured=not videos_kept_out)
    if args.part:  # each file in one part, by its name alone: the same whatever the listing's order
        from .images import relative_file

        items = _in_part(items, args.part, lambda it: relative_file(it.path, args.folder))
        measured_videos = _in_part(measured_videos, args.part, lambda v: v.file)
        skipped = _in_part(skipped, args.part, lambda f: f.file)
        print(f"part {args.part[0]} of {args.part[1]}: {_counted(len(items), 'image')}"
              + (f", {_counted(len(measured_videos), 'video')}" if measured_videos else ""), file=sys.stderr)
    fps = DEFAULT_FPS if args.fps is None else args.fps
    target = fileio.output_path(args.out)
    with _output_held(target, local=args.engine != "ray") as locked:
        return _extract_folder(args, items, measured_videos, videos_kept_out, skipped, fps, other_emotions, locked)


def _part(text: str) -> tuple[int, int]:
    """``--part 3/10``: (3, 10), part 3 of 10, counted from 1."""
    try:
        part, parts = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not I/N (e.g. 3/10: part 3 of 10)") from None
    if not 1 <= part <= parts:
        raise argparse.ArgumentTypeError(f"{text!r}: the part is counted from 1 to N (e.g. 1/10 to 10/10)")
    return part, parts


def _in_part(files, part: tuple[int, int], name_of) -> list:
    """The files of ``part`` (I, N): a file's part is set by a hash of its name relative to the
    folder, so every file is in exactly one part whatever order the listing gives."""
    import hashlib

    i, n = part
    return [f for f in files
            if int.from_bytes(hashlib.sha256(str(name_of(f)).encode("utf-8", "surrogateescape")).digest()[:8], "big") % n
            == i - 1]


@contextlib.contextmanager
def _output_held(target: Path, local: bool = True) -> Iterator[bool]:
    """The local engine's hold on its output's lock (``one_run``), from before measuring until the
    table is written: another run writing it (Ray or local) is refused at once, where two local runs
    into one --out both said they wrote it and one table was lost. Yields whether it is held (not
    where the output's folder does not exist yet: the write takes the lock then)."""
    if not (local and target.parent.is_dir()):
        yield False
        return
    from .measure.ray_engine import one_run

    with one_run(target):
        yield True


def _extract_folder(args, items, measured_videos, videos_kept_out, skipped, fps, other_emotions, locked: bool) -> int:
    """``extract DIR``'s measuring and writing, under the output's lock where ``locked``."""
    from .measure.video import extract_videos

    took: list[tuple[int, str, float]] = []  # (count, what, seconds) of the local engine's measuring
    if args.backend == "openface-docker":
        from .measure.openface_docker import OpenFaceDocker

        table = OpenFaceDocker().extract(items, progress=_tqdm_progress("OpenFace"), root=args.folder,
                                         skipped=skipped)
    elif args.engine == "ray":
        from .measure.ray_engine import extract_on_ray, parts_dir

        try:
            run = extract_on_ray(items, args.out, root=args.folder, skipped=skipped,
                                 address=args.ray_address, workers=args.workers or None, classes=args.classes,
                                 progress=_tqdm_progress("images"))
        except KeyboardInterrupt as exc:  # the rows measured so far are kept: say how to go on
            parts = parts_dir(fileio.output_path(args.out))
            if not any(parts.glob("*.parquet")):
                raise
            _end_progress_bars()
            print(f"interrupted; the images measured so far are kept in {printable(str(parts))}: the same command "
                  "measures only the rest", file=sys.stderr)
            return _interrupted_status(exc)
        table = run.table
        print(f"Ray: {_counted(run.measured, 'image')} measured by {_counted(run.workers, 'actor')} in {run.seconds:.1f} s"
              + (f"; {run.resumed} measured before (in {printable(args.out)} or its .parts folder), skipped"
                 if run.resumed else "")
              + (f"; {_counted(run.changed, 'image')} changed since {'it was' if run.changed == 1 else 'they were'} "
                 "measured, measured again" if run.changed else "")
              + (f"; the rows of {_counted(run.dropped, 'image')} no longer in {printable(args.folder)} left out"
                 if run.dropped else ""), file=sys.stderr)
    else:
        from .measure.extract import default_workers, extract_table

        start = time.perf_counter()
        bar, at_start = _tqdm_progress("images"), []

        def progress(done: int, total: int) -> None:
            at_start[:] = at_start or [done]  # the first call's count: those found in the cache (or unreadable)
            bar(done, total)

        table = extract_table(items, workers=args.workers or default_workers(), use_cache=not args.no_cache,
                              progress=progress, root=args.folder, skipped=skipped, mask=args.mask, crops=args.crops)
        ready = at_start[0] if at_start and not args.mask else 0  # masked faces are measured afresh
        took = [(len(items), "image", time.perf_counter() - start, ready)] if items else []
        if measured_videos:
            from . import au_table

            start = time.perf_counter()
            clips = extract_videos(measured_videos, fps=fps, workers=args.workers or default_workers(),
                                   use_cache=not args.no_cache, reading=_tqdm_progress("videos read"),
                                   progress=_tqdm_progress("video chunks"))
            from .measure.video import frame_rows

            frames = clips[frame_rows(clips) & clips["time_s"].notna()].groupby(["file", "time_s"]).ngroups
            took.append((frames, "frame", time.perf_counter() - start))
            table = au_table.concat([table, clips])
    if args.engine != "ray":  # the Ray engine has written it (and removed its part files)
        _write_local_table(table, args.out, locked)
    _say_extracted(table, args, measured_videos, videos_kept_out, fps, other_emotions)
    if not (args.crops or args.mask or args.engine == "ray" or args.backend != "mediapipe"):  # --crops works alone
        from .measure.extract import crop_like_no_face

        _suggest_crops(crop_like_no_face(table, args.folder))
    if took:  # the local engine's speed (Ray says its own)
        _say_took(took, args.no_cache)
    return _no_face_status(table, args.out)


def _no_face_status(table, out: str) -> int:
    """extract's exit status: 2 when no face at all was measured, so that a pipeline stops there
    rather than at the next step's "needs at least 10 usable faces"; the table is still written."""
    if len(table) and not int(table["success"].sum()):
        print(f"error: no face was measured; {printable(out)} says why for each file", file=sys.stderr)
        return 2
    return 0


def _say_took(took: list[tuple], no_cache: bool) -> None:
    """How long extraction took and its speed: (count, "image" or "frame", seconds[, how many of
    them were ready before it: cached or unreadable]) per part, the speed of those measured (a
    rerun after an interrupt counted the cached ones as measured); the cache's part unsaid where the
    cache could not be used (its warning said so)."""
    from .measure.extract import MeasureCache

    def said(n: int, what: str, seconds: float, ready: int = 0) -> str:
        if not ready:
            return f"{seconds:.1f} s for {_counted(n, what)} ({n / max(seconds, 1e-9):.1f} {what}s/s)"
        if ready == n:  # nothing measured: no speed to give
            return f"{seconds:.1f} s for {_counted(n, what)}, all from the cache or unreadable"
        return (f"{seconds:.1f} s for {_counted(n, what)}: {n - ready:,} measured ({(n - ready) / max(seconds, 1e-9):.1f} "
                f"{what}s/s), {ready:,} from the cache or unreadable")

    cached = not no_cache and not MeasureCache.gave_up
    print("took " + "; ".join(said(*part) for part in took)
          + ("; cached ones are not measured again (--no-cache measures every one)" if cached else ""),
          file=sys.stderr)


def _why_no_video_is_read(folder: str, skipped, fps: float) -> str:
    """What ``--fps`` on a folder without a video it reads is told: a folder per participant
    (p01/session.mp4) is no emotion's, so its videos are passed over; each is extracted alone."""
    from .images import OTHER_VIDEO, videos_inside

    folders = [s.file for s in skipped if s.file.endswith("/") and videos_inside(Path(folder) / s.file)]
    if not folders:
        other = [s.file for s in skipped if s.reason == OTHER_VIDEO]
        return (f"and none is read here: {other[0]} is of a format not read; convert it to MP4" if other
                else "and this folder holds none")
    others = f" and {_counted(len(folders) - 1, 'other folder')}" if len(folders) > 1 else ""
    are, lie, each = ("are", "lie", "each") if others else ("is", "lies", "it")
    return (f"and none is read here: {folders[0]}{others} {are} not named after an emotion or {lie} too deep; "
            f"extract {each} on its own (extract {shlex.quote(str(Path(folder) / folders[0]))} --fps {fps:g})")


def _videos_kept_out(args) -> str:
    """The option that keeps a folder's videos from being measured ("" when none does): videos
    are measured by the local engine's MediaPipe, unmasked, frame by frame."""
    for given, option in ((args.engine == "ray", "--engine ray"), (args.backend != "mediapipe", f"--backend {args.backend}"),
                          (args.mask, "--mask"), (args.crops, "--crops")):
        if given:
            return option
    return ""


def _say_extracted(table, args, measured_videos, videos_kept_out: str, fps: float, other_emotions: int = 0) -> None:
    """extract's summary of a folder: images and faces, its videos' frames and faces, what was
    passed over (``other_emotions``: images --classes left out) and the commonest reasons of failure."""
    from . import au_table
    from .measure.video import frame_rows

    of_video = table["file"].isin({v.file for v in measured_videos})
    folders = au_table.passed_over_folders(table)  # a row each, said below with its reason, but no image
    videos = au_table.passed_over_videos(table)  # likewise: "2 images, 0 faces" was two videos
    photos = table[~folders & ~videos & ~of_video]
    # images, not rows: a face left bare by --mask is a failure row of an image whose other face counts
    failed = int((photos.groupby("file", sort=False)["success"].max() == 0).sum())
    said = [f"{_counted(photos['file'].nunique(), 'image')}, {_counted(int(photos['success'].sum()), 'face')}"]
    if measured_videos:
        clips = table[of_video]
        frames = clips[frame_rows(clips) & clips["time_s"].notna()]
        said = said if len(photos) else []  # a folder of videos alone: "0 images, 0 faces" says nothing
        said.append(f"{_counted(len(measured_videos), 'video')}: {_counted(len(frames.groupby(['file', 'time_s'])), 'frame')} "
                    f"at {fps:g} fps, {_counted(int(clips['success'].sum()), 'face')}")
    # with --mask, a face the mask could not be placed on is not measured either: said among the reasons
    line = f"{'; '.join(said)} -> {printable(args.out)}"
    if len(photos) or not measured_videos:
        line += f"; {failed:,} without a face " + ("measured under a mask" if args.mask else "or unreadable")
    if measured_videos:
        unreadable = int(clips.loc[clips["time_s"].isna(), "file"].nunique())
        stretches = int((~frame_rows(clips) & clips["time_s"].notna()).sum())  # as extract VIDEO says them
        line += (f"; {_counted(int((frames['success'] == 0).sum()), 'frame')} of videos without a face"
                 + (f"; {stretches} {'stretch' if stretches == 1 else 'stretches'} of videos without frames"
                    if stretches else "")
                 + (f"; {_counted(unreadable, 'video')} unreadable" if unreadable else ""))
    if folders.any():
        line += f"; {_counted(int(folders.sum()), 'folder')} passed over"
    if len(photos) and "label" in photos.columns:
        labels = photos.groupby("file", sort=False)["label"].first()
        unlabelled = labels.index[labels.isna()].tolist()
        if 0 < len(unlabelled) < len(labels):  # a labelled folder with some names that name no emotion: said
            shown = ", ".join(printable(str(f)) for f in unlabelled[:3]) + (" …" if len(unlabelled) > 3 else "")
            line += (f"; {_counted(len(unlabelled), 'image')} without a label ({shown}: the folder or file name names "
                     "no emotion; put them in emotion folders or name them like happy_001.jpg or P07_happy.jpg)")
    if other_emotions:
        line += f"; {_counted(other_emotions, 'image')} of other emotions or unlabelled left out (--classes)"
    from .images import OTHER_VIDEO

    other_format = videos & table["reason"].astype(str).eq(OTHER_VIDEO)
    if (videos & ~other_format).any():
        line += (f"; {_counted(int((videos & ~other_format).sum()), 'video')} passed over ({videos_kept_out} is for "
                 f"images; extract {shlex.quote(args.folder)} without it measures them too, or extract VIDEO --fps 10 "
                 "each)")
    if other_format.any():
        line += f"; {_counted(int(other_format.sum()), 'video')} of another format passed over (convert to MP4)"
    print(line, file=sys.stderr)
    _print_reasons(table[table["success"] == 0])


def _write_local_table(table, out: str, locked: bool = False) -> None:
    """``extract --out`` of the local engine: the table, and no Ray record or parts left beside it
    (these rows are no Ray run's, so a later Ray run must not resume them). Written under the
    output's lock: a Ray run writing it meanwhile finished after this one and was then refused
    as the local engine's (checked before measuring too, so a run is refused before its work)."""
    import shutil

    from . import au_table
    from .measure.ray_engine import one_run, parts_dir, record_path

    target = fileio.output_path(out)
    with contextlib.nullcontext() if locked else one_run(target):  # ``locked``: this run holds it already
        au_table.write(table, out)
        record_path(target).unlink(missing_ok=True)
        shutil.rmtree(parts_dir(target), ignore_errors=True)  # an interrupted Ray run's, replaced by these rows


def _read_au_table(path: str):
    """An AU table to score, train on or predict: read, with a note on stderr when its numeric
    labels were taken for the original study's codes (a FER2013 table would be mislabelled)."""
    from . import au_table

    table = au_table.read(path)
    if au_table.read_with_study_codes(table):
        print(f"note: {printable(path)}: {au_table.STUDY_CODES_NOTE}", file=sys.stderr)
    return table


def _counted(n: int, noun: str) -> str:
    """"1 image", "2,000 images"."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


NAMED_FILES = 3  # a reason of at most this many files names them


def _print_reasons(failed, name_single: bool = True) -> None:
    """The five commonest reasons of failure rows, with their counts, and how many rows the
    others cover; with ``name_single``, a reason of one row names its file (a folder passed over,
    the one corrupt photo)."""
    counts = failed["reason"].value_counts()
    for reason, n in counts.head(5).items():
        files = failed.loc[failed["reason"] == reason, "file"].astype(str)
        if n == 1 and name_single:
            print(f"  {files.iloc[0]}: {reason}", file=sys.stderr)
        elif n <= NAMED_FILES and name_single and files.is_unique:  # which recordings to copy again (a file each,
            print(f"  {n} x {reason}: {', '.join(files)}", file=sys.stderr)  # not a video's frames)
        else:
            print(f"  {n} x {reason}", file=sys.stderr)
    if len(counts) > 5:
        print(f"  and {_counted(int(counts.iloc[5:].sum()), 'row')} with {len(counts) - 5:,} other reason(s) "
              "(the table's reason column has them all)", file=sys.stderr)


def _extract_video(args) -> int:
    """``extract video.mp4 --fps 10``: a row per sampled frame and face, with ``time_s``."""
    from .measure.extract import default_workers
    from .measure.video import DEFAULT_FPS, extract_video, frame_rows, probe_video

    if args.backend != "mediapipe" or args.mask:
        raise FerError(f"{args.folder}: videos are measured with the embedded MediaPipe, without --mask or --backend")
    fps = DEFAULT_FPS if args.fps is None else args.fps
    own = probe_video(args.folder).fps  # a bad path or file is said as typed ("clips/a.mp4: not a file")
    start = time.perf_counter()
    with _output_held(fileio.output_path(args.out)) as locked:
        table = extract_video(args.folder, fps=fps, workers=args.workers or default_workers(),
                              name=Path(args.folder).name, progress=_tqdm_progress("video chunks"),
                              use_cache=not args.no_cache)
        _write_local_table(table, args.out, locked)
    decoded = frame_rows(table)  # rows of stretches never decoded are no frames
    frames = table.loc[decoded, "time_s"].nunique()
    failed = table[table["success"] == 0]
    unread = int((~decoded).sum())
    rate = f"{fps:g} fps"
    if 0 < own < fps:  # more than the video has on average: each of its frames taken once
        rate += f" (the video has {own:.3g} fps on average: at most every frame)"
    print(f"{_counted(frames, 'frame')} at {rate}, {_counted(int(table['success'].sum()), 'face')} -> "
          f"{printable(args.out)}; {_counted(len(failed) - unread, 'frame')} without a face or unreadable"
          + (f"; {unread} {'stretch' if unread == 1 else 'stretches'} of the video without frames" if unread else ""),
          file=sys.stderr)
    _print_reasons(failed, name_single=False)  # every row is the video: its times are in the table
    if frames:
        _say_took([(frames, "frame", time.perf_counter() - start)], args.no_cache)
    return _no_face_status(table, args.out)


def _ray_options_usable(args) -> None:
    """The Ray engine measures with MediaPipe, unmasked, without the local cache: say so up front."""
    from .measure.ray_engine import INSTALL_HINT, available

    if args.backend != "mediapipe":
        raise FerError("--engine ray measures with MediaPipe; use --engine local with --backend openface-docker")
    if args.mask:
        raise FerError("--mask works with --engine local only")
    if not available():
        raise FerError(INSTALL_HINT)


def cmd_import_teachable(args) -> int:
    from .i18n import emotion_label
    from .manifest import read_manifest, validate_model_name
    from .predictors.teachable import load_upload, register_teachable, upload_from_path

    mapping: dict[str, str | None] = {}
    for pair in args.map:
        label, sep, emotion = pair.partition("=")
        if not sep or not label.strip():
            raise FerError(f"--map {pair!r}: write CLASS=EMOTION ('Class 1=happy'), or CLASS= to leave it out")
        mapping[label.strip()] = emotion.strip() or None
    validate_model_name(args.name, read_manifest(strict=True))  # before loading TensorFlow
    upload = upload_from_path(args.export)
    predictor = load_upload(upload, args.name)
    if mapping:
        predictor = predictor.remapped(mapping)
    predictor.check_usable()
    for label, emotion in predictor.mapping.as_dict().items():
        print(f"  {label} -> {emotion_label(emotion) if emotion else 'left out (not an emotion)'}")
    entry = register_teachable(upload, predictor, args.name, command=args.command_line)
    print(f"registered {printable(upload.source)} as {entry.name!r} in {_manifest_shown()} "
          f"({', '.join(predictor.classes)}; {predictor.format})")
    return 0


def cmd_import_openface(args) -> int:
    from . import au_table
    from .measure.openface_csv import import_openface_dir, label_from_path

    _refuse_writing_over(args.source, fileio.table_output_path(args.out, "--out"))
    _return_freed_memory()
    source = Path(args.source)
    if args.images and not source.is_dir():
        raise FerError("--images joins a folder of OpenFace's per-image CSVs to the images; give the folder")
    if args.images and not Path(args.images).is_dir():
        raise FerError(f"{printable(args.images)}: not a folder; give the image folder OpenFace read")
    if source.is_dir():
        table = import_openface_dir(source, labels_from=args.images, skip=args.out)
    else:
        table = _read_au_table(str(source))
        named = label_from_path(Path(source.name))  # one file is labelled by its name, as in a folder
        if named and table["label"].isna().all():
            table["label"] = named
    au_table.write(table, args.out)
    print(f"{len(table)} rows -> {printable(args.out)}", file=sys.stderr)
    return 0


def cmd_au_agreement(args) -> int:
    from .measure.agreement import au_agreement

    if args.out:
        fileio.table_output_path(args.out, "--out")
    agreement = au_agreement(_read_au_table(args.table_a), _read_au_table(args.table_b))
    if several := agreement.attrs.get("several_faces"):
        print(f"pictures with several faces: {several:,}; only each one's first face is compared (extract's "
              "largest, OpenFace's first listed), which may be another person in the other table: a table "
              "without face boxes cannot pair them", file=sys.stderr)
    if same := agreement.attrs.get("same_name"):
        print(f"files that differ only in their image ending (a.jpg, a.png): {same:,}; the first of each is "
              "compared (OpenFace names its CSV by the stem alone)", file=sys.stderr)
    if by_box := agreement.attrs.get("paired_by_box"):
        print(f"pictures with several faces paired by box: {by_box:,} ({agreement.attrs['faces_paired_by_box']:,} "
              f"faces paired; {agreement.attrs['faces_unpaired']:,} found in one table only, left out)", file=sys.stderr)
    if args.out:
        fileio.write_frame(agreement, args.out)
    if args.json:
        print(agreement.to_json(orient="records"))
        return 0
    print(f"{int(agreement['n'].max()):,} faces in both tables; per AU: Pearson r, Spearman r, mean A, mean B, "
          "mean |A - B|")
    for row in agreement.itertuples(index=False):
        print(f"{row.au}  n {row.n:,}  r {row.pearson_r:.2f}  rho {row.spearman_r:.2f}  mean {row.mean_a:.2f} / "
              f"{row.mean_b:.2f}  |diff| {row.mean_abs_diff:.2f}")
    return 0


def cmd_train_au(args) -> int:
    from . import au_table
    from .emotions import parse_classes
    from .manifest import Metrics
    from .predictors.au_models import MAX_FIT_ROWS, au_columns_from, fit_au, held_out_description
    from .predictors.registry import save_and_register

    fileio.output_path(args.out)  # a bad --out is said before the fit, not after
    if Path(args.out).suffix.lower() != ".json":  # the model is found by its ending when loaded by path
        raise FerError(f"{printable(args.out)}: the AU model file must end with .json")
    kind = {"logreg": "au-logreg", "mlp": "au-mlp", "gam": "au-gam"}[args.kind]
    given = [o for o, v in (("--interactions", args.interactions), ("--outer-bags", args.outer_bags)) if v is not None]
    if given and kind != "au-gam":  # a setting the fit would drop: the person believes it was used
        raise FerError(f"{' and '.join(given)} {'is' if len(given) == 1 else 'are'} for --kind gam; "
                       f"--kind {args.kind} has no such setting")
    replacing = _name_free(args.name, kind, args.out, args.replace)
    columns = au_columns_from(args.aus)  # a wrong --aus is said before a large table is read
    _return_freed_memory()
    classes = parse_classes(args.classes)
    max_rows = args.max_rows or MAX_FIT_ROWS
    table = _read_au_table(args.table)
    holdout = args.holdout
    bar = progress = _tqdm_progress("fitting")
    if kind == "au-gam":
        import time

        from .predictors.au_gam import OUTER_BAGS

        # minutes, not seconds, on a real table: said first, and each of its two fits as it ends where no bar shows
        if len(table) >= 2000:
            print(f"fitting a GAM: {args.outer_bags or OUTER_BAGS} bagged boosting fits, twice (the held-out score, "
                  f"then all rows); this takes minutes (FER2013 val's 3,567 faces, seven emotions, {OUTER_BAGS} bags: "
                  "8.5 min with --workers 1)", file=sys.stderr)
        started = time.monotonic()

        def on_gam_fit(done: int, total: int) -> None:
            bar(done, total)
            if done and not sys.stderr.isatty():
                print(f"GAM fit {done} of {total} done ({(time.monotonic() - started) / 60:.1f} min)",
                      file=sys.stderr, flush=True)

        progress = on_gam_fit

    from .measure.extract import default_workers

    model = fit_au(table, classes, kind=kind, seed=args.seed, holdout=holdout, max_rows=max_rows,
                   class_weight=None if args.class_weight == "none" else args.class_weight,
                   description=au_table.table_name(table), progress=progress, columns=columns,
                   interactions=args.interactions, outer_bags=args.outer_bags,
                   n_jobs=args.workers or default_workers(), group_by=args.group_by)
    del table
    model.info["command"] = args.command_line
    data = model.info["data"]
    # what a methods section names: the table by its bytes (a relative name says little a year on),
    # and the code and libraries that fitted it
    from .provenance import file_sha256

    data["table_sha256"] = file_sha256(args.table)  # fit_au wrote its fitted_by
    if data.get("left_out"):
        total = data["rows"] + sum(data["left_out"].values())
        others = au_table.other_emotions_note(data.get("other_emotions") or {}, _classes_keeping(
            model.classes, data.get("other_emotions") or {}))
        print(f"{printable(args.table)}: {au_table.left_out_summary(data['left_out'], total)}"
              + (f"; {others}" if others else "") + _too_few_to_train(data.get("other_emotions") or {}),
              file=sys.stderr)
    if data.get("sample"):
        print(f"fitted on {data['sample']}; --max-rows changes the cap", file=sys.stderr)
    for note in ("held_out_duplicates", "held_out_videos"):
        if data.get(note):
            print(f"{printable(args.table)}: {data[note]}", file=sys.stderr)
    m = model.holdout
    evaluated_on = held_out_description(args.table, holdout, args.seed, data.get("videos"), group_by=args.group_by,
                                        sample=data.get("sample"))
    if args.name:
        try:
            entry = save_and_register(model, name=args.name, kind=kind, classes=model.classes,
                                      metrics=Metrics.from_report(m, evaluated_on), command=args.command_line,
                                      path=args.out, replace=args.replace)  # checked again: a run in parallel
        except FerError as exc:  # the fit (minutes for a GAM) is kept, as a training's network is
            kept = Path(args.out).with_suffix(".unregistered.json")
            try:
                model.save(kept)
            except (OSError, FerError):  # a full disk: its own error says what matters
                raise exc from None
            raise FerError(f"{one_line(exc)}; the fitted model is kept, unregistered, in {printable(str(kept))} "
                           "(usable by path: --model)") from None
    else:
        model.save(args.out)
    per_video = (data.get("videos") or {}).get("per_video")
    print(f"{kind} on {data['rows']} faces; held-out accuracy {_score(m.accuracy)} "
          f"(95% CI {_score(m.accuracy_ci95[0])}-{_score(m.accuracy_ci95[1])}), macro-F1 {_score(m.macro_f1)}"
          + (f"; per held-out video {_score(per_video['accuracy'])} on {_counted(per_video['n'], 'video')} (95% CI "
             f"{_score(per_video['accuracy_ci95'][0])}-{_score(per_video['accuracy_ci95'][1])})" if per_video else "")
          + f" -> {printable(args.out)}")
    from .evaluation.metrics import degenerate_model_warning

    if warning := degenerate_model_warning(m, advice="au"):  # as the AU model page says it beside its save button
        print(f"warning: {warning}", file=sys.stderr)
    if args.name:
        print(f"registered as {args.name!r} in {_manifest_shown()} (sha256 {entry.sha256[:12]}…){replacing}")
    return 0


def _classes_keeping(classes: Sequence[str], others: dict[str, int]) -> str | None:
    """The --classes that also trains the emotions ``others`` names (those a model here predicts,
    with the faces training needs), or None when none is such (contempt; fear of 8 faces)."""
    from .au_table import MIN_FACES_PER_CLASS
    from .emotions import SEVEN_EMOTIONS

    kept = [e for e in SEVEN_EMOTIONS if e in classes or others.get(e, 0) >= MIN_FACES_PER_CLASS]
    if set(kept) == set(classes):
        return None
    return "--classes seven" if kept == list(SEVEN_EMOTIONS) else f"--classes {','.join(kept)}"


def _too_few_to_train(others: dict[str, int]) -> str:
    """"; fear (8), disgust (6): fewer than 10 faces each, too few to train" for those others."""
    from .au_table import MIN_FACES_PER_CLASS
    from .emotions import SEVEN_EMOTIONS

    few = [f"{e} ({n})" for e, n in others.items() if e in SEVEN_EMOTIONS and n < MIN_FACES_PER_CLASS]
    each = " each" if len(few) > 1 else ""
    return f"; {', '.join(few)}: fewer than {MIN_FACES_PER_CLASS} faces{each}, too few to train" if few else ""


def cmd_mask(args) -> int:
    from PIL import Image

    from .images import MAX_DECODE_SIDE, looks_like_face_crop, relative_file, scan_images
    from .masks import ALREADY_MASKED, MASK_NOT_PLACED_REASON, MaskedMeasure, drawn_mask_of, mark_options, style_of
    from .measure.extract import NO_FACE_REASON, default_workers, iter_tasks
    from .pipeline import face_order

    style_of(args.style)
    listing = scan_images(args.folder)
    items = listing.items
    if not items:
        raise FerError(f"{args.folder}: no images found; expected <emotion>/*.jpg, emotion-prefixed file names or plain images")
    out = Path(args.out)
    if out.resolve() == Path(args.folder).resolve():
        raise FerError("--out must be another folder; the originals are kept")
    try:  # a file in the way is said before any masking, not after
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FerError(f"{printable(str(out))}: cannot be made a folder ({one_line(exc)}); give --out a folder") from None
    failures = [(s.file, s.reason) for s in listing.skipped]
    # an image this command masked already: a second mask would be drawn over the first
    marked = [it for it in items if drawn_mask_of(it.path)]
    failures += [(printable(relative_file(it.path, args.folder)), ALREADY_MASKED) for it in marked]
    items = [it for it in items if it not in marked]
    written, shrunk, bare = 0, 0, 0
    crop_like: list[str] = []  # no face found in what looks like a face crop: --crops would measure it as one
    bare_faces: list[tuple[str, str]] = []  # a masked image's face left bare: named, as a failure is
    # Each masked photo is written as it arrives and dropped: a folder of large photos never
    # waits in memory.
    for i, result in iter_tasks([("mask", str(it.path), args.style, args.seed, args.crops) for it in items],
                                args.workers or default_workers(), progress=_tqdm_progress("masking")):
        it = items[i]
        rel = printable(relative_file(it.path, args.folder))
        if not isinstance(result, MaskedMeasure):
            failures.append((rel, str(result or "not measured")))
            if not args.crops and str(result) == NO_FACE_REASON and looks_like_face_crop(it.path):
                crop_like.append(rel)
            continue
        target = out / relative_file(it.path, args.folder)
        try:  # whole or not at all: a kill or a full disk left a cut-off photo under its name
            target.parent.mkdir(parents=True, exist_ok=True)
            image = Image.fromarray(result.image)
            with fileio.atomic_output(target) as fh:  # marked as masked, for every later use of the file
                image.save(fh, format=Image.registered_extensions().get(target.suffix.lower(), "PNG"),
                           **({"quality": 95} if target.suffix.lower() in (".jpg", ".jpeg") else {}),
                           **mark_options(target.suffix, args.style, args.seed))
        except (OSError, OutputFileError) as exc:
            failures.append((rel, f"could not be written ({one_line(exc)})"))
            continue
        written += 1
        bare += bool(result.bare)
        from_left = face_order(result.original)  # numbered as predict and Try it number them
        bare_faces += [(rel, f"face {from_left.index(k) + 1} of {len(result.original)} (from the left) left bare: "
                             f"{MASK_NOT_PLACED_REASON}") for k in sorted(result.bare, key=from_left.index)]
        with contextlib.suppress(OSError), Image.open(it.path) as source:  # turned by EXIF: same sides
            shrunk += sorted(source.size) != sorted(image.size)
    failures_csv = out / "mask_failures.csv"
    if failures or bare_faces:
        import pandas as pd

        # whole or not at all (a full disk: one line, no cut-off list), names like formulas kept as text
        fileio.write_frame(pd.DataFrame([*failures, *bare_faces], columns=["file", "reason"]), failures_csv)
    else:
        failures_csv.unlink(missing_ok=True)  # an earlier run's list would no longer be true
    # files the listing skipped count too, so the totals add up; a folder passed over is no image
    folders = sum(s.file.endswith("/") for s in listing.skipped)
    total = len(items) + len(marked) + len(listing.skipped) - folders
    print(f"{written} of {total} images masked ({args.style}, seed {args.seed}) -> {printable(str(out))}"
          + (f"; {len(failures) - folders} not masked" if len(failures) > folders else "")
          + (f"; {_counted(folders, 'folder')} passed over" if folders else "")
          + (f"; listed in {printable(str(failures_csv))}" if failures else ""), file=sys.stderr)
    if bare:
        print(f"  {_counted(bare, 'image')} {'holds' if bare == 1 else 'hold'} a face the mask could not be placed on, "
              f"left bare (listed in {printable(str(failures_csv))})", file=sys.stderr)
        for file, reason in bare_faces[:5]:
            print(f"  {file}: {reason}", file=sys.stderr)
    if shrunk:
        print(f"  {shrunk} images over {MAX_DECODE_SIDE} pixels a side were decoded, masked and written at a "
              "reduced size", file=sys.stderr)
    for file, reason in failures[:5]:
        print(f"  {file}: {reason}", file=sys.stderr)
    _suggest_crops(crop_like)
    return 0 if written or not total else 2  # as extract: a run that masked nothing at all is no success


def _add_label_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("--labels", metavar="CSV", help="score the images against labels of your own (raters', their "
                   "majority): a CSV (comma, semicolon or tab between cells) with a file column (file, filename, image, path, "
                   "stimulus, picture or --file-column: names relative to --images, or bare names) and a label (or emotion) column, instead of the folders' or file names' emotions; images without a row, "
                   "and labels naming no emotion (blank, contempt), are left out and counted")
    s.add_argument("--label-column", metavar="NAME", help="with --labels: the column of labels to score against "
                   "(a rater's, e.g. R1; default: label, else emotion)")
    s.add_argument("--file-column", metavar="NAME", help="with --labels: the column naming the images, where it is "
                   "none of file, filename, image, path, stimulus, picture (e.g. Stimulus_ID)")


def _labelled(args, listing) -> list:
    """The listing's images, labelled by --labels where given (said on stderr; kept in
    ``args.label_record`` for the JSON) or as the folder names them."""
    args.label_record = None
    for option in ("label_column", "file_column", "group_by", "cluster_by"):
        if getattr(args, option, None) and not getattr(args, "labels", None):
            raise FerError(f"--{option.replace('_', '-')} names a column of --labels CSV: give --labels too")
    if not getattr(args, "labels", None):
        return listing.items
    from .images import relabel

    items, record = relabel(listing.items, args.labels, args.images, args.label_column,
                            file_column=getattr(args, "file_column", None), group_columns=_group_columns(args))
    for line in record.lines():
        print(line, file=sys.stderr)
    if not items:
        raise FerError(f"{printable(args.labels)}: labels no image of {printable(args.images)} with an emotion "
                       f"({record.no_row:,} without a row, {sum(record.not_emotions.values()):,} naming none)")
    from .evaluation.groups import check_groups

    for column, values in record.groups.items():  # a column of one group, or one per person, before any model runs
        if column != _sheet_column(record, getattr(args, "cluster_by", None)):
            check_groups([values.get(it.path) for it in items], column)
    args.label_record = record
    return items


def _sheet_column(record, name: str | None) -> str | None:
    """The sheet's header of a column named on the command line (whatever its case and spaces)."""
    if not name:
        return None
    return next((c for c in record.groups if c == name), None) or next(
        (c for c in record.groups if c.strip().lower() == name.strip().lower()), None)


def _group_columns(args) -> list[str]:
    """--group-by's columns, repeated or comma-separated, each once; then --cluster-by's, read with them."""
    given = [c.strip() for value in getattr(args, "group_by", None) or [] for c in value.split(",")]
    cluster = getattr(args, "cluster_by", None)
    if cluster and not given:
        raise FerError("--cluster-by names who posed each image, for --group-by's gaps: give --group-by too")
    return list(dict.fromkeys([c for c in given if c] + ([cluster] if cluster else [])))


def _labels_left_out(args) -> list[str]:
    """Each image --labels left out, with why, for passed_over (JSON, the left-out table)."""
    record = getattr(args, "label_record", None)
    return [] if record is None else list(record.left_out_lines)


def _label_record(args) -> dict | None:
    """The JSON's ``labels``: the --labels file's record (its checksum, what it left out), or None."""
    record = getattr(args, "label_record", None)
    return None if record is None else record.to_dict()


def _model_refs(values: list[str]) -> list[str]:
    """--models as given: ``a b`` or ``a,b`` (a file whose own name holds a comma is kept whole)."""
    refs = []
    for value in values:
        parts = [value] if "," not in value or Path(value).exists() else value.split(",")
        refs += [part.strip() for part in parts if part.strip()]
    return refs


def _models_and_test_set(args) -> tuple[list[str], tuple[str, ...] | None, list, list[str]]:
    """compare and mask-report: the models (--models, else the manifest), the classes (--classes),
    the labelled images of --images and what the listing passed over (said on stderr, and kept
    for the JSON: every file is accounted for there too)."""
    from .emotions import parse_classes
    from .images import scan_images
    from .manifest import read_manifest
    from .predictors.registry import find_entry

    refs = _model_refs(args.models or [])
    if not refs:  # the manifest's models, and those of entries it could not read (each then said why)
        registered = read_manifest()
        refs = [e.name for e in registered] + list(registered.left_out)
        for line in registered.problems:
            if line not in registered.left_out.values():  # an entry without a name
                print(f"model left out: {printable(line)}", file=sys.stderr)
    if not refs:
        raise FerError("no models: train one or pass --models")
    for ref in refs:  # a typo stops the run now, not after every image is measured for the others
        try:
            find_entry(ref)
        except ModelNotFoundError:
            raise
        except FerError:  # a broken file or manifest entry: said after the other models ran
            pass
    classes = parse_classes(args.classes) if args.classes else None
    # every emotion: those left out by --classes are counted too; with --labels, every subfolder
    listing = scan_images(args.images, every_folder=bool(getattr(args, "labels", None)))
    for line in listing.skipped_lines:
        print(f"skipped: {line}", file=sys.stderr)
    if not listing.items and getattr(args, "labels", None):
        raise FerError(f"{args.images}: no images found, in it or in its folders")
    if not listing.items:
        raise FerError(f"{args.images}: no labelled images found; expected <emotion>/*.jpg or emotion-prefixed names, "
                       "or labels of your own in a sheet (--labels CSV: a file column and a label column)")
    items = _labelled(args, listing)
    return refs, classes, items, listing.skipped_lines + _labels_left_out(args)


def cmd_mask_report(args) -> int:
    from .evaluation.mask_report import run_mask_report
    from .evaluation.metrics import p_text
    from .measure.extract import default_workers

    refs, classes, items, passed_over = _models_and_test_set(args)
    if args.csv:  # a bad path fails now, not after every face is masked and measured
        fileio.table_output_path(args.csv, "--csv")
    report = run_mask_report(refs, items, classes=classes, style=args.style, seed=args.seed,
                             workers=args.workers or default_workers(), progress=_fraction_progress("mask report"),
                             root=args.images, crops=args.crops)
    if report.original.failed_models:
        for line in report.original.failed_models:
            print(f"model left out: {line}", file=sys.stderr)
    for line in report.original.unreadable:
        print(f"skipped: {line}", file=sys.stderr)
    for line in report.original.several_faces:  # as compare says it
        print(f"several faces: {line}", file=sys.stderr)
    for line in report.unmaskable:
        print(f"not masked: {line}", file=sys.stderr)
    if report.not_placed:
        print(f"{report.not_placed} of them: the face mesh was fitted badly, so a mask drawn from it would have "
              "left the mouth visible", file=sys.stderr)
    _suggest_crops(report.crop_like_no_face)
    for line in report.reasons_failed:
        print(f"reasons left out: {line}", file=sys.stderr)
    _print_left_out(report.original, chosen=bool(classes))
    status = 2 if report.original.failed_models else 0  # as compare: the others' results given, the failure said
    if args.csv:
        fileio.write_frame(report.per_image_frame(), args.csv)
    if args.json:
        print(json.dumps({**report.to_dict(), "passed_over": passed_over, "labels": _label_record(args),
                          **_provenance(args, refs, items, args.images)}))
        return status
    print(f"{report.original.n} faces, with and without a {args.style} mask")
    print(f"{'model':28s} {'original':>9s} {'masked':>7s} {'drop (95% CI)':>27s} {'McNemar p':>9s}  "
          "per emotion (original -> masked)")
    for name in report.names:
        a, b = report.original.reports[name], report.masked.reports[name]
        per = ", ".join(f"{e} {a.per_class[e].accuracy or 0:.2f}->{b.per_class[e].accuracy or 0:.2f}"
                        for e in report.original.classes if a.per_class[e].n)
        paired = report.paired_test(name)
        p = p_text(paired.p_value)  # "< 0.0001", as the dashboard says it, not 0.0000
        drop = "-" if paired.difference_ci95 is None else "{} ({} to {})".format(
            *(_score(v, signed=True) for v in (paired.difference, *paired.difference_ci95)))
        print(f"{name:28s} {_score(a.accuracy):>9s} {_score(b.accuracy):>7s} {drop:>27s} {p:>9s}  {per}")
    for pair in report.masked.mcnemar:  # which model reads the masked faces better, on the same faces
        print(f"masked, {_mcnemar_line(pair)}")
    from .figures.masks import confidence_frame

    sure = confidence_frame(report)
    if len(sure):  # whether a model's percentage still means what it says under the mask
        print("how sure (mean confidence) against how often right, of its answers, without -> with the mask:")
        for _, row in sure.iterrows():
            print(f"  {row['model']:26s} confidence {_score(row['original confidence'])} -> "
                  f"{_score(row['masked confidence'])}, right {_score(row['original right'])} -> "
                  f"{_score(row['masked right'])} (of {row['original answers']:,} -> {row['masked answers']:,} "
                  f"answers), gap {_score(row['original gap'], signed=True)} -> {_score(row['masked gap'], signed=True)}: "
                  f"moved {_score(row['gap change'], signed=True)} (95% CI {_score(row['gap change ci95_low'], signed=True)} "
                  f"to {_score(row['gap change ci95_high'], signed=True)}, {row['paired faces']:,} faces answered both "
                  f"times); without the mask {CALIBRATION_READINGS[row['original direction']]}, with it "
                  f"{CALIBRATION_READINGS[row['masked direction']]}")
    if report.empty_classes:  # an emotion the folder never held was not lost to masking
        held = {it.label for it in items}
        absent = [e for e in report.empty_classes if e not in held]
        lost = [e for e in report.empty_classes if e in held]
        if absent:
            print(f"the test set has no images of {', '.join(absent)}", file=sys.stderr)
        if lost:
            print(f"no images of {', '.join(lost)} could be masked", file=sys.stderr)
    return status


def _suggest_crops(names: list[str]) -> None:
    """A hint when images that look like face crops (``names``, as the output names them) had no
    face found without ``--crops``."""
    from .pipeline import SMALL_IMAGE_SIDE

    if names:
        print(f"note: no face found in {_counted(len(names), 'image')} that {'is' if len(names) == 1 else 'are'} "
              f"square or nearly square, {SMALL_IMAGE_SIDE} px or more (e.g. {printable(names[0])}); if they are "
              "face crops, the face filling each, rerun with --crops", file=sys.stderr)


def _crop_like_in(comparison, root) -> list[str]:
    from .images import relative_file

    return [relative_file(f, root) for f in comparison.crop_like_no_face]


def _print_unlabelled(comparison) -> None:
    if comparison.unlabelled:
        print(f"left out {comparison.unlabelled:,} image(s) whose file names name no emotion "
              "(put them in <emotion>/ folders or name them like angry001.jpg)", file=sys.stderr)


def _print_left_out(comparison, chosen: bool = False) -> None:
    """The test images of emotions not scored, counted per emotion (``chosen``: --classes chose
    them), and the emotions scored that a model never answers."""
    if comparison.skipped:
        why = ("not in --classes" if chosen else "not predicted by the model" if len(comparison.names) == 1
               else "not predicted by every model")
        print(f"left out ({why}): " + ", ".join(f"{n} {e}" for e, n in comparison.skipped.items()), file=sys.stderr)
    _print_unlabelled(comparison)
    for name, emotions in comparison.cannot_predict.items():
        print(f"note: {name} never predicts {', '.join(emotions)}: its images of "
              f"{'that emotion' if len(emotions) == 1 else 'those emotions'} all count as wrong", file=sys.stderr)
    for name, answers in comparison.unscored_answer_counts.items():  # Home and Compare's "other emotion" column say it
        said = ", ".join(f"{e} on {_counted(n, 'image')}" for e, n in answers.items())
        one = len(answers) == 1
        print(f"note: {name} answered {said}, {'an emotion' if one else 'emotions'} not scored here (no image scored "
              f"is labelled {'so' if one else 'with them'}): counted as wrong", file=sys.stderr)
    for note in comparison.tie_notes() + comparison.source_notes() + comparison.learned_notes() + comparison.never_notes():
        print(f"note: {note}", file=sys.stderr)


def _provenance(args, refs: Sequence[str], items: Sequence | None = None, root=None, table: str | None = None) -> dict:
    """A JSON result's ``provenance``: the workbench's version and commit, the command, the
    libraries and each model file's SHA-256, so that a result kept for a paper says what made it;
    with ``items``, the images scored (one SHA-256 of their names and bytes) and how faces were
    measured; with ``table``, the AU table scored (its file's SHA-256)."""
    from .provenance import file_sha256, models_sha256, models_sidecars, provenance, test_set_record

    test_set = (test_set_record([it.path for it in items], root) if items is not None
                else {"table_sha256": file_sha256(table)} if table else None)
    return {"provenance": provenance(args.command_line, models_sha256(refs), test_set=test_set,
                                     measured=items is not None, sidecars=models_sidecars(refs))}


def cmd_evaluate(args) -> int:
    from . import au_table
    from .evaluation.compare import evaluate_images, score_au_table
    from .images import scan_images
    from .measure.extract import default_workers
    from .predictors.base import model_of_kind
    from .predictors.registry import load_predictor

    if args.crops and args.au_table:
        raise FerError(f"--crops is for --images: {CROPS_NOT_FOR_TABLES}")
    if args.labels and args.au_table:
        raise FerError("--labels is for --images: an AU table's own label column is what it is scored on")
    if args.csv and args.au_table:
        raise FerError("--csv is for --images; an AU table's answers per row: predict --au-table TABLE --out OUT "
                       "(the label column is kept)")
    if args.csv:  # a bad path fails now, not after every image is scored
        fileio.table_output_path(args.csv, "--csv")
    predictor = load_predictor(args.model)
    unasked = getattr(getattr(predictor, "mapping", None), "unmapped_unasked", ())
    if unasked:  # a Teachable Machine class whose name is no emotion, not ignored by a saved mapping
        print(f"{predictor.name}: classes {', '.join(unasked)} are no emotion and are ignored "
              "(map them on the dashboard's Teachable Machine page and save the model)", file=sys.stderr)
    extra: dict = {}
    if args.au_table:
        _return_freed_memory()
        if predictor.inputs != "aus":  # say so before reading a table that may be large
            raise FerError(f"{args.model}: {model_of_kind(predictor.kind)} scores images, not an AU table; "
                           "use --images with a folder of labelled images")
        table = _read_au_table(args.au_table)
        scores = score_au_table(predictor, table)
        report = scores.report
        for note in filter(None, [scores.masked, *scores.notes]):
            print(f"note: {note}", file=sys.stderr)
        extra = {k: v for k, v in scores.to_dict().items() if k in ("note", "per_video")}
        for reason, n in report.left_out.items():
            why = {au_table.NOT_FIRST_FACE: "later faces of an image (its first face is scored)"}.get(reason, reason)
            print(f"{printable(args.au_table)}: left out {_counted(n, 'row')}: {why}", file=sys.stderr)
        if report.skipped:
            print(f"left out {', '.join(f'{n:,} {e}' for e, n in report.skipped.items())} row(s): "
                  f"{predictor.name} does not predict {'that emotion' if len(report.skipped) == 1 else 'those emotions'}",
                  file=sys.stderr)
    else:
        listing = scan_images(args.images, every_folder=bool(getattr(args, "labels", None)))
        for line in listing.skipped_lines:
            print(f"skipped: {line}", file=sys.stderr)
        items = _labelled(args, listing)
        if not any(it.label in predictor.classes for it in items):
            raise FerError(f"{args.images}: no labelled images of {', '.join(predictor.classes)} found")
        report, comparison = evaluate_images(predictor, items, workers=args.workers or default_workers(),
                                             progress=_fraction_progress("images"), root=args.images, crops=args.crops,
                                             use_cache=not args.no_cache)
        _say_answers_kept(comparison)
        for line in comparison.unreadable:
            print(f"skipped: {line}", file=sys.stderr)
        _print_unlabelled(comparison)
        for line in comparison.several_faces:  # as compare says it: the largest face was scored
            print(f"several faces: {line}", file=sys.stderr)
        for note in comparison.tie_notes() + comparison.source_notes() + comparison.learned_notes() + comparison.never_notes():
            print(f"note: {note}", file=sys.stderr)
        crop_like = _crop_like_in(comparison, args.images)
        _suggest_crops(crop_like)
        if report.skipped:
            left_out = ", ".join(f"{n} {emotion}" for emotion, n in report.skipped.items())
            print(f"left out {left_out} image(s): {predictor.name} does not predict "
                  f"{'that emotion' if len(report.skipped) == 1 else 'those emotions'}", file=sys.stderr)
        if args.csv:
            _write_predictions(comparison, args.images, args.csv)
        # every file accounted for, as compare's JSON does it
        extra = {"unreadable": list(comparison.unreadable), "unlabelled": comparison.unlabelled,
                 "never_answers": comparison.never_answers().get(predictor.name, []),
                 "tied": dict(comparison.tied),
                 "passed_over": listing.skipped_lines + _labels_left_out(args), "several_faces": list(comparison.several_faces),
                 "labels": _label_record(args),
                 "crops": bool(args.crops), "crop_like_no_face": crop_like}
        said = comparison.to_dict(args.images)  # what the notes said of the model's own training data
        extra.update({key: said[key] for key in ("learned_from", "from_training_folder", "copies_of_training",
                                                 "from_choosing_folder")})
    if args.json:  # the same keys whatever the run found: a workflow reads d["skipped"] without a KeyError
        print(json.dumps({**report.to_dict(), **extra,
                          **_provenance(args, [args.model], items if args.images else None, args.images,
                                        table=None if args.images else args.au_table)}))
    else:
        _print_report(report)
        if "per_video" in extra:
            v = extra["per_video"]
            lo, hi = v["accuracy_ci95"]
            print(f"per video (the emotion of its frames' highest mean probability): n {v['n']}, accuracy "
                  f"{_score(v['accuracy'])} (95% CI {_score(lo)}-{_score(hi)}), macro-F1 {_score(v['macro_f1'])}, no face {v['no_face']}")
    return 0


def cmd_compare(args) -> int:
    from .evaluation.compare import run_comparison
    from .measure.extract import default_workers

    if args.no_faces and not args.report:
        raise FerError("--no-faces is for the HTML report: add --report REPORT.html")
    refs, classes, items, passed_over = _models_and_test_set(args)
    if args.csv:  # a bad path fails now, not after every model has run
        fileio.table_output_path(args.csv, "--csv")
    if args.tables and os.path.exists(args.tables) and not os.path.isdir(args.tables):
        raise FerError(f"--tables {printable(args.tables)}: a file, not a folder; give a folder for the CSVs")
    if args.report:
        fileio.output_path(args.report)
        if Path(args.report).suffix.lower() not in (".html", ".htm"):  # a report.pdf would be HTML inside
            raise FerError(f"{printable(args.report)}: the report is one HTML page; give --report a name "
                           "ending in .html (print it to PDF from the browser)")
    comparison = run_comparison(refs, items, classes=classes, workers=args.workers or default_workers(),
                                progress=_fraction_progress("predicting"), root=args.images, crops=args.crops,
                                use_cache=not args.no_cache)
    if args.label_record is not None and args.label_record.groups:
        comparison.attach_groups(args.label_record.groups,
                                 cluster_column=_sheet_column(args.label_record, args.cluster_by))
    _say_answers_kept(comparison)
    for line in comparison.failed_models:  # the others' results are kept; the exit status says it (2)
        print(f"model left out: {line}", file=sys.stderr)
    for line in comparison.unreadable:
        print(f"skipped: {line}", file=sys.stderr)
    for line in comparison.several_faces:
        print(f"several faces: {line}", file=sys.stderr)
    _print_left_out(comparison, chosen=bool(classes))
    _suggest_crops(_crop_like_in(comparison, args.images))
    unwritten: list[OutputFileError] = []  # files that could not be written: said last, the results still given
    if args.csv:
        try:
            _write_predictions(comparison, args.images, args.csv)
        except OutputFileError as exc:  # a full disk or a size limit: the JSON, computed, was lost with it
            unwritten.append(exc)
    if args.tables:
        from .figures.compare import comparison_tables

        for name, frame in comparison_tables(comparison, args.images, passed_over).items():
            try:
                fileio.write_frame(frame, Path(args.tables) / name)
            except OutputFileError as exc:
                unwritten.append(exc)
        print(f"tables -> {printable(args.tables)}", file=sys.stderr)
    if args.report:
        try:
            _write_compare_report(args, comparison, refs, items)
        except OutputFileError as exc:
            unwritten.append(exc)
    if args.json:
        print(json.dumps({**comparison.to_dict(root=args.images), "passed_over": passed_over,
                          "labels": _label_record(args),
                          **_provenance(args, refs, items, args.images)}))
    else:
        for report in comparison.reports.values():
            _print_report(report)
        for pair in comparison.mcnemar:
            print(_mcnemar_line(pair))
        if len(comparison.mcnemar) > 1:
            print("(each A-B interval is for its pair alone, not Holm-adjusted as the p-values are; with few images "
                  "an interval can leave out 0 while the exact McNemar p is above 0.05)")
        for analysis in comparison.group_analyses().values():
            _print_groups(analysis)
    for problem in comparison.group_problems().values():  # an unreadable image can leave a column one group
        print(f"note: not grouped: {problem}", file=sys.stderr)
    for exc in unwritten[:-1]:
        print(f"error: {one_line(exc)}", file=sys.stderr)
    if unwritten:
        raise unwritten[-1]
    return 2 if comparison.failed_models else 0  # the others' results are given, the failure said


def _write_predictions(comparison, images: str, path: str) -> None:
    """The table the dashboard's predictions download gives (files relative to ``images``), for
    compare --csv and evaluate --csv."""
    from .figures.compare import predictions_frame

    fileio.write_frame(predictions_frame(comparison.table, comparison.names, images, comparison.groups,
                                        comparison.copies_of_training), path)


def _print_groups(analysis) -> None:
    """One grouping column: each model's accuracy per group, the gaps and the models' differences."""
    from .evaluation.metrics import p_text, share_text
    from .figures.compare import gap_drivers, group_notes
    from .i18n import using_language

    def points(value: float) -> str:
        return share_text(value, 1, points=True, signed=True)

    groups = ", ".join(f"{g} {n:,}" for g, n in analysis.levels.items())
    people = (f"; {analysis.people:,} people by {analysis.clustered_by}, their images not taken as independent"
              if analysis.clustered_by else "")
    print(f"by {analysis.column} ({groups}{people}): emotion-balanced accuracy (the mean of the emotions' recalls), "
          "95% CI; plain accuracy after it")
    for model in dict.fromkeys(s.model for s in analysis.scores):
        cells = [f"{s.group} {_score(s.balanced_accuracy)} ({_score(s.balanced_ci95[0])}-{_score(s.balanced_ci95[1])}), "
                 f"plain {_score(s.accuracy)}" for s in analysis.scores if s.model == model]
        print(f"  {model}: " + "; ".join(cells))
    for g in analysis.gaps:  # where it comes from: the emotions in its direction, with their images
        most = ", ".join(f"{e} {points(v)} ({n_a} and {n_b} images)" for e, v, n_a, n_b in gap_drivers(analysis, g))
        print(f"  gap {g.model} {g.a} - {g.b}: {points(g.gap)} points (95% CI {points(g.ci95[0])} to "
              f"{points(g.ci95[1])}) over {len(g.emotions)} emotions, p {_equals(p_text(g.p_value))}, Holm-adjusted "
              f"p {_equals(p_text(g.p_holm))}" + (f"; most from {most}" if most else "")
              + f"; plain accuracy gap {points(g.accuracy_gap)}")
    for d in analysis.differences:
        print(f"  gap {d.a} - {d.b} of {d.model_a} minus that of {d.model_b} (same images): {points(d.difference)} "
              f"points (95% CI {points(d.ci95[0])} to {points(d.ci95[1])}), Holm-adjusted p {_equals(p_text(d.p_holm))}")
    with using_language("en"):
        for note in group_notes(analysis):
            print(f"  note: {note}")
    print(f"  (Holm over this column's {len(analysis.gaps)} gaps and, apart, its {len(analysis.differences)} "
          "differences of gaps; nothing is adjusted across columns or runs)")


def _score(value, signed: bool = False) -> str:
    """A score to three decimals, rounded as the dashboard and the report round it (``share_text``)."""
    from .evaluation.metrics import share_text

    return share_text(value, signed=signed)


def _mcnemar_line(pair) -> str:
    """One pair of models: how far apart their accuracies are (with the interval), then McNemar."""
    from .evaluation.metrics import p_text, share_text

    apart = ""
    if pair.difference is not None:  # None: no images
        d, lo, hi = (share_text(v, signed=True) for v in (pair.difference, *pair.difference_ci95))
        apart = f"accuracy A-B {d} (95% CI {lo} to {hi}), "
    return (f"McNemar {pair.a} vs {pair.b}: {apart}only-A {pair.only_a_correct}, only-B {pair.only_b_correct}, "
            f"p {_equals(p_text(pair.p_value))}, Holm-adjusted p {_equals(p_text(pair.p_holm))}")


def _say_answers_kept(comparison) -> None:
    """Which models' answers came from the cache, so a rerun's speed is not taken for the models'."""
    if comparison.answers_from_cache:
        kept = ", ".join(f"{name} {n:,} of {comparison.n:,}" for name, n in comparison.answers_from_cache.items())
        print(f"answers kept from an earlier run on the same files: {kept} (--no-cache runs every model again)",
              file=sys.stderr)


def _write_compare_report(args, comparison, refs: list[str] | None = None, items: Sequence | None = None) -> None:
    """compare --report: the dashboard's HTML report, with the manifest entries of the models
    given (``registered_entries``; ``refs``: --models as given, else the manifest's models)."""
    from .evaluation.report import ReportSettings, comparison_report_html, registered_entries, write_report

    if refs is None:
        refs = _model_refs(getattr(args, "models", None) or [])
    entries = registered_entries(refs, comparison.names)
    description = f"{args.images} (python -m fer_core compare)"
    record = getattr(args, "label_record", None)
    if record is not None:  # as the Compare page says it: whose labels were scored
        from .i18n import t, using_language

        with using_language(args.lang):
            description = t("common.labelled_description", source=description, labels=Path(record.path).name,
                            column=record.column, sha=record.sha256[:12]).replace("`", "")
    settings = ReportSettings.now(description, args.images, paths=None if items is None else [it.path for it in items])
    path = write_report(args.report, comparison_report_html(comparison, settings, entries, lang=args.lang,
                                                            faces=not args.no_faces))
    print(f"report: {printable(str(path))}", file=sys.stderr)


def cmd_draw_testset(args) -> int:
    from .emotions import parse_classes
    from .images import draw_test_set
    from .provenance import TEST_SET_RECORD, test_set_file_record

    out = Path(args.out)
    if (out.is_dir() and any(out.iterdir())) or (out.exists() and not out.is_dir()):
        # Drawn into a folder with images, the set would be N per emotion plus whatever was there
        # (another seed's draw, or the source itself).
        what = "already holds files" if out.is_dir() else "is a file"
        raise FerError(f"{printable(args.out)}: {what}; give draw-testset a new or empty folder, so the set "
                       f"is exactly {args.per_class} per emotion")
    classes = parse_classes(args.classes)
    for folder in args.unlike:
        if not Path(folder).is_dir():
            raise FerError(f"--unlike {printable(folder)}: no such folder; give the folder whose copies to leave out "
                           "(e.g. the training split)")
    try:
        chosen = draw_test_set(args.source, out, args.per_class, classes, args.seed, unlike=args.unlike)
    except OSError as exc:  # a folder that cannot be written, a full disk: some images may be copied
        where = printable(os.fsdecode(exc.filename or out))
        raise FerError(f"{where}: {exc.strerror or exc}; the test set was not copied whole: draw it into a "
                       f"folder you can write to (remove {printable(args.out)} first if it was made)") from None
    record = test_set_file_record(chosen, out, source=args.source, per_class=args.per_class, classes=classes,
                                  seed=args.seed, command=args.command_line, unlike=args.unlike)
    # ASCII escapes: a folder named in Latin-1 (set\xff) holds a lone surrogate no UTF-8 file can
    fileio.atomic_write_text(out / TEST_SET_RECORD, json.dumps(record, indent=1) + "\n")
    unlike = f", none a copy of a file in {', '.join(map(printable, args.unlike))}" if args.unlike else ""
    print(f"{len(chosen)} images ({args.per_class} per emotion, seed {args.seed}{unlike}) -> {printable(args.out)}")
    print(f"what was drawn, from where: {TEST_SET_RECORD} (test set {record['sha256'][:12]}…, as compare's "
          "provenance names it)", file=sys.stderr)
    return 0


def _equals(shown: str) -> str:
    """"= 0.0312" or "< 0.0001" (not "= < 0.0001")."""
    return shown if shown.startswith("<") else f"= {shown}"


def cmd_cache(args) -> int:
    """The measurement cache holds derived data about the people photographed (face boxes,
    blendshapes; no pixels or file names), kept after the photos are deleted: said and removable;
    so are the dashboard's Ray runs waiting to be resumed (AU tables with file names)."""
    from . import config
    from .measure.extract import MeasureCache

    if args.paths and args.action != "forget":
        raise FerError(f"cache {args.action} takes no paths; cache forget PATH ... forgets those files' measurements")
    resumable = sorted((config.cache_dir() / "ray").glob("*.parquet"))
    database = config.cache_dir() / "measurements.sqlite"
    shown = printable(str(database))
    if args.action == "info":
        if not database.exists():
            print(f"{shown}: no measurement cache yet")
        else:
            cache = MeasureCache()
            stale = cache.count_stale()
            print(f"{shown}: {_held(cache.count(), cache.count_answers())} "
                  f"({database.stat().st_size / 2**20:.1f} MB), of faces only (boxes, blendshapes, AUs, emotion "
                  "probabilities; no pixels or file names), found again by each file's contents"
                  + (f"; {_held(*stale)} of them made by an older version of the measuring code, never used "
                     "again (cache prune removes them)" if any(stale) else ""))
        if resumable:
            print(f"{printable(str(resumable[0].parent))}: {_counted(len(resumable), 'Ray run')} of the dashboard "
                  "waiting to be resumed (AU tables with file names; cache clear removes them)")
        return 0
    if args.action == "prune":
        removed = MeasureCache().prune() if database.exists() else (0, 0)
        print(f"{shown}: {_held(*removed)} made by an older version of the measuring code removed", file=sys.stderr)
        return 0
    if args.action == "clear":
        removed = MeasureCache().clear() if database.exists() else (0, 0)
        for path in resumable:
            path.unlink(missing_ok=True)
        print(f"{shown}: {_held(*removed)} removed"
              + (f"; {_counted(len(resumable), 'Ray run')} waiting to be resumed removed" if resumable else ""),
              file=sys.stderr)
        return 0
    if not args.paths:
        raise FerError("cache forget needs the files or folders whose measurements to forget")
    digests, files = _contents_of(args.paths)
    if not files:
        raise FerError(f"{', '.join(map(printable, args.paths))}: no files in it to forget (a deleted file's "
                       "measurements are forgotten by cache clear, or by forgetting a copy of it)")
    removed = MeasureCache().forget(digests) if database.exists() else (0, 0)
    print(f"{shown}: {_held(*removed)} of {_counted(files, 'file')} removed", file=sys.stderr)
    return 0


def _held(measurements: int, answers: int) -> str:
    """"2 measurements", "2 measurements and 18 models' answers": what the cache holds of faces."""
    return _counted(measurements, "measurement") + (f" and {answers:,} models' answer{'s' * (answers != 1)}"
                                                     if answers else "")


def _contents_of(paths: Sequence[str]) -> tuple[set[str], int]:
    """The content digests of the files given and of every file in the folders given (through
    symbolic links to folders, as a folder's images are listed; each real folder once), a zip's
    members too (the dashboard measures an uploaded zip's images); and how many files they were."""
    import zipfile

    from .measure.tasks import content_digest, file_digest

    digests: set[str] = set()
    files = 0

    def take(path: Path) -> None:
        nonlocal files
        files += 1
        # an unreadable file has nothing in the cache to name it by, nor a damaged zip's members
        with contextlib.suppress(OSError, zipfile.BadZipFile):
            digests.add(file_digest(path))
            if zipfile.is_zipfile(path):
                with zipfile.ZipFile(path) as archive:
                    for member in archive.infolist():
                        if not member.is_dir() and member.file_size <= 64 << 20:
                            digests.add(content_digest(archive.read(member)))

    for given in paths:
        path = Path(given)
        if path.is_file():
            take(path)
        elif path.is_dir():
            seen: set[str] = set()
            for folder, subfolders, names in os.walk(path, followlinks=True):
                real = os.path.realpath(folder)
                if real in seen:  # a link back up the tree
                    subfolders.clear()
                    continue
                seen.add(real)
                for name in names:
                    if os.path.isfile(os.path.join(folder, name)):
                        take(Path(folder, name))
        else:  # a typo would otherwise forget nothing, said as done
            raise FerError(f"{printable(given)}: no such file or folder (a deleted file's measurements are "
                           "forgotten by cache clear, or by forgetting a copy of it)")
    return digests, files


def cmd_models(args) -> int:
    from .manifest import read_manifest

    entries = read_manifest()
    for line in entries.problems:  # the rest are listed and load as before
        print(f"left out: {printable(line)}", file=sys.stderr)
    if not entries:  # an empty listing read as a command that did nothing
        from .config import models_dir_unusable

        print(f"no {'usable ' if entries.problems else ''}models in {_manifest_shown()}"
              + (f": {models_dir_unusable()}" if models_dir_unusable() else "")
              + "; train-au, train-cnn or ensemble with --name registers one", file=sys.stderr)
        if args.json:
            print("[]")
        return 0
    problems = {e.name: _model_file_problem(e) for e in entries}
    if args.json:  # a script's listing: no columns to parse
        print(json.dumps([{**e.to_dict(), "file": str(e.file), "file_present": os.path.lexists(e.file),
                           "problem": problems[e.name]} for e in entries], indent=1))
        return 0
    # Columns as wide as their longest cell: an au-bottleneck kind or a long path shifted the rest
    name_width, kind_width = max(len(e.name) for e in entries), max(len(e.kind) for e in entries)
    path_width = max(len(str(e.path)) for e in entries)
    for e in entries:
        m = e.metrics
        score = ("not evaluated" if m.accuracy is None else f"accuracy {_score(m.accuracy)}"
                 + (f" (95% CI {_score(m.accuracy_ci95[0])}-{_score(m.accuracy_ci95[1])}" if m.accuracy_ci95 else "")
                 + (f"{', ' if m.accuracy_ci95 else ' ('}n {m.n:,})" if m.n else ")" if m.accuracy_ci95 else "")
                 + (f", macro-F1 {_score(m.macro_f1)}" if m.macro_f1 is not None else ""))  # a script's may give one
        where = f" on {m.evaluated_on}" if m.evaluated_on else ""
        missing = ("" if not problems[e.name] else f"  (cannot be used: {problems[e.name]})" if os.path.lexists(e.file)
                   else f"  (file missing: {printable(str(e.file))})")
        print(f"{e.name:{name_width}s}  {e.kind:{kind_width}s}  {e.path!s:{path_width}s}  {score}{where}{missing}")
    return 0


def cmd_register(args) -> int:
    from . import config
    from .manifest import ModelEntry, one_writer, read_manifest, register, stored_path
    from .predictors.registry import find_entry, get_kind, load_predictor

    path = Path(args.model)
    if not os.path.lexists(path):
        raise FerError(f"{printable(args.model)}: no such file")
    given = find_entry(str(path))
    if given.kind == "teachable":
        raise FerError(f"{printable(args.model)}: a Teachable Machine export; register it with import-teachable "
                       f"{printable(args.model)} --name {args.name} (it maps its class names to emotions)")
    if given.sha256:  # the file of a registered model, unchanged since
        raise FerError(f"{printable(args.model)} is already registered as {given.name!r}")
    get_kind(given.kind)
    # said before the model is loaded (TensorFlow's start): the manifest is written back whole, so an
    # entry it cannot read would be lost
    _registerable(args.name, given.kind, read_manifest(strict=True), args.replace, path)
    predictor = load_predictor(given)  # refused here, in one line, if it cannot be used as it is
    folder = config.models_dir()
    entry = ModelEntry(name=args.name, kind=given.kind, path=stored_path(path, folder),
                       classes=tuple(predictor.classes), command=args.command_line, origin="cli",
                       description=args.description or f"registered from {printable(str(path.resolve()))}",
                       base=folder)  # "models/x" is the manifest's own folder (FER_MODELS_DIR), not the repository's
    with one_writer(folder):
        existing = read_manifest(strict=True)
        _registerable(args.name, given.kind, existing, args.replace, path)
        register(entry)
    for ensemble in _ensembles_of(args.name, existing):  # as a retrained member: the ensemble refuses to load
        print(f"note: {ensemble} has {args.name} as a member; it is refused until made again with the ensemble "
              "command (its members are fixed)", file=sys.stderr)
    print(f"registered {args.name} ({given.kind}; {', '.join(entry.classes)}) -> {printable(str(path.resolve()))}; "
          f"checksum {entry.sha256[:12]}…: a change to the file is refused until it is registered again",
          file=sys.stderr)
    return 0


def _registerable(name: str, kind: str, existing, replace: bool, path: Path) -> None:
    """``register``'s refusals, said before TensorFlow loads and again under the manifest's lock:
    a name taken (without --replace) or by another kind, and a file another model is registered
    under (two names on one file: the first then failed its checksum once the file changed)."""
    from .manifest import refuse_other_kind, refuse_registered_file, validate_model_name

    validate_model_name(name, [])
    refuse_other_kind(name, kind, existing)
    if any(e.name == name for e in existing) and not replace:
        raise FerError(f"a model named {name!r} is already registered; choose another --name, or add --replace")
    owner = next((e for e in existing if e.file.resolve() == path.resolve()), None)
    if owner is not None and owner.name != name:
        raise FerError(f"{printable(str(path))} is the file of the registered model {owner.name!r}; register it "
                       f"again as --name {owner.name} --replace (a file changed since its registration), or copy it")
    refuse_registered_file(name, path, existing)


def _ensembles_of(name: str, entries) -> list[str]:
    """The registered ensembles that have ``name`` as a member."""
    return [e.name for e in entries if e.kind == "ensemble" and e.name != name and name in _ensemble_members(e)]


def cmd_unregister(args) -> int:
    from .manifest import MANIFEST_HINT, MAX_MANIFEST_BYTES, manifest_path, one_writer, read_manifest
    from .predictors.registry import get_kind
    from .safe_files import read_json_file

    with one_writer():
        entries = read_manifest()  # lenient: an entry that cannot be read is taken out by its name too
        entry = next((e for e in entries if e.name == args.name), None)
        if entry is None and args.name not in entries.left_out:
            raise FerError(f"no model named {args.name!r} in {_manifest_shown()}; `models` lists them")
        users = _ensembles_of(args.name, entries)
        if users:
            raise FerError(f"{args.name} is a member of the ensemble {', '.join(users)}: unregister that first")
        # the list as written, less that name's entries: every other entry is kept as it is, those the
        # workbench cannot read too (the lenient reading would have dropped them)
        raw = read_json_file(manifest_path(), MAX_MANIFEST_BYTES, MANIFEST_HINT, what="manifest")
        kept = [e for e in raw if not (isinstance(e, dict) and e.get("name") == args.name)]
        fileio.atomic_write_text(manifest_path(), json.dumps(kept, indent=2) + "\n")
    files = []
    if entry is not None:
        try:
            companions = get_kind(entry.kind).companions
            files = [entry.file, *(companions(entry.file) if companions else ())]
        except FerError:
            files = [entry.file]
    kept_files = ", ".join(printable(str(f)) for f in files if os.path.lexists(f))
    print(f"unregistered {args.name}" + (f"; its files are kept: {kept_files}" if kept_files else ""), file=sys.stderr)
    return 0


def _ensemble_members(entry) -> list[str]:
    from .predictors.ensemble import EnsembleSpec

    try:
        return list(EnsembleSpec.read(entry.file).members)
    except (FerError, OSError):
        return []


def _model_file_problem(entry) -> str | None:
    """Why a listed model cannot be loaded as registered (its file missing, changed, or replaced by
    a save that did not finish), as loading it would say; None when its file is the registered one.
    The listing had shown such a model as usable, with the old file's scores and checksum."""
    from .errors import ModelFileError
    from .predictors.registry import get_kind

    try:
        get_kind(entry.kind)  # a kind registered by a plugin this process did not load
        entry.verify_checksum()
    except (ModelFileError, OSError) as exc:
        return printable(one_line(exc))
    return None


def cmd_train_cnn(args) -> int:
    import time

    from .emotions import parse_classes
    from .evaluation.metrics import degenerate_model_warning
    from .predictors.cnn import train_cnn
    from .predictors.recipe import recipe_from_args
    from .predictors.registry import find_entry

    _name_free(args.name, "cnn", args.out, args.replace)  # before the training: said now, not hours later
    classes = parse_classes(args.classes)
    recipe = recipe_from_args(args)
    init = find_entry(args.init).file if args.init else None
    deadline = time.monotonic() + args.max_minutes * 60 if args.max_minutes else None
    bar = _tqdm_progress("epochs", total=args.epochs)
    started = time.monotonic()

    def on_epoch(epoch: int, logs: dict[str, float]) -> None:
        bar(epoch + 1, args.epochs)
        if not sys.stderr.isatty():  # a log file, as a long run writes to: one line an epoch, not silence
            scores = ", ".join(f"{k} {logs[k]:.4f}" for k in ("loss", "accuracy", "val_accuracy") if k in logs)
            print(f"epoch {epoch + 1}/{args.epochs}: {scores} ({(time.monotonic() - started) / 60:.1f} min)",
                  file=sys.stderr, flush=True)

    with _deadline_explained(args.max_minutes):
        result = train_cnn(args.data, args.val, classes=classes, preset=args.preset, epochs=args.epochs,
                           batch_size=args.batch_size, out=args.out, limit_per_class=args.limit_per_class,
                           class_weighting=args.class_weighting, command=args.command_line, holdout=args.holdout,
                           init=init, learning_rate=args.learning_rate, recipe=recipe, seed=args.seed,
                           progress=on_epoch, should_stop=(lambda: time.monotonic() > deadline) if deadline else None,
                           stop_reason=MAX_MINUTES_STOP,
                           in_place=not args.name)  # registering: --out is replaced by the save that registers it
    _say_time_limit(result, args)
    ev = result.evaluation
    print(f"{args.preset} CNN, epochs {result.epochs_run} in {result.seconds / 60:.1f} min: accuracy "
          f"{_score(ev.accuracy)} (95% CI {_score(ev.accuracy_ci95[0])}-{_score(ev.accuracy_ci95[1])}), "
          f"macro-F1 {_score(ev.macro_f1)} on {result.evaluated_on} (face and mirror image averaged, as it predicts; "
          "the epochs' val_accuracy scores the face alone)"
          + (f"; {_score(result.selection.accuracy)} on {result.selected_on}, which chose the epoch"
             if args.holdout is not None else "") + f" -> {printable(args.out)}")
    _say_training_data(result, args)
    warning = degenerate_model_warning(ev)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    collapsed = ev.predicts_one_class() or round(ev.accuracy, 4) <= round(1 / max(len(ev.labels), 1), 4)
    if args.name and collapsed and not args.register_anyway:
        # registered, it joined Try it's models beside the bundled ones and answered one emotion for every face
        from .manifest import read_manifest
        from .predictors.cnn import remove_training
        from .predictors.registry import get_kind

        kept = Path(result.path)
        if not any(e.file.resolve() == Path(args.out).resolve() for e in read_manifest()):
            get_kind("cnn").save(result, Path(args.out))  # --out holds no registered model: it goes there
            remove_training(kept)
            kept = Path(args.out)
        print(f"not registered as {args.name!r}: it has not learned to tell the emotions apart (above); it is in "
              f"{printable(str(kept))} (rerun with --register-anyway to register such a network)", file=sys.stderr)
        return 1
    if args.name:
        _register_training(result, name=args.name, kind="cnn", classes=classes, command=args.command_line,
                           out=args.out, replace=args.replace)
    return 0


SKIPPED_SHOWN = 10  # unreadable or faceless training files named on the terminal (the sidecar keeps 100)


def _say_training_data(result, args) -> None:
    """What a network was trained on, which a small set of one's own photos needs said: the files
    left out (unreadable, no face), the photos whose face was cut out, the images per emotion, and
    the two options that help a small or unbalanced set."""
    for line in result.skipped[:SKIPPED_SHOWN]:
        print(f"left out: {line}", file=sys.stderr)
    if len(result.skipped) > SKIPPED_SHOWN:
        print(f"left out: {len(result.skipped) - SKIPPED_SHOWN} more (the sidecar lists up to 100)", file=sys.stderr)
    if result.face_cut:
        print(f"{result.face_cut:,} photos were larger than face crops: each was trained on its largest face with a "
              "margin, as Try it, evaluate and compare cut it", file=sys.stderr)
    counts = result.class_counts
    if not counts:
        return
    print("training images per emotion: " + ", ".join(f"{c} {n:,}" for c, n in counts.items()), file=sys.stderr)
    most, fewest = max(counts, key=counts.get), min(counts, key=counts.get)
    if counts[fewest] and counts[most] >= 3 * counts[fewest] and not args.class_weighting:
        print(f"note: {counts[most]:,} {most} against {counts[fewest]:,} {fewest}: --class-weighting weighs the "
              "emotions equally, so the rare ones are not given up", file=sys.stderr)
    if sum(counts.values()) < 2000 and not args.init:
        print(f"note: {sum(counts.values()):,} images are few for a network trained from scratch; --init cnn-fer2013 "
              "--learning-rate 3e-4 starts from the bundled CNN and fine-tunes it", file=sys.stderr)


def cmd_ensemble(args) -> int:
    from .config import models_dir
    from .emotions import parse_classes
    from .evaluation.compare import evaluate_images
    from .images import scan_images
    from .manifest import Metrics, read_manifest, validate_model_name
    from .measure.extract import default_workers
    from .predictors.cnn import picked_on_split
    from .predictors.ensemble import KIND, EnsemblePredictor, EnsembleSpec
    from .predictors.registry import find_entry, load_predictor, save_and_register

    validate_model_name(args.name, [])  # before its members are loaded and scored
    refs = [ref.strip() for ref in args.models.split(",") if ref.strip()]
    if args.name in refs:
        raise FerError(f"{args.name}: an ensemble cannot take the name of one of its members; choose another name")
    registered = {e.name for e in read_manifest()}
    unknown = [ref for ref in refs if ref not in registered]
    if unknown:
        raise FerError(f"{', '.join(unknown)}: not in models/manifest.json; an ensemble finds its members by "
                       f"name, so register them first (known: {', '.join(sorted(registered)) or 'none'})")
    entries = [find_entry(ref) for ref in refs]
    if any(entry.kind == KIND for entry in entries):
        raise FerError("an ensemble cannot hold another ensemble; list its models instead")
    predictor = EnsemblePredictor([load_predictor(entry) for entry in entries],
                                  parse_classes(args.classes) if args.classes else None, name=args.name)
    metrics = Metrics()
    if args.val:
        report, _ = evaluate_images(predictor, scan_images(args.val).items, workers=args.workers or default_workers(),
                                    progress=_fraction_progress("images"))
        picked = [e.name for e in entries if picked_on_split(e.file, args.val)]
        but = f"; but it chose the epoch of {', '.join(picked)} or of the network they started from)"
        evaluated_on = (f"{Path(args.val).name} ({report.n:,} images, {len(predictor.classes)} emotions; equal "
                        "weights, nothing fitted on it" + (but if picked else ")"))
        metrics = Metrics.from_report(report, evaluated_on)
        print(f"{args.name}: accuracy {_score(report.accuracy)} (95% CI {_score(report.accuracy_ci95[0])}-"
              f"{_score(report.accuracy_ci95[1])}), macro-F1 {_score(report.macro_f1)} on {evaluated_on}")
    spec = EnsembleSpec(tuple(e.name for e in entries), predictor.classes, tuple(e.sha256 for e in entries))
    entry = save_and_register(spec, name=args.name, kind=KIND, classes=predictor.classes, metrics=metrics,
                              command=args.command_line, replace=True,
                              path=models_dir() / f"{args.name}.ensemble.json", description="mean of " + ", ".join(spec.members))
    print(f"registered {entry.name!r} ({', '.join(spec.members)} on {', '.join(spec.classes)}) in {_manifest_shown()}")
    return 0


def cmd_train_au_bottleneck(args) -> int:
    import time

    from .emotions import parse_classes
    from .predictors.au_bottleneck import train_au_bottleneck
    from .predictors.recipe import recipe_from_args
    from .predictors.registry import find_entry

    if args.epochs == 0 and args.no_warm_start:  # nothing would train the network: random weights
        raise FerError("--epochs 0 keeps the warm start as the model, and --no-warm-start leaves none; "
                       "give --epochs 1 or more, or drop --no-warm-start")
    _name_free(args.name, "au-bottleneck", args.out, args.replace)  # before the training, and again after it
    classes = parse_classes(args.classes)
    init = None if args.init.lower() == "none" else find_entry(args.init).file
    deadline = time.monotonic() + args.max_minutes * 60 if args.max_minutes else None
    bar = _tqdm_progress("epochs", total=args.epochs)
    with _deadline_explained(args.max_minutes):
        result = train_au_bottleneck(
            args.data, args.val, out=args.out, classes=classes, recipe=args.recipe, lam=args.lam, init=init,
            preset=args.preset, train_au_table=args.train_au_table, val_au_table=args.val_au_table, epochs=args.epochs,
            batch_size=args.batch_size, learning_rate=args.learning_rate, augment=not args.no_augment, seed=args.seed,
            holdout=args.holdout, warm_start=not args.no_warm_start, tap=args.tap,
            limit_per_class=args.limit_per_class, command=args.command_line, training=recipe_from_args(args),
            progress=lambda epoch, logs: bar(epoch + 1, args.epochs),
            should_stop=(lambda: time.monotonic() > deadline) if deadline else None, stop_reason=MAX_MINUTES_STOP,
            in_place=not args.name)  # registering: --out is replaced by the save that registers it
    _say_time_limit(result, args)
    sel, ev = result.selection, result.evaluation
    how = f"lambda {args.lam:g}, " if args.recipe == "joint" else ""
    print(f"{args.recipe} AU bottleneck ({how}tap {args.tap}), {result.epochs_run} epochs in {result.seconds / 60:.1f} min: "
          f"accuracy {_score(sel.accuracy)} on {result.selected_on}"
          + (f"; {_score(ev.accuracy)} (95% CI {_score(ev.accuracy_ci95[0])}-{_score(ev.accuracy_ci95[1])}), macro-F1 "
             f"{_score(ev.macro_f1)} on {result.evaluated_on}" if ev else "")
          + f"; AU fidelity mean r {result.fidelity['mean']:.3f} -> {printable(args.out)}")
    if args.name:
        _register_training(result, name=args.name, kind="au-bottleneck", classes=classes,
                           command=args.command_line, out=args.out, replace=args.replace)
    return 0


MAX_MINUTES_STOP = "max-minutes"  # the sidecar's ``stopped_by`` of a run --max-minutes ended


def _say_time_limit(result, args) -> None:
    """A run --max-minutes ended: how many epochs it had, and that the same command elsewhere (or
    under another load) runs another number of them; the sidecar records ``stopped_by``."""
    if result.stopped_by_user and result.epochs_run < args.epochs:
        print(f"stopped by --max-minutes {args.max_minutes:g} after {result.epochs_run} of {args.epochs} epochs: the "
              "same command on another machine, or under another load, trains for another number of epochs "
              "(its sidecar records \"stopped_by\": \"max-minutes\" and epochs_run)", file=sys.stderr)


@contextlib.contextmanager
def _deadline_explained(max_minutes: float | None):
    """A training that ``--max-minutes`` stopped before its first epoch ended says so, in those words."""
    try:
        yield
    except StoppedBeforeAnEpoch:
        if not max_minutes:
            raise
        raise FerError(f"--max-minutes {max_minutes:g} ran out before the first epoch finished: there is "
                       "nothing to save; give it more minutes") from None


def _register_training(result, *, name: str, kind: str, classes, command: str, out: str,
                       replace: bool = False) -> None:
    """A training left at its training path (``in_place=False``) saved to ``out`` and registered:
    a registered ``out`` keeps its version until the manifest names the new one. Should that
    fail, the trained network stays where it is and the error says where. The name is checked
    again (``_name_free``): a model registered under it during hours of training is not replaced
    without ``--replace``."""
    from .predictors.cnn import remove_training
    from .predictors.registry import save_and_register

    try:
        replacing = _name_free(name, kind, out, replace)
        save_and_register(result, name=name, kind=kind, classes=classes, metrics=result.metrics, command=command,
                          path=out, replace=replace)
    except FerError as exc:
        raise FerError(f"{one_line(exc)}; the trained model is kept in {printable(str(result.path))}") from None
    remove_training(Path(result.path))
    print(f"registered as {name!r} in {_manifest_shown()}{replacing}")


def cmd_export_lite(args) -> int:
    from .predictors.cnn import read_cnn_metadata
    from .predictors.lite import lite_record
    from .predictors.registry import find_entry, get_kind

    entry = find_entry(args.model)
    kind = get_kind(entry.kind)
    if kind.export_lite is None:
        raise FerError(f"{args.model}: {entry.kind} models have no TensorFlow Lite twin; only this project's CNN "
                       "and AU-bottleneck .keras models get one")
    entry.verify_checksum()
    twin = kind.export_lite(entry.file)
    record = lite_record(read_cnn_metadata(entry.file)) or {}
    print(f"{printable(str(twin))} ({twin.stat().st_size / 2**20:.1f} MB, sha256 {record.get('sha256', '?')[:12]}…, made from "
          f"{entry.file.name} sha256 {record.get('keras_sha256', '?')[:12]}…; max abs difference to Keras on test "
          f"inputs {record.get('max_abs_diff_check', float('nan')):.1g})")
    return 0


# -- helpers -------------------------------------------------------------------------------
def _return_freed_memory() -> None:
    """Commands that read AU tables: let pyarrow (pandas' strings) hand freed memory back to the
    system. Its default pool (mimalloc) keeps it, which costs 100-200 MB of peak on a table of
    millions of rows; jemalloc, else the system allocator, does not. ARROW_DEFAULT_MEMORY_POOL wins."""
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return
    try:
        import pyarrow as pa
    except ImportError:
        return
    for pool in ("jemalloc_memory_pool", "system_memory_pool"):
        try:
            pa.set_memory_pool(getattr(pa, pool)())
            return
        except (AttributeError, NotImplementedError):
            continue


LOGGED_PROGRESS_S = 10.0  # a progress bar written to a log (FER_PROGRESS=1) draws a line this often


def _tqdm_progress(desc: str, total: int | None = None, bar_format: str | None = None):
    from tqdm import tqdm

    # No monitor thread: while a second thread runs, TensorFlow's C++ start-up lines cannot be
    # kept off stderr (measure.landmarker.quiet_native_logs), and errors must stay one line.
    tqdm.monitor_interval = 0
    tty = sys.stderr.isatty()
    bar = tqdm(total=total, desc=desc, bar_format=bar_format, disable=not tty and os.environ.get("FER_PROGRESS") != "1",
               mininterval=0.1 if tty else LOGGED_PROGRESS_S)

    def update(done: int, total_now: int, text: str | None = None) -> None:
        bar.total = total_now
        if text is not None:  # what runs now ("model 5 of 9, cnn-fer2013: 1,152 of 3,000 faces")
            bar.set_postfix_str(text, refresh=False)
        bar.update(done - bar.n)  # drawn at most every mininterval: a log got a line per image
        if done >= total_now:
            bar.close()

    return update


def _fraction_progress(desc: str):
    """A (fraction, text) progress, as the comparison reports it, on a tqdm bar of percents (a count
    of a made-up 1000 "it" and its rate read as images in a log)."""
    bar = _tqdm_progress(desc, 1000, bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}] {postfix}")
    return lambda fraction, text: bar(int(round(1000 * min(max(fraction, 0.0), 1.0))), 1000, text)


def _print_report(r) -> None:
    lo, hi = r.accuracy_ci95
    kappa = "" if r.kappa is None else f", Cohen's kappa {_score(r.kappa)}" + (  # "to": it can be below 0
        "" if r.kappa_ci95 is None else f" (95% CI {_score(r.kappa_ci95[0])} to {_score(r.kappa_ci95[1])})")
    f1_interval = "" if r.macro_f1_ci95 is None else f" (95% CI {_score(r.macro_f1_ci95[0])}-{_score(r.macro_f1_ci95[1])})"
    print(f"{r.model}: n {r.n}, accuracy {_score(r.accuracy)} (95% CI {_score(lo)}-{_score(hi)}), "
          f"macro-F1 {_score(r.macro_f1)}{f1_interval}, no face {r.no_face}{kappa}")
    if r.calibration is not None:
        print(f"  {_calibration_words(r.calibration)}")
    if r.log_loss is not None:  # proper scoring rules: how good the probabilities are, not only the answers
        print(f"  log loss {_score(r.log_loss)}, Brier score {_score(r.brier)} (lower is better)")

    def figure(value: float | None) -> str:
        return "   -" if value is None else f"{value:.2f}"

    from .evaluation.metrics import wilson_counts

    for emotion, v in r.per_class.items():  # accuracy is the emotion's recall, with its 95% Wilson interval
        low, high = wilson_counts(round(v.accuracy * v.n), v.n) if v.n and v.accuracy is not None else (None, None)
        interval = f" ({low:.2f}-{high:.2f})" if low is not None else "            "
        sure = r.calibration_by_answer.get(emotion)  # beside precision, the share right of its answers
        confidence = "" if sure is None else (f"  sure {figure(sure.mean_confidence)} on its {sure.n:,} "
                                              f"answer{'s' if sure.n != 1 else ''} of it"
                                              + (f" ({CALIBRATION_READINGS[sure.direction]})"
                                                 if sure.direction in ("over", "under") else ""))
        print(f"  {emotion:9s} n {v.n:5d}  accuracy {figure(v.accuracy)}{interval}  precision {figure(v.precision)}  "
              f"F1 {figure(v.f1)}{confidence}")
    if r.calibration_by_answer:
        print("  (sure: mean confidence of its answers of that emotion, against their precision; over- or "
              "underconfident where the gap's interval leaves out 0, Bonferroni over the emotions answered)")


def _calibration_words(c) -> str:
    """One report's ``Calibration`` in a line: how sure it said it was, how often it was right."""
    from .evaluation.metrics import CONFIDENCE_BINS

    way = CALIBRATION_READINGS[c.direction]
    # the gap's band is a calibrated model's spread (the score test), not a confidence interval of
    # the gap: it is said as what it is
    interval = "" if c.gap_ci95 is None else (f", gap {_score(c.gap, signed=True)} (a calibrated model's stays "
                                              f"within ±{_score((c.gap_ci95[1] - c.gap_ci95[0]) / 2)} 95 times in 100 here)")
    chance = "" if c.chance_ece is None else f" (a calibrated model stays under {_score(c.chance_ece)} 95 times in 100 here)"
    return (f"confidence {_score(c.mean_confidence)} on average over {c.n:,} answers, right on {_score(c.accuracy)} "
            f"of them{interval}: {way}; calibration error (ECE, {CONFIDENCE_BINS} bins) {_score(c.ece)}{chance}")


CALIBRATION_READINGS = {"over": "overconfident", "under": "underconfident",
                        "mixed": "off beyond chance, in no direction these answers can tell",
                        "even": "calibrated as far as these answers can tell"}


def _jsonable(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)
