"""Dataset explorer: class balance, sample images per emotion and AU profiles per emotion."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import streamlit as st

from fer_core import au_table, config
from fer_core.au_table import AU_COLUMNS, au_label
from fer_core.emotions import SEVEN_EMOTIONS
from fer_core.errors import FerError
from fer_core.figures import plots
from fer_core.fileio import csv_bytes
from fer_core.i18n import emotion_label, message, t
from fer_core.images import class_counts, relative_file, sample_per_class
from ui.common import (
    TABLE_TYPES,
    au_table_from_bytes,
    data_layout_help,
    dataset_items,
    default_unless_chosen,
    derived_tables,
    digest,
    embedded_au_caveat,
    held,
    kept_choice,
    load_au_table,
    page_setup,
    run_page,
    show_error,
    shown_in_code,
    shown_literally,
    thumbnail,
    unpacked_zip,
    warn_passed_over,
)

page_setup("nav.dataset_explorer")

# Widget values, shown through _source_labels / _table_labels in the reader's language (they are
# the English labels, so scripts and tests that pick an option by value keep working).
FER_SPLIT, FOLDER, ZIP, TABLE = ("FER2013 split (data folder)", "A folder on this machine", "Upload a zip of images",
                                 "AU table (CSV)")
UPLOAD_CSV, STUDY = "Upload a CSV…", ":study"


# Format functions are dictionaries filled during the run: Streamlit (and AppTest) call them
# outside the run too, where the reader's language is not set.
def _source_labels() -> dict[str, str]:
    return {FER_SPLIT: t("explorer.source_split"), FOLDER: t("explorer.source_folder"),
            ZIP: t("explorer.source_zip"), TABLE: t("explorer.source_table")}


def _table_labels(options: list[str]) -> dict[str, str]:
    special = {UPLOAD_CSV: t("explorer.table_upload"),
               STUDY: t("explorer.table_study", name=config.openface_study_table().name)}
    return {o: special.get(o, o) for o in options}


def _emotion(label: str) -> str:
    """An emotion (or "unlabelled") as the reader's language names it."""
    return t("explorer.unlabelled") if label == "unlabelled" else emotion_label(label)


def _ordered(labels) -> list[str]:
    present = set(labels)
    return [e for e in SEVEN_EMOTIONS if e in present] + sorted(x for x in present if x not in SEVEN_EMOTIONS)


def choose_dataset() -> tuple[str, list | None, pd.DataFrame | None, str]:
    """(name, image items or None, AU table or None, where the AUs come from)."""
    source = st.radio(t("explorer.dataset"), (FER_SPLIT, FOLDER, ZIP, TABLE), horizontal=True,
                      format_func=_source_labels().__getitem__, key=kept_choice("explorer_source"))
    au_tables: dict = st.session_state.get("au_tables", {})

    def extracted(folder: Path) -> pd.DataFrame | None:
        """The AU table the AU model page extracted from the whole of ``folder``, if it did."""
        kept = au_tables.get(str(folder))
        return kept.get("table") if isinstance(kept, dict) else kept

    if source == FER_SPLIT:
        root, splits = config.fer_root(), config.fer_splits()
        if not splits:
            st.warning(t("explorer.no_fer", root=root, layout=data_layout_help()))
            return "", None, None, ""
        split = st.selectbox(t("explorer.split"), splits, index=splits.index("train") if "train" in splits else 0,
                             key=kept_choice("explorer_split"))
        folder = root / split
        items = dataset_items(str(folder))
        table_path = config.data_dir() / f"fer2013_{split}_au.csv.gz"
        if table_path.is_file():
            return f"FER2013 {split}", items, load_au_table(table_path), f"`data/{shown_in_code(table_path.name)}`"
        return f"FER2013 {split}", items, extracted(folder), t("explorer.extracted_origin")
    if source == FOLDER:
        default = str(config.fer_split_dir("val")) if config.fer_split_dir("val").is_dir() else ""
        path = st.text_input(t("explorer.folder"), value=default, help=data_layout_help(), key=kept_choice("explorer_folder")).strip()
        if not path:
            st.info(t("explorer.folder_info", layout=data_layout_help()))
            return "", None, None, ""
        folder = Path(path).expanduser()
        items = dataset_items(str(folder))
        return folder.name, items, extracted(folder), t("explorer.extracted_origin")
    if source == ZIP:
        up = st.file_uploader(t("explorer.zip"), type=["zip"], key="explorer_zip", help=data_layout_help())
        if up is None:
            st.info(t("explorer.zip_info", layout=data_layout_help()))
            return "", None, None, ""
        data = up.getvalue()
        unpacked = held("explorer", unpacked_zip(digest(data), data))
        return up.name, dataset_items(str(unpacked.root)), None, ""
    options = list(derived_tables()) + [UPLOAD_CSV]
    study = config.openface_study_table()
    if study.is_file():
        options.insert(len(options) - 1, STUDY)
    choice = st.selectbox(t("explorer.au_table"), options, format_func=_table_labels(options).__getitem__, key=kept_choice("explorer_table"))
    if choice == UPLOAD_CSV:
        up = st.file_uploader(t("explorer.csv"), type=TABLE_TYPES, key="explorer_csv")
        if up is None:
            st.info(t("explorer.csv_info"))
            return "", None, None, ""
        return up.name, None, au_table_from_bytes(up.getvalue(), up.name), f"`{shown_in_code(up.name)}`"
    if choice == STUDY:
        return t("explorer.study_name"), None, load_au_table(study), f"`{shown_in_code(study)}`"
    return choice, None, load_au_table(derived_tables()[choice]), f"`data/{shown_in_code(choice)}`"


def show_balance(counts: dict[str, int], found: dict[str, float] | None = None, files: bool = False) -> None:
    """``files``: the counts are of a folder's image files, counted by name (not decoded)."""
    st.header(t("explorer.balance"))
    order = _ordered(counts)
    table = plots.balance_table(counts, order, found)
    ratio = plots.imbalance_ratio(counts)
    c1, c2, c3 = st.columns(3)
    c1.metric(t("explorer.images"), f"{sum(counts.values()):,}")
    c2.metric(t("explorer.emotions"), len([k for k in counts if k != "unlabelled"]))
    c3.metric(t("explorer.imbalance"), "∞" if ratio == float("inf") else "–" if ratio != ratio else f"{ratio:.1f}")
    left, right = st.columns([1, 2])
    shown = table.assign(emotion=[_emotion(e) for e in table["emotion"]]).rename(columns={
        "emotion": t("explorer.col_emotion"), "images": t("explorer.col_images"),
        "percent": t("explorer.col_percent"), "faces found percent": t("explorer.col_found")})
    left.dataframe(shown, hide_index=True, column_config={
        t("explorer.col_images"): st.column_config.NumberColumn(format="localized"),  # 3,093 as in the captions
        t("explorer.col_percent"): st.column_config.NumberColumn(format="%.1f %%"),
        t("explorer.col_found"): st.column_config.NumberColumn(format="%.0f %%")})
    left.download_button(t("explorer.download_balance"), csv_bytes(table),
                         "class_balance.csv", "text/csv", key="explorer_balance_csv", on_click="ignore")
    right.plotly_chart(plots.class_balance_bar(counts, order, title=t("explorer.chart_balance")),
                       key="balance_chart")
    if ratio > 3:
        st.caption(t("explorer.imbalanced", ratio=f"{ratio:.1f}"))
    if files:  # a damaged file counts until something reads it
        st.caption(t("explorer.counted_by_name"))


def _short_name(path: Path, most: int = 20) -> str:
    """A thumbnail's caption: the file name without its extension (cut at 18 characters, it wrapped
    as 'Training_11820' over '572.'), shortened with an ellipsis past ``most`` characters."""
    stem = path.stem
    return stem if len(stem) <= most else stem[:most - 1] + "…"


def show_samples(items: list) -> None:
    st.header(t("explorer.samples"))
    st.caption(t("explorer.samples_rights"))
    c1, c2 = st.columns([3, 1])
    per = c1.slider(t("explorer.per_emotion"), 4, 16, 8, key=kept_choice("explorer_per"))
    if c2.button(t("explorer.shuffle"), key="explorer_shuffle"):
        st.session_state["explorer_seed"] = st.session_state.get("explorer_seed", 0) + 1
    seed = st.session_state.get("explorer_seed", 0)
    counts = class_counts(items)
    by_label: dict[str, list] = {}
    for it in sample_per_class(items, per, seed):
        by_label.setdefault(it.label or "unlabelled", []).append(it)
    failed: list[str] = []
    root = os.path.commonpath([str(it.path.parent) for it in items]) if items else None
    for emotion in _ordered(by_label):
        chosen = by_label[emotion]
        thumbs, captions = [], []
        for it in chosen:
            try:  # an unreadable one is named within the dataset, not by a zip's temporary folder
                thumbs.append(thumbnail(str(it.path), name=relative_file(it.path, root)))
                captions.append(_short_name(it.path))
            except FerError as exc:
                failed.append(message(str(exc)))
        st.markdown(t("explorer.sample_row", emotion=_emotion(emotion), n=f"{counts.get(emotion, 0):,}"))
        if thumbs:
            st.image(thumbs, caption=captions, width=96,
                     alt=[t("explorer.thumb_alt", emotion=_emotion(emotion))] * len(thumbs))
    if failed:
        st.warning(t("explorer.unreadable_samples", n=len(failed), example=shown_literally(failed[0])))


def show_aus(table: pd.DataFrame, origin: str) -> None:
    st.header(t("explorer.aus"))
    shown = au_table.columns_with_values(table) or list(AU_COLUMNS)  # under a mask: the AUs it leaves
    selection = au_table.require_usable(table, columns=shown)  # none usable: the CLI's line, in red
    rows = table.iloc[selection.index]
    labels = [x for x in au_table.labels_of(rows).dropna().unique()]
    if not labels:
        st.warning(t("explorer.no_labelled"))
        return
    if selection.left_out:
        st.caption(t("explorer.au_origin_left_out", origin=origin, n=f"{len(rows):,}",
                     left_out=au_table.left_out_summary(selection.left_out, selection.total)))
    else:
        st.caption(t("explorer.au_origin", origin=origin, n=f"{len(rows):,}"))
    present = _ordered(labels)
    default_unless_chosen("explorer_classes", present, present)
    classes = st.multiselect(t("explorer.emotions"), present, format_func={e: _emotion(e) for e in present}.__getitem__,
                             key=kept_choice("explorer_classes"), placeholder=t("common.choose_options"))
    chosen = st.multiselect(t("explorer.au_pick"), shown, default=shown,
                            format_func={c: au_label(c) for c in shown}.__getitem__, key=kept_choice("explorer_aus"),
                            placeholder=t("common.choose_options"))
    if not classes or not chosen:
        st.info(t("explorer.pick_one"))
        return
    st.plotly_chart(plots.au_box_plots(table, classes, chosen, title=t("explorer.chart_box")), key="au_box")
    st.plotly_chart(plots.mean_au_heatmap(table, classes, chosen, title=t("explorer.chart_mean")), key="au_mean")
    st.caption(t("explorer.au_caption"))
    from fer_core.measure.extract import SOURCE

    measured_here = "source" in table.columns and (table["source"].astype(str) == SOURCE).any()
    caveat = embedded_au_caveat(chosen) if measured_here else None
    if caveat:  # happy faces' mean AU09 "nose wrinkler" tops disgust's here: not a fact about faces to teach
        st.caption(t("explorer.au_read_with_care") + " " + caveat)
    st.download_button(t("explorer.download_means"),
                       csv_bytes(plots.mean_au_profile(table, classes, chosen), index=True),
                       "mean_au_profile.csv", "text/csv", key="explorer_means_csv", on_click="ignore")


def main() -> None:
    st.title(t("explorer.title"))
    st.caption(t("explorer.intro"))
    _, items, table, origin = choose_dataset()
    if items is None and table is None:
        return
    if items is not None:
        show_balance(class_counts(items), files=True)
    else:
        first = au_table.first_faces(table)
        first = first[~warn_passed_over(first)]  # no image: not counted as one without a face
        labels = au_table.labels_of(first).fillna("unlabelled")
        counts = {str(k): int(v) for k, v in labels.value_counts().items()}
        ok = au_table.face_found(first)
        found = first.assign(ok=ok).groupby(labels)["ok"].mean().to_dict()
        show_balance(counts, found)
        failed = int((~ok).sum())
        if failed:
            st.caption(t("explorer.no_face_rows", failed=f"{failed:,}", total=f"{len(first):,}"))
    if items is not None:
        show_samples(items)
    if table is not None:
        try:
            show_aus(table, origin)
        except FerError as exc:
            show_error(exc)
    elif items is not None:
        st.info(t("explorer.no_aus_yet"))


run_page(main)
