"""The same inputs give the same outputs: whatever order the file system lists files in, with one
worker or two, measured afresh or from the cache, and run twice (researchers publish these numbers)."""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
from functools import partial
from pathlib import Path

import pandas as pd
import pytest
from conftest import BUNDLED_AU_MODEL, copy_fer_sample

from fer_core.emotions import SIX_EMOTIONS
from fer_core.images import LabeledImage, SkippedFile, draw_test_set, scan_images


def _made_up_split(root: Path, per_class: int = 12) -> Path:
    """A split of ``per_class`` small files per emotion (draw-testset copies them unread)."""
    for emotion in SIX_EMOTIONS:
        (root / emotion).mkdir(parents=True)
        for i in range(per_class):
            (root / emotion / f"{emotion}_{i:03d}.jpg").write_bytes(f"{emotion} {i}".encode())
    return root


def _drawn(out: Path) -> list[tuple[str, bytes]]:
    return sorted((p.relative_to(out).as_posix(), p.read_bytes()) for p in out.rglob("*") if p.is_file())


@pytest.fixture
def listing_order(monkeypatch):
    """Make every folder listing come in the order ``arrange`` puts it (as ext4, XFS, tmpfs or a
    network share each list the same folder in an order of their own)."""
    real_iterdir, real_scandir, real_listdir = Path.iterdir, os.scandir, os.listdir

    class Scandir(list):  # os.scandir's answer is also a context manager
        def __enter__(self):
            return iter(self)

        def __exit__(self, *exc) -> None:
            return None

        def close(self) -> None:
            return None

    def scandir(path=".") -> Scandir:
        with real_scandir(path) as entries:
            return Scandir(arrange_now[0](list(entries)))

    arrange_now = [lambda entries: entries]

    def use(arrange) -> None:
        arrange_now[0] = arrange
        monkeypatch.setattr(Path, "iterdir", lambda self: iter(arrange(list(real_iterdir(self)))))
        monkeypatch.setattr(os, "scandir", scandir)
        monkeypatch.setattr(os, "listdir", lambda path=".": arrange(list(real_listdir(path))))

    return use


def test_a_seed_draws_the_same_files_whatever_order_the_folders_are_listed_in(tmp_path, listing_order):
    split = _made_up_split(tmp_path / "val")
    draws = []
    def by_name(entry) -> str:
        return getattr(entry, "name", str(entry))

    for name, arrange in (("backwards", lambda entries: sorted(entries, key=by_name, reverse=True)),
                          ("shuffled", lambda entries: random.Random(7).sample(entries, len(entries))),
                          ("by name", lambda entries: sorted(entries, key=by_name))):
        listing_order(arrange)
        assert [p.name for p in split.iterdir()] == [by_name(e) for e in arrange(list(os.scandir(split)))]
        out = tmp_path / name
        draw_test_set(split, out, per_class=3, seed=5)
        draws.append(_drawn(out))
    assert draws[0] == draws[1] == draws[2] and len(draws[0]) == 18
    # the emotions asked for in another order draw the same files
    draw_test_set(split, tmp_path / "emotions reversed", per_class=3, seed=5, classes=SIX_EMOTIONS[::-1])
    assert _drawn(tmp_path / "emotions reversed") == draws[0]


def test_a_copy_through_a_mac_draws_and_lists_the_same_images(tmp_path):
    """macOS puts a ``._name.jpg`` beside each file it copies to a network share or a FAT drive:
    before, they were listed as images, so a seed drew another set there (and ``._`` files, no
    images at all, among it), and ``extract`` wrote a failure row for each."""
    split = _made_up_split(tmp_path / "val")
    on_a_share = tmp_path / "share"
    shutil.copytree(split, on_a_share)
    for path in list(on_a_share.rglob("*.jpg")):
        (path.parent / f"._{path.name}").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (on_a_share / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    draw_test_set(split, tmp_path / "here", per_class=3, seed=5)
    draw_test_set(on_a_share, tmp_path / "there", per_class=3, seed=5)
    assert _drawn(tmp_path / "there") == _drawn(tmp_path / "here")
    listed = scan_images(on_a_share)
    assert [it.path.relative_to(on_a_share) for it in listed.items] == \
        [it.path.relative_to(split) for it in scan_images(split).items]
    assert listed.skipped == []


def test_extract_rows_come_in_file_order_whatever_order_the_images_are_given_in(tmp_path):
    """Before, rows followed the order of the items given, and the skipped files' rows came last."""
    from fer_core.measure.extract import extract_table

    items = [LabeledImage(tmp_path / "sad" / "b.jpg", "sad"), LabeledImage(tmp_path / "angry" / "a.jpg", "angry")]
    skipped = [SkippedFile("happy/drawing.svg", "happy", "SVG is a vector drawing; convert it to PNG or JPEG")]
    expected = ["angry/a.jpg", "happy/drawing.svg", "sad/b.jpg"]
    for given in (items, items[::-1]):
        table = extract_table(given, workers=1, use_cache=False, root=tmp_path, skipped=skipped)
        assert table["file"].tolist() == expected


def test_the_ray_engine_orders_rows_as_the_local_engine_does(tmp_path):
    """The Ray engine put skipped files' rows last: its table listed files in another order than
    the local engine's for the same folder."""
    from fer_core import au_table
    from fer_core.measure import extract, ray_engine

    names = ["sad/b.jpg", "angry/a.jpg"]  # as the actors' parts came back
    skipped = [SkippedFile("happy/drawing.svg", "happy", "SVG is a vector drawing; convert it to PNG or JPEG")]
    parts = au_table.from_rows([r for f in names for r in extract.rows_for_image(f, f.split("/")[0], "no face found")])
    table = ray_engine._assemble([parts], names, skipped)
    assert table["file"].tolist() == ["angry/a.jpg", "happy/drawing.svg", "sad/b.jpg"]


@pytest.fixture(scope="module")
def twelve_faces(tmp_path_factory, fer_val) -> Path:
    """Two real FER2013 val faces per emotion."""
    return copy_fer_sample(fer_val, tmp_path_factory.mktemp("twelve"), per_class=2)


def test_extract_gives_the_same_table_with_one_or_two_workers_and_from_the_cache(twelve_faces, tmp_path,
                                                                                 monkeypatch):
    from fer_core.measure.extract import extract_table

    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))
    listing = scan_images(twelve_faces)
    one = extract_table(listing.items, workers=1, use_cache=False, root=twelve_faces)
    two = extract_table(listing.items, workers=2, use_cache=True, root=twelve_faces)  # measures, fills the cache
    cached = extract_table(listing.items, workers=1, use_cache=True, root=twelve_faces)
    assert int(one["success"].sum()) >= 10  # real faces were measured, not twelve failure rows
    pd.testing.assert_frame_equal(one, two, check_exact=True)
    pd.testing.assert_frame_equal(one, cached, check_exact=True)
    written = [tmp_path / "one.csv", tmp_path / "two.csv"]
    from fer_core import au_table

    au_table.write(one, written[0])
    au_table.write(two, written[1])
    assert written[0].read_bytes() == written[1].read_bytes()


def test_compare_gives_the_same_predictions_and_scores_with_one_or_two_workers(twelve_faces, models_dir):
    from fer_core.evaluation.compare import run_comparison
    from fer_core.pipeline import prepare_faces

    items = scan_images(twelve_faces).items
    afresh = partial(prepare_faces, use_cache=False)  # each run measures its faces itself
    one, two = (run_comparison([BUNDLED_AU_MODEL], items, workers=w, prepare=afresh) for w in (1, 2))
    pd.testing.assert_frame_equal(one.table, two.table, check_exact=True)
    assert one.to_dict() == two.to_dict()
    assert (one.probabilities[BUNDLED_AU_MODEL] == two.probabilities[BUNDLED_AU_MODEL]).all()


def test_the_report_of_the_same_comparison_is_the_same_file(twelve_faces, models_dir, tmp_path):
    """Two drawn sets of the same files lie in temporary folders of random names: before, the wrong
    images' titles carried that folder, so two reports of one comparison differed."""
    from fer_core.evaluation.compare import run_comparison
    from fer_core.evaluation.report import ReportSettings, comparison_report_html

    created = "2026-01-01 00:00 UTC"  # the one thing meant to differ
    texts, unshown = [], []
    for name in ("fer_testset_k2j4", "fer_testset_x9q1"):
        folder = tmp_path / name
        shutil.copytree(twelve_faces, folder)
        comparison = run_comparison([BUNDLED_AU_MODEL], scan_images(folder).items)
        text = comparison_report_html(comparison, ReportSettings("two per emotion", str(folder), created))
        assert text.count(str(folder)) == 1  # its settings' Folder row, and nowhere else
        texts.append(text.replace(str(folder), "FOLDER"))
        drawn = ReportSettings.now("drawn from val, 2 per emotion, seed 0", folder, temporary=True)
        drawn.created = created
        unshown.append(comparison_report_html(comparison, drawn))
        assert name not in unshown[-1]  # a session's temporary folder is no part of the report
    assert texts[0] == texts[1] and unshown[0] == unshown[1]
    titles = re.findall(r'<figure class="thumb"><img [^>]*title="([^"]*)"', texts[0])
    listed = {it.path.relative_to(twelve_faces).as_posix() for it in scan_images(twelve_faces).items}
    assert titles and set(titles) <= listed  # each wrong image titled by its file in the set


def test_training_an_au_model_twice_with_a_seed_gives_the_same_file(tmp_path):
    from fer_core import au_table, config
    from fer_core.predictors.au_models import fit_au_model

    source = config.data_dir() / "fer2013_val_au.csv.gz"
    if not source.is_file():
        pytest.skip(f"{source} not present")
    table = au_table.read(source)
    table = table[table["label"].isin(SIX_EMOTIONS)].groupby("label", group_keys=False).head(60)
    files = []
    for i in range(2):
        model = fit_au_model(table, seed=3, Cs=(0.1, 1.0), description="sixty faces per emotion")
        model.info["trained"] = "2026-01-01T00:00:00Z"  # the one thing meant to differ
        files.append(tmp_path / f"model{i}.json")
        model.save(files[-1])
    assert files[0].read_bytes() == files[1].read_bytes()


def test_an_image_whose_name_starts_with_a_dot_is_said_as_skipped(tmp_path):
    """Dropping every dot file unsaid lost a researcher's ``.x.jpg`` without a word (a count short
    by one); only the metadata file systems leave (``._*``, ``.DS_Store``) goes unsaid."""
    from fer_core import i18n
    from fer_core.images import HIDDEN_IMAGE

    split = _made_up_split(tmp_path / "val", per_class=2)
    shutil.copy(next((split / "happy").iterdir()), split / "happy" / ".mine.jpg")
    (split / "happy" / "._mine.jpg").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    listed = scan_images(split)
    assert [(s.file, s.reason) for s in listed.skipped] == [("happy/.mine.jpg", HIDDEN_IMAGE)]
    assert ".mine.jpg" not in {it.path.name for it in listed.items}
    with i18n.using_language("ko"):
        assert i18n.reason(HIDDEN_IMAGE) != HIDDEN_IMAGE


def test_a_json_result_says_what_produced_it(tmp_path, capsys):
    """`evaluate --json` (and compare's, mask-report's) named its model and nothing else: a name may
    be another file after `train-au --name X --replace`, and neither the workbench's version nor the
    command was recorded. A `provenance` block now gives them, the model file's SHA-256 as the
    manifest checks it, and nothing that differs between two runs of the same command."""
    import json

    from fer_core import config
    from fer_core.cli import main
    from fer_core.manifest import read_manifest

    source = config.data_dir() / "fer2013_val_au.csv.gz"
    if not source.is_file():
        pytest.skip(f"{source} not present")
    table = tmp_path / "some faces.csv"
    pd.read_csv(source).head(300).to_csv(table, index=False)
    runs = []
    for _ in range(2):
        assert main(["evaluate", "--model", BUNDLED_AU_MODEL, "--au-table", str(table), "--json"]) == 0
        runs.append(capsys.readouterr().out)
    assert runs[0] == runs[1]  # a pipeline may compare two runs' files
    made = json.loads(runs[0])["provenance"]
    sha256 = next(e.sha256 for e in read_manifest() if e.name == BUNDLED_AU_MODEL)
    assert made["models"] == {BUNDLED_AU_MODEL: sha256}
    assert made["command"] == f"python -m fer_core evaluate --model {BUNDLED_AU_MODEL} --au-table '{table}' --json"
    assert made["workbench"] and made["versions"]["numpy"] and made["cwd"] == os.getcwd()
    if (config.REPO_ROOT / ".git").exists() and shutil.which("git"):
        assert re.fullmatch(r"[0-9a-f]{40}(\+modified)?", made["commit"]), made["commit"]


@pytest.mark.skipif(not shutil.which("git") or os.geteuid() != 0, reason="needs git, and root to hand a checkout to another user")
def test_the_commit_is_recorded_from_a_checkout_another_user_owns_and_its_index_is_left_alone(tmp_path, monkeypatch):
    """A cluster admin installs the workbench; a lab's jobs run it as another user. git refused the
    checkout as "dubious ownership", and every result's commit was null without a word."""
    from fer_core import config, provenance

    checkout = tmp_path / "install"
    subprocess.run(["git", "init", "-q", str(checkout)], check=True)
    (checkout / "a.py").write_text("x = 1\n")
    subprocess.run(["git", "-C", str(checkout), "add", "a.py"], check=True)
    subprocess.run(["git", "-C", str(checkout), "-c", "user.name=a", "-c", "user.email=a@b", "commit", "-qm", "a"],
                   check=True)
    head = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    os.utime(checkout / "a.py")  # a stat change git's status would write back into its index
    index_before = (checkout / ".git" / "index").read_bytes()
    subprocess.run(["chown", "-R", "1234:1234", str(checkout)], check=True)
    monkeypatch.setattr(config, "REPO_ROOT", checkout)
    provenance.source_commit.cache_clear()
    try:
        assert provenance.source_commit() == head
    finally:
        provenance.source_commit.cache_clear()
    assert (checkout / ".git" / "index").read_bytes() == index_before


def test_a_result_records_each_networks_sidecar_which_changes_its_answers():
    """Two JSON results with the same provenance held different accuracies: the sidecar's test-time
    views ("tta") had been edited, and only the model file's checksum was kept."""
    from fer_core import config
    from fer_core.provenance import models_sidecars, provenance, sidecar_sha256

    made = provenance("x", sidecars=models_sidecars(["cnn-fer2013", BUNDLED_AU_MODEL, "no-such-model"]))
    bundled = config.REPO_ROOT / "models"
    assert made["sidecars"] == {"cnn-fer2013": sidecar_sha256(bundled / "cnn_fer2013.keras")}
    assert re.fullmatch("[0-9a-f]{64}", made["sidecars"]["cnn-fer2013"])
    assert provenance("x")["sidecars"] == {}  # always there: a reader's key
    members = provenance("x", sidecars=models_sidecars(["cnn-ensemble-fer2013"]))["sidecars"]  # its members' decide it
    assert set(members) == {"cnn-fer2013", "au-bottleneck-fer2013", "cnn-fer2013-7", "cnn-fer2013-7-scratch"}
