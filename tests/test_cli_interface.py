"""The command line as one interface: help that says each option's meaning and default, the exit
statuses documented, and errors on stderr with the same status whatever the output format."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from fer_core.cli import _parser, main
from fer_core.config import REPO_ROOT


def _commands() -> dict[str, argparse.ArgumentParser]:
    commands = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(commands.choices)


def _own_actions(command: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in command._actions if not isinstance(a, (argparse._HelpAction, argparse._VersionAction))]


def test_every_option_says_what_it_is_and_its_default():
    """`draw-testset --help` listed --per-class, --classes and --seed with nothing beside them, and
    `predict --help` did not say which model or how many AUs it uses unless told."""
    silent, default_unsaid = [], []
    for name, command in _commands().items():
        for action in _own_actions(command):
            label = f"{name} {action.option_strings[0] if action.option_strings else action.dest}"
            if not action.help:
                silent.append(label)
            elif action.default not in (None, False) and "default" not in action.help:
                default_unsaid.append(f"{label} (default {action.default!r})")
    assert silent == [], f"options with no help: {silent}"
    assert default_unsaid == [], f"options whose help does not say their default: {default_unsaid}"


def test_the_help_names_the_exit_statuses(capsys):
    """A script must tell an error from an interrupted run; `--help` said nothing of the statuses."""
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    out, _ = capsys.readouterr()
    assert exit_.value.code == 0
    statuses = out.split("exit status:", 1)[1]
    for status, meaning in (("0", "done"), ("2", "error"), ("130", "Ctrl-C"), ("143", "SIGTERM"), ("141", "head")):
        line = next((line for line in statuses.splitlines() if status in line.split()[:2]), "")
        assert meaning in line, f"status {status}: {line!r}"


def test_predict_json_says_each_failed_image_on_stderr_too(tmp_path):
    """`predict a.jpg b.jpg --json > out.json` ended with status 2 and an empty stderr: why it
    failed was only inside the JSON. Now each failed image is one line on stderr as well, and
    stdout is the JSON alone."""
    missing, not_image = tmp_path / "gone.jpg", tmp_path / "notes.jpg"
    not_image.write_text("hello")
    run = subprocess.run([sys.executable, "-m", "fer_core", "predict", str(missing), str(not_image), "--json"],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    results = json.loads(run.stdout)
    assert run.returncode == 2 and [r["file"] for r in results] == [str(missing), str(not_image)]
    lines = run.stderr.strip().splitlines()
    assert lines == [r["error"] for r in results], run.stderr
    assert lines[0].startswith(str(missing)) and lines[1].startswith(str(not_image))


def test_a_cnn_run_keeps_litert_chatter_off_stderr(fer_sample, tmp_path):
    """`evaluate --model cnn-fer2013 --json` wrote "INFO: Created TensorFlow Lite XNNPACK delegate
    for CPU." on stderr, where a script reads only the workbench's own notes and errors."""
    folder = tmp_path / "two"
    for emotion in ("happy", "sad"):
        (folder / emotion).mkdir(parents=True)
        src = next((fer_sample / emotion).glob("*.jpg"))
        (folder / emotion / src.name).write_bytes(src.read_bytes())
    run = subprocess.run([sys.executable, "-m", "fer_core", "evaluate", "--model", "cnn-fer2013", "--images",
                          str(folder), "--json"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and json.loads(run.stdout)["n"] == 2
    assert "INFO" not in run.stderr and "XNNPACK" not in run.stderr, run.stderr


def _mask_report_with_a_failed_model(tmp_path, monkeypatch):
    from PIL import Image

    import fer_core.evaluation.mask_report as mask_report
    from fer_core.evaluation.metrics import McNemarResult

    (tmp_path / "faces" / "happy").mkdir(parents=True)
    Image.new("RGB", (64, 64)).save(tmp_path / "faces" / "happy" / "a.png")
    scores = {"happy": SimpleNamespace(n=40, accuracy=0.9)}
    failed = "broken: model 'broken' not found"
    original = SimpleNamespace(failed_models=[failed], unreadable=[], several_faces=[], skipped={}, unlabelled=0, cannot_predict={}, unscored_answer_counts={}, tie_notes=list, source_notes=list, learned_notes=list, never_notes=list, n=40,
                               classes=("happy",),
                               reports={"fine": SimpleNamespace(accuracy=0.9, per_class=scores)})
    masked = SimpleNamespace(reports={"fine": SimpleNamespace(accuracy=0.5, per_class=scores)}, mcnemar=[])
    report = SimpleNamespace(original=original, masked=masked, unmaskable=[], not_placed=0, reasons_failed=[], crop_like_no_face=[],
                             names=["fine"], empty_classes=[], to_dict=lambda: {"failed_models": [failed]},
                             paired_test=lambda name: McNemarResult("original", "masked", 16, 0, 0.001))
    monkeypatch.setattr(mask_report, "run_mask_report", lambda *a, **k: report)
    monkeypatch.setattr("fer_core.predictors.registry.find_entry", _made_up)  # models made up for the test
    return tmp_path / "faces", failed


@pytest.mark.parametrize("output", [[], ["--json"]])
def test_mask_report_ends_with_status_2_when_a_model_could_not_run(capsys, tmp_path, monkeypatch, output):
    """compare ends with 2 when a model could not run (the others' results are given);
    mask-report said the same failure and ended with 0, so a script took the table as whole."""
    faces, failed = _mask_report_with_a_failed_model(tmp_path, monkeypatch)
    code = main(["mask-report", "--images", str(faces), "--models", "fine,broken", *output])
    out, err = capsys.readouterr()
    assert code == 2 and f"model left out: {failed}" in err
    if output:
        assert json.loads(out)["failed_models"] == [failed]
    else:
        assert out.splitlines()[-1].split()[:3] == ["fine", "0.900", "0.500"]


def test_ensemble_help_promises_only_what_it_takes(capsys, tmp_path, monkeypatch):
    """`ensemble --help` offered "manifest names or model files"; a model file was refused
    ("not in models/manifest.json ... register them first")."""
    monkeypatch.setenv("FER_MODELS_DIR", str(tmp_path / "models"))
    model_file = REPO_ROOT / "models" / "au_logreg_fer2013.json"
    code = main(["ensemble", "--models", f"{model_file},{model_file}", "--name", "my-ensemble"])
    _, err = capsys.readouterr()
    assert code == 2 and "register them first" in err
    models_help = next(a.help for a in _commands()["ensemble"]._actions if a.dest == "models")
    assert "file" not in models_help.split("(")[0] and "register" in models_help


def test_a_typo_gets_the_one_meant_not_every_command(capsys):
    """`extrct` listed all fourteen commands before "did you mean 'extract'?", which came last, past
    the width of a terminal. With a close guess the list is left out; without one it stays."""
    for args, kept_list in ((["extrct", "d"], False), (["zzz"], True)):
        with pytest.raises(SystemExit) as exit_:
            main(args)
        _, err = capsys.readouterr()
        assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1
        assert ("choose from" in err) is kept_list and ("did you mean 'extract'?" in err) is not kept_list
        assert len(err) < 120 or kept_list, err


def test_models_lists_in_columns_and_says_when_there_are_none(capsys, tmp_path, monkeypatch):
    """The kind column was 10 wide: an au-bottleneck entry pushed its path one column right of the
    others'. An empty manifest printed nothing at all, as if the command had not run."""
    from fer_core.manifest import write_manifest
    from fer_core.predictors.registry import find_entry

    entries = [find_entry("au-logreg-fer2013"), find_entry("au-bottleneck-fer2013")]
    folder = tmp_path / "models"
    folder.mkdir()
    write_manifest(entries, folder)
    monkeypatch.setenv("FER_MODELS_DIR", str(folder))
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines] == ["au-logreg", "au-bottleneck"]
    path_columns = {line.index(line.split()[2]) for line in lines}
    assert len(path_columns) == 1, lines
    assert not any("file missing" in line for line in lines)
    from dataclasses import replace

    write_manifest([replace(entries[0], path=str(tmp_path / "gone.json")), entries[1]], folder)
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()  # a moved or deleted file is said where it is listed
    assert lines[0].endswith(f"(file missing: {tmp_path / 'gone.json'})") and "file missing" not in lines[1]

    monkeypatch.setenv("FER_MODELS_DIR", str(tmp_path / "none"))
    assert main(["models"]) == 0
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("no models in ") and "--name" in err and err.count("\n") == 1


def test_a_misspelled_required_option_is_named_not_only_said_missing(capsys):
    """`train-au t.csv --ouut m.json` said only "required: --out", which the user thought given;
    the line now names the word meant for it."""
    with pytest.raises(SystemExit) as exit_:
        main(["train-au", "t.csv", "--ouut", "m.json"])
    _, err = capsys.readouterr()
    assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1
    assert "required: --out" in err and "did you mean '--out' for '--ouut'?" in err
    with pytest.raises(SystemExit):  # an abbreviation argparse takes is no typo
        main(["extract", "d", "--work", "2"])
    assert "did you mean" not in capsys.readouterr().err


def test_an_unknown_option_before_the_command_is_not_blamed_on_the_command(capsys):
    """`--jsn models` said "see python -m fer_core models --help", though the option came before
    `models` and was never one of its options."""
    with pytest.raises(SystemExit) as exit_:
        main(["--jsn", "models"])
    _, err = capsys.readouterr()
    assert exit_.value.code == 2 and "unrecognized arguments: --jsn" in err
    assert "(see python -m fer_core --help)" in err


def test_a_step_that_measured_no_face_fails_the_pipeline(tmp_path, astronaut_jpeg):
    """`extract` of a folder where no file gave a face exited 0 ("2 images, 0 faces"), so a Makefile
    went on to `train-au`'s puzzling "needs at least 10 usable faces"; and `predict` of a photo with
    no face exited 0 where an unreadable one exited 2. Both are now status 2; the table is still
    written (a row per file saying why), and a batch where some files fail stays 0."""
    from PIL import Image

    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "notes.jpg").write_text("not an image")
    blank = folder / "blank.png"
    Image.new("RGB", (200, 200), (128, 128, 128)).save(blank)
    out = tmp_path / "au.csv"
    run = subprocess.run([sys.executable, "-m", "fer_core", "extract", str(folder), "--out", str(out), "--no-cache"],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith("error: no face was measured"), run.stderr
    import pandas as pd

    assert len(pd.read_csv(out)) == 2  # written all the same, a row per file
    (folder / "face.jpg").write_bytes(astronaut_jpeg.read_bytes())  # one face among them: done, failures as rows
    run = subprocess.run([sys.executable, "-m", "fer_core", "extract", str(folder), "--out", str(out), "--no-cache"],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr

    run = subprocess.run([sys.executable, "-m", "fer_core", "predict", str(blank), "--json"],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "no face" in json.loads(run.stdout)["error"], run.stderr


def test_a_keras_run_says_nothing_of_a_missing_gpu_driver():
    """`export-lite` and a Keras prediction ended well with "E0000 ... failed call to cuInit" on stderr
    (TensorFlow probing a GPU at the first model call, after its import was quietened): a CI job that
    takes an "E" line on stderr for a failure stopped. The devices are probed inside the quiet import."""
    code = ("import numpy as np\nfrom fer_core.predictors.keras_io import import_keras\nkeras = import_keras()\n"
            "model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])\n"
            "print(model.predict(np.zeros((1, 2)), verbose=0).shape)")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a user's shell has it
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                         env=env)
    assert run.returncode == 0 and run.stdout.strip() == "(1, 1)", run.stderr
    assert run.stderr.strip() == "", run.stderr


def test_every_environment_variable_read_is_in_the_readme_table():
    """FER_LITE_THREADS, FER_NATIVE_LOGS and the video and decoding limits were read by the code and
    written nowhere a user would look: the README's table lists every one the code reads."""
    import re

    read: set[str] = set()
    for path in [REPO_ROOT / "app.py", *(REPO_ROOT / d for d in ("fer_core", "ui", "pages"))]:
        for source in ([path] if path.is_file() else path.rglob("*.py")):
            text = source.read_text(encoding="utf-8")
            read |= set(re.findall(r"""["'](FER_[A-Z_]+)["']""", text))
            read |= {f"FER_{name}" for name in re.findall(r"""_limit\(["']([A-Z_]+)["']""", text)}
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("**Environment variables**", 1)[1].split("\n\n")[1]  # the table after its line
    assert len(read) > 10 and sorted(v for v in read if f"`{v}" not in table) == []


def test_models_says_which_listed_models_cannot_be_used(capsys, tmp_path, monkeypatch):
    """A save killed between the model file and the manifest left the new file under the registered
    name: predict refused it, but models listed it as usable with the old file's scores and checksum,
    and a model missing from the user's own folder was said missing from the repository's (a
    reliability review)."""
    import shutil

    from fer_core.manifest import previous_path, write_manifest
    from fer_core.predictors.registry import find_entry

    folder = tmp_path / "models"
    folder.mkdir()
    bundled = find_entry("au-logreg-fer2013")
    for name in ("mine.json", "gone.json"):
        shutil.copy(bundled.file, folder / name)
    from dataclasses import replace

    write_manifest([replace(bundled, name="mine", path="models/mine.json"),
                    replace(bundled, name="gone", path="models/gone.json")], folder)
    monkeypatch.setenv("FER_MODELS_DIR", str(folder))
    (folder / "mine.json").rename(previous_path(folder / "mine.json"))  # the save: the registered file kept aside,
    (folder / "mine.json").write_text(bundled.file.read_text().replace('"C"', '"C" '))  # the new one in its place
    (folder / "gone.json").unlink()
    assert main(["models"]) == 0
    mine, gone = capsys.readouterr().out.splitlines()
    assert "(cannot be used: " in mine and "replaced by a save that did not finish" in mine
    assert gone.endswith(f"(file missing: {folder / 'gone.json'})")
    assert main(["models", "--json"]) == 0
    listed = {m["name"]: m for m in json.loads(capsys.readouterr().out)}
    assert "did not finish" in listed["mine"]["problem"] and listed["mine"]["file_present"]
    assert "is missing" in listed["gone"]["problem"] and listed["gone"]["file"] == str(folder / "gone.json")
    assert main(["predict", "--model", "gone", "x.jpg"]) == 2
    assert f"{folder / 'gone.json'}: model file of 'gone' is missing" in capsys.readouterr().err


def test_models_lists_as_json_for_a_script(capsys):
    """`models` printed columns only, so a script parsed them or read manifest.json itself."""
    from fer_core.manifest import read_manifest

    assert main(["models", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    entries = read_manifest()
    assert [m["name"] for m in listed] == [e.name for e in entries]
    assert all(m["file_present"] and m["sha256"] == e.sha256 and m["file"] == str(e.file) and m["problem"] is None
               for m, e in zip(listed, entries))


def test_a_logged_comparison_shows_percents_not_a_made_up_count(monkeypatch, capsys):
    """With FER_PROGRESS=1 into a log, compare's bar read "1000/1000 [... 3697.14it/s]" for 24 images,
    without the model it was running; and every update wrote a line (253 KB of log for 3,589 images)."""
    from fer_core.cli import _fraction_progress

    monkeypatch.setenv("FER_PROGRESS", "1")
    progress = _fraction_progress("predicting")
    for i in range(1, 1001):
        progress(i / 1000, f"model 2 of 3, cnn-fer2013: {i:,} of 1,000 faces")
    err = capsys.readouterr().err
    assert "predicting: 100%" in err and "model 2 of 3, cnn-fer2013: 1,000 of 1,000 faces" in err
    assert "1000/1000" not in err and "it/s" not in err, err
    assert len(err.replace("\r", "\n").splitlines()) <= 4, err  # drawn every 10 s into a log, and at the end


def test_a_file_named_like_an_option_says_how_to_give_it(tmp_path, monkeypatch, capsys):
    """``predict --jsonl *`` in a folder holding "--help.jpg" stopped the whole run with
    "unrecognized arguments", and nothing said that a file was meant, or how to give it."""
    from fer_core.cli import main

    (tmp_path / "--help.jpg").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        main(["predict", "--jsonl", "--help.jpg"])
    assert stop.value.code == 2
    assert "(--help.jpg is a file: put -- before the files, or write ./--help.jpg)" in capsys.readouterr().err


def test_a_blank_or_one_pixel_picture_gets_no_emotion(tmp_path, capsys):
    """A format reviewer's 1 px PNG and plain grey 48 px PNG: predict with the AU-bottleneck network
    gave "happy, mostly because of AU23 lip tightener" (0.70), exit 0; in compare a CNN answered the
    1 px picture "angry"."""
    from PIL import Image

    from fer_core.cli import main

    Image.new("L", (48, 48), 128).save(tmp_path / "grey.png")
    Image.new("L", (1, 1), 0).save(tmp_path / "one_px.png")
    assert main(["predict", "--model", "au-bottleneck-fer2013", "--jsonl", str(tmp_path / "grey.png"),
                 str(tmp_path / "one_px.png")]) == 2
    grey, one = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert grey["faces"] == [] and grey["error"].endswith("no face: a blank picture, one colour")
    assert one["faces"] == [] and one["error"].endswith("no face: too small to hold a face, 1×1 px")
    (tmp_path / "set" / "angry").mkdir(parents=True)
    Image.new("L", (1, 1), 0).save(tmp_path / "set" / "angry" / "one_px.png")
    Image.new("L", (48, 48), 128).save(tmp_path / "set" / "angry" / "grey.png")
    assert main(["compare", "--images", str(tmp_path / "set"), "--models", "au-bottleneck-fer2013",
                 "--classes", "angry,happy", "--json", "--csv", str(tmp_path / "answers.csv")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["no_face"]["au-bottleneck-fer2013"] == ["angry/one_px.png"]  # grey.png answered: FER2013's protocol


def test_an_animated_pictures_first_frame_alone_is_read_and_predict_says_so(tmp_path, astronaut, capsys):
    """A two-frame GIF, grey then the face: "no face found … if the picture is a face crop, add
    --crops", the wrong advice (with it, the grey frame got an emotion); with the face first, nothing
    said the other frame was not read."""
    from PIL import Image

    from fer_core.cli import main

    face, grey = Image.fromarray(astronaut), Image.new("RGB", astronaut.shape[1::-1], (128, 128, 128))
    grey.save(tmp_path / "grey_first.gif", save_all=True, append_images=[face])
    face.save(tmp_path / "face_first.gif", save_all=True, append_images=[grey])
    assert main(["predict", "--jsonl", str(tmp_path / "grey_first.gif"), str(tmp_path / "face_first.gif")]) == 2
    grey_first, face_first = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert grey_first["error"].endswith("no face found in its first frame (a blank picture, one colour): an animated "
                                        "or multi-page image is read as its first frame only; save the frame to "
                                        "measure as an image of its own")
    assert "--crops" not in grey_first["error"]
    assert len(face_first["faces"]) == 1 and face_first["note"].startswith("an animated or multi-page image is read")


def test_try_it_says_why_a_blank_or_animated_upload_has_no_face(astronaut):
    """Try it gave its photo advice ("use a photo where the face is frontal, well lit ...") for a
    blank upload and for an animated one whose first frame is blank, as predict no longer does."""
    import io

    from PIL import Image

    from fer_core.pipeline import analyze_photo

    def png(im: Image.Image, **kw) -> bytes:
        buf = io.BytesIO()
        im.save(buf, format=kw.pop("format", "PNG"), **kw)
        return buf.getvalue()

    grey = Image.new("RGB", (200, 200), (128, 128, 128))
    assert analyze_photo(png(grey), "grey.png", None).error == "grey.png: no face: a blank picture, one colour"
    animated = png(grey, format="GIF", save_all=True, append_images=[Image.fromarray(astronaut).resize((200, 200))])
    assert analyze_photo(animated, "a.gif", None).error.startswith(
        "a.gif: no face found in its first frame (a blank picture, one colour): an animated or multi-page image")


def _made_up(ref):
    """``find_entry`` for a model name a test made up: no file, not a typo (compare checks names first)."""
    from fer_core.errors import ModelFileError

    raise ModelFileError(f"{ref}: made up for the test")


def test_a_run_started_with_its_output_closed_says_its_results_were_lost(tmp_path, fer_sample):
    """``evaluate --json >&-`` (a job script that closed stdout) ended with "unexpected
    AttributeError ... (a bug)"; a command that prints nothing there (extract) is not troubled."""
    env = {**os.environ, "FER_CACHE_DIR": str(tmp_path / "cache")}
    table = REPO_ROOT / "data" / "fer2013_val_au.csv.gz"
    done = subprocess.run(f"{sys.executable} -m fer_core evaluate --model au-logreg-fer2013 --au-table '{table}' "
                          "--json >&-", shell=True, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.splitlines()[-1] == (
        "error: standard output was closed, so the results printed there were lost; redirect it to a file instead")
    done = subprocess.run(f"{sys.executable} -m fer_core extract '{fer_sample}' --out au.csv --workers 1 >&-",
                          shell=True, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 0 and "error" not in done.stderr and (tmp_path / "au.csv").is_file()
