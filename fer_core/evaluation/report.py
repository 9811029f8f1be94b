"""One self-contained HTML file of a comparison, to attach to a paper or open offline.

The dashboard's Compare page and ``python -m fer_core compare --report`` write the same file:
the settings (test set, date, library versions), every model with its manifest entry, every
figure of Compare as an interactive plotly chart (plotly.js embedded once, inline: no CDN), the
tables, and the images each model got wrong as inline thumbnails. Text is written in the chosen
language (``fer_core.i18n``); nothing in the file is fetched from the network.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from ..errors import FerError
from ..i18n import FONT_FAMILY, embedded_font_css, emotion_label, kind_label, t, using_language
from ..manifest import ModelEntry
from ..provenance import (
    code_digest,
    installed_versions,
    measurement_record,
    source_commit,
    test_set_record,
    workbench_version,
)
from .compare import Comparison

THUMB_PX = 64  # thumbnails: FER crops are 48 px, shown a little larger
MAX_THUMBS_PER_MODEL = 300  # the predictions CSV lists every wrong image; the file stays a few MB


@dataclass
class ReportSettings:
    """What the comparison was run on, for the report's first table."""

    test_set: str
    root: str | None = None
    created: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    # ``root`` is a folder of the session (a drawn set's, an unpacked zip's), named at random and
    # gone when the session ends: not shown, so two reports of the same set read the same.
    temporary: bool = False
    # as compare --json's provenance: the images' digest (``test_set_record``), how faces were
    # measured, and the workbench code's own digest (an install without git has no commit)
    test_set_record: dict = field(default_factory=dict)
    measurement: dict = field(default_factory=dict)
    code_sha256: str = ""

    @classmethod
    def now(cls, test_set: str, root: str | Path | None = None, temporary: bool = False,
            paths: Sequence[str | Path] | None = None) -> "ReportSettings":
        """The settings of a comparison run just now on the images at ``paths``: the time (UTC), the
        installed versions, and the record a JSON result's provenance keeps."""
        commit = source_commit()
        versions = {"fer_core": workbench_version() + (f" ({commit})" if commit else ""), **installed_versions()}
        return cls(test_set=test_set, root=str(root) if root is not None else None,
                   created=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), versions=versions, temporary=temporary,
                   test_set_record=test_set_record(paths, root) if paths is not None else {},
                   measurement=measurement_record(), code_sha256=code_digest())


def registered_entries(refs: Sequence[str], names: Sequence[str]) -> dict[str, ModelEntry | None]:
    """The manifest entry of each compared model (by its name in the comparison), found from how it
    was given: a manifest name is that entry; a file is the entry whose file it is (the same
    resolved path and, where the manifest records one, the same SHA-256), else none ("not saved").
    Never by the file's name alone: ``other/au-logreg-fer2013.json`` is not the bundled model of
    that name, and its record (path, checksum, accuracy) would describe another file. No ``refs``:
    the manifest's models, as ``compare`` without --models runs them."""
    from ..manifest import read_manifest
    from ..predictors.registry import registered_as

    entries = read_manifest()
    by_name = {e.name: e for e in entries}
    found: dict[str, ModelEntry | None] = {}
    for ref in refs or list(by_name):
        if ref in by_name:  # as the registry resolves a reference: a manifest name first
            found[ref] = by_name[ref]
            continue
        path = Path(ref)
        if not path.exists():
            continue  # it could not be loaded, so it is not compared
        entry = registered_as(path, entries)
        found[entry.name if entry else path.stem] = entry  # named as the registry loads it
    return {name: found.get(name) for name in names}


def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


SMALL_EMOTION_N = 20  # per-emotion figures on fewer images than this get a word on how wide they are


def few_images_note(comparison: Comparison) -> str | None:
    """How few images the per-emotion figures rest on, where some emotion has fewer than
    ``SMALL_EMOTION_N``: "happy -> read as angry (+50 pts)" from 10 faces reads as a finding."""
    sizes = [s.n for r in comparison.reports.values() for s in r.per_class.values() if s.n]
    return t("report.few_images", n=min(sizes)) if sizes and min(sizes) < SMALL_EMOTION_N else None


def _table(frame: pd.DataFrame) -> str:
    from ..figures.compare import shown_table

    return shown_table(frame).to_html(index=False, escape=True, border=0, classes="data", na_rep="–")


def _key_values(rows: Sequence[tuple[str, object]]) -> str:
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return f'<table class="kv">{body}</table>'


def _thumbnail_uri(path: Path) -> str:
    from ..images import png_data_uri, thumbnail

    return png_data_uri(thumbnail(path, THUMB_PX))


def _model_section(name: str, kind: str, entry: ModelEntry | None, faces: bool = True) -> str:
    """A model's manifest record; without ``faces`` (a report to share outside a study) none of its
    paths: where its file lies, what it was measured on and its command name the study's folders."""
    rows: list[tuple[str, object]] = [(t("report.kind"), kind_label(kind))]
    if entry is None:
        rows.append((t("report.manifest"), t("report.not_saved")))
    else:
        m = entry.metrics
        rows.append((t("report.classes"), ", ".join(emotion_label(c) for c in entry.classes)))
        if faces:
            rows.append((t("report.path"), entry.path))
        if m.accuracy is not None:
            from ..figures.compare import percent

            ci = f" ({percent(m.accuracy_ci95[0])}–{percent(m.accuracy_ci95[1])})" if m.accuracy_ci95 else ""
            rows.append((t("report.manifest_accuracy"), f"{percent(m.accuracy)}{ci}"))
        if m.macro_f1 is not None:
            rows.append((t("compare.col_macro_f1"), f"{m.macro_f1:.3f}"))
        if m.evaluated_on and faces:
            rows.append((t("report.evaluated_on"), m.evaluated_on + (f" (n = {m.n:,})" if m.n else "")))
        for key, label in (("origin", t("report.origin")), ("command", t("report.command")),
                           ("sha256", "SHA-256")):
            if key == "command" and not faces:
                continue
            value = getattr(entry, key)
            if value:
                rows.append((label, value))
    return f"<h3>{_e(name)}</h3>" + _key_values(rows)


def _wrong_section(comparison: Comparison, name: str, root: str | None = None, faces: bool = True) -> str:
    """The images ``name`` got wrong, as thumbnails titled with their file relative to ``root``
    (a drawn set's random temporary folder, or where the set lies, is no part of the result);
    without ``faces``, their count only."""
    from ..images import relative_file

    wrong = comparison.table[~comparison.correct(name)]
    if wrong.empty:
        return f"<h3>{_e(name)}</h3><p>{_e(t('report.none_wrong'))}</p>"
    heading = t("report.wrong_of", model=name, wrong=len(wrong), n=comparison.n)
    if not faces:
        return f"<h3>{_e(heading)}</h3>"
    cells, failed = [], 0
    for _, row in wrong.head(MAX_THUMBS_PER_MODEL).iterrows():
        try:
            uri = _thumbnail_uri(comparison.path_of(row["file"]))
        except (FerError, OSError):
            failed += 1
            continue
        pred = row[name]
        caption = (f"{emotion_label(row['label'])} → "
                   f"{t('report.no_face') if pd.isna(pred) else emotion_label(pred)}")
        cells.append(f'<figure class="thumb"><img src="{uri}" alt="{_e(Path(str(row["file"])).name)}" '
                     f'title="{_e(relative_file(row["file"], root))}"><figcaption>{_e(caption)}</figcaption></figure>')
    notes = []
    if len(wrong) > MAX_THUMBS_PER_MODEL:
        notes.append(t("report.thumbs_first", shown=MAX_THUMBS_PER_MODEL, total=len(wrong)))
    if failed:
        notes.append(t("report.thumbs_failed", n=failed))
    note = "".join(f'<p class="note">{_e(n)}</p>' for n in notes)
    return f'<h3>{_e(heading)}</h3>{note}<div class="thumbs">{"".join(cells)}</div>'


def report_figures(comparison: Comparison) -> list:
    """The figures of the report, in order: overall accuracy, per emotion, one confusion matrix per
    model, then confidence against correctness (where a model gave probabilities), on the whole and
    per emotion answered, then the accuracy per group of each grouping column."""
    from ..figures.compare import (
        accuracy_ci_bars,
        accuracy_summary,
        answer_calibration_figure,
        answer_calibration_frame,
        calibration_frame,
        group_figure,
        per_emotion_grouped_bars,
        reliability_diagram,
    )
    from ..figures.plots import confusion_heatmap

    overall = {name: r.accuracy for name, r in comparison.reports.items()}
    figures = [accuracy_ci_bars(accuracy_summary(comparison)),
               per_emotion_grouped_bars(comparison.per_emotion_frame(), order=comparison.classes, overall=overall)]
    figures += [confusion_heatmap(r, title=t("report.confusion_of", model=name), unscored=comparison.unscored_answers(name))
                for name, r in comparison.reports.items()]
    bins = calibration_frame(comparison)
    if len(bins):
        figures.append(reliability_diagram(bins, order=comparison.names))
        answered = answer_calibration_frame(comparison)
        if len(answered):
            figures.append(answer_calibration_figure(answered, order=comparison.names, classes=comparison.classes))
    figures += [group_figure(analysis, order=comparison.names) for analysis in comparison.group_analyses().values()]
    return figures


# The charts' toolbar: the camera saves a chart as SVG (a vector figure for a manuscript), and no
# button offers to upload the chart (plotly.js's "Share chart...", on by default, sent a report meant
# to stay in the study, --no-faces included, to its cloud in two clicks).
CHART_CONFIG = {"showSendToCloud": False, "displaylogo": False,
                "toImageButtonOptions": {"format": "svg"}}


def comparison_report_html(comparison: Comparison, settings: ReportSettings,
                           entries: Sequence[ModelEntry] | Mapping[str, ModelEntry | None] = (),
                           lang: str = "en", faces: bool = True) -> str:
    """The whole report as one HTML string (a few MB: plotly.js is inline, once).

    ``entries`` are the manifest entries of the compared models (by name); a model without one
    (trained in this session, or loaded from a file) is listed as not saved. ``faces=False``: a
    report to share outside a study (an ethics board may allow no photo of a participant to leave
    it): no thumbnails, no file names, no folder, the counts of wrong answers kept.
    """
    from ..figures.compare import (
        accuracy_summary,
        answer_calibration_frame,
        answer_calibration_words,
        calibration_reading,
        calibration_summary,
        calibration_words,
        group_frames,
        group_gap_words,
        group_notes,
        mcnemar_frame,
        precision_recall_frame,
        summary_frame,
    )

    by_name = dict(entries) if isinstance(entries, Mapping) else {e.name: e for e in entries}
    with using_language(lang) as code:
        figures = report_figures(comparison)
        charts = "".join(
            f'<div class="figure">{fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"figure-{i}", config=CHART_CONFIG)}</div>'
            for i, fig in enumerate(figures))
        summary = accuracy_summary(comparison)
        settings_rows = [(t("report.test_set"), settings.test_set if faces else t("report.test_set_withheld")),
                         (t("report.images"), f"{comparison.n:,}"),
                         (t("report.emotions"), ", ".join(emotion_label(e) for e in comparison.classes)),
                         (t("report.created"), settings.created)]
        if not faces:
            settings_rows.append((t("report.faces"), t("report.faces_left_out")))
        elif settings.root and not settings.temporary and str(settings.root) not in str(settings.test_set):  # named once
            settings_rows.insert(1, (t("report.folder"), settings.root))
        if comparison.crops:  # the same folder scores otherwise without it
            settings_rows.append((t("report.crops"), t("report.crops_yes")))
        if comparison.skipped:
            settings_rows.append((t("report.skipped"),
                                  ", ".join(f"{n} {emotion_label(e)}" for e, n in comparison.skipped.items())))
        if comparison.unreadable:
            settings_rows.append((t("report.unreadable"), str(len(comparison.unreadable))))
        if comparison.unlabelled:
            settings_rows.append((t("report.unlabelled"), f"{comparison.unlabelled:,}"))
        for name, emotions in comparison.cannot_predict.items():  # its 0 on them is no measurement
            settings_rows.append((t("report.cannot_predict", model=name), ", ".join(map(emotion_label, emotions))))
        settings_rows.append((t("report.versions"), ", ".join(f"{k} {v}" for k, v in settings.versions.items())))
        if settings.test_set_record:  # as compare --json records it: the same images give the same digest
            settings_rows.append((t("report.test_set_sha256"), t("report.test_set_sha256_value",
                                                                 n=f"{settings.test_set_record['files']:,}",
                                                                 sha=settings.test_set_record["sha256"])))
        if settings.measurement:
            settings_rows.append((t("report.measurement"), t("report.measurement_value", **settings.measurement)))
        if settings.code_sha256:
            settings_rows.append((t("report.code_sha256"), settings.code_sha256))
        models = "".join(_model_section(name, comparison.kinds.get(name, ""), by_name.get(name), faces)
                         for name in comparison.names)
        failed = "".join(f'<p class="note">{_e(line)}</p>' for line in comparison.failed_models)
        mcnemar = (_table(mcnemar_frame(comparison)) if len(comparison.names) > 1
                   else f"<p>{_e(t('report.mcnemar_one'))}</p>")
        wrong = "".join(_wrong_section(comparison, name, settings.root, faces) for name in comparison.names)
        calibrated = calibration_summary(comparison)
        sentences = calibrated["model"] if len(calibrated) <= 3 else []  # more: the table says it
        calibration = ("".join(f"<p>{_e(calibration_words(name, comparison.reports[name].calibration).replace('**', ''))}</p>"
                               for name in sentences)
                       + _table(calibrated.assign(reading=[calibration_reading(comparison.reports[name].calibration)
                                                           for name in calibrated["model"]])) + f'<p class="note">{_e(t("compare.calibration_caption"))}</p>'
                       if len(calibrated) else f"<p>{_e(t('compare.calibration_none'))}</p>")
        answered = answer_calibration_frame(comparison)
        if len(answered):  # the same per emotion answered, its readings in words and its table
            calibration += (f"<h4>{_e(t('compare.answer_heading'))}</h4>"
                            + "".join(f"<p>{_e(line.replace('**', ''))}</p>"
                                      for line in answer_calibration_words(answered) or [t("compare.answer_none")])
                            + _table(answered) + f'<p class="note">{_e(t("compare.answer_caption"))}</p>')
        groups = ""
        if comparison.groups:  # a sheet's column grouping the faces: the words, the notes and the numbers
            analyses = comparison.group_analyses()
            scores, gaps = group_frames(comparison, analyses)
            for column, analysis in analyses.items():
                groups += (f"<h3>{_e(t('compare.groups_heading'))}: {_e(column)}</h3>"
                           + "".join(f"<p>{_e(line.replace('**', ''))}</p>" for line in group_gap_words(analysis))
                           + "".join(f'<p class="note">{_e(note)}</p>' for note in group_notes(analysis))
                           + _table(scores[scores["column"] == column].drop(columns="column"))
                           + _table(gaps[gaps["column"] == column].drop(columns="column")))
            groups += f'<p class="note">{_e(t("compare.groups_caption"))}</p>'
        # what a prediction is (as Home says it), and how few images the per-emotion figures rest on
        notes = [t("home.limits").replace("**", "")]
        notes += [few] if (few := few_images_note(comparison)) else []
        notes += comparison.never_notes() + comparison.learned_notes()
        limits = "".join(f'<p class="note">{_e(note)}</p>' for note in notes)
        body = f"""
<h1>{_e(t("report.title"))}</h1>
<p class="note">{_e(t("report.intro"))}</p>{limits}
<h2>{_e(t("report.settings"))}</h2>{_key_values(settings_rows)}
<h2>{_e(t("report.models"))}</h2>{failed}{models}
<h2>{_e(t("report.figures"))}</h2>{charts}
<h2>{_e(t("report.tables"))}</h2>
<h3>{_e(t("report.summary"))}</h3>{_table(summary)}
<h3>{_e(t("report.per_emotion"))}</h3>{_table(summary_frame(comparison))}
<h3>{_e(t("report.precision_recall"))}</h3>{_table(precision_recall_frame(comparison))}
<h3>{_e(t("report.mcnemar"))}</h3>{mcnemar}
<p class="note">{_e(t("report.mcnemar_note"))}</p>
<h3>{_e(t("report.calibration"))}</h3>{calibration}{groups}
<h2>{_e(t("report.wrong"))}</h2><p class="note">{_e(t("report.wrong_note" if faces else "report.faces_left_out"))}</p>{wrong}
"""
        title = t("report.title")
        shown_text = body + "".join(json.dumps(fig.to_plotly_json(), ensure_ascii=False, default=str)
                                    for fig in figures)
    font_css = embedded_font_css(shown_text)
    return f"""<!DOCTYPE html>
<html lang="{code}"><head><meta charset="utf-8"><title>{_e(title)}</title>
<meta name="generator" content="fer_core {_e(workbench_version())}">
<style>
{font_css}
body {{ font-family: {FONT_FAMILY}; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 14px; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: left; vertical-align: top; }}
table.kv th {{ width: 14em; color: #555; font-weight: normal; }}
.note {{ color: #666; font-size: 14px; }}
.figure {{ margin: 1em 0 2em; }}
.thumbs {{ display: flex; flex-wrap: wrap; gap: 8px; }}
figure.thumb {{ margin: 0; text-align: center; font-size: 12px; width: {THUMB_PX + 36}px; }}
figure.thumb img {{ width: {THUMB_PX}px; height: {THUMB_PX}px; object-fit: contain; image-rendering: pixelated; }}
</style>
<script type="text/javascript">{_plotly_js()}</script>
</head><body>{body}</body></html>
"""


def write_report(path: str | Path, text: str) -> Path:
    """Write the report whole or not at all (``fileio``'s atomic writer)."""
    from .. import fileio

    return fileio.atomic_write_text(path, text)
