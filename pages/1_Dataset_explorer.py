"""Dataset explorer: class balance, sample images per emotion and AU profiles per emotion."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from fer_core import au_table, config
from fer_core.au_table import AU_COLUMNS, au_label
from fer_core.emotions import SEVEN_EMOTIONS
from fer_core.errors import FerError
from fer_core.figures import plots
from fer_core.images import class_counts, sample_per_class
from ui.common import (
    DATA_LAYOUT_HELP,
    au_table_from_bytes,
    dataset_items,
    derived_tables,
    digest,
    load_au_table,
    page_setup,
    run_page,
    show_error,
    thumbnail,
    unpacked_zip,
)

page_setup("nav.dataset_explorer", ":material/bar_chart:")

FER_SPLIT = "FER2013 split (data folder)"
FOLDER = "A folder on this machine"
ZIP = "Upload a zip of images"
TABLE = "AU table (CSV)"
UPLOAD_CSV = "Upload a CSV…"


def _ordered(labels) -> list[str]:
    present = set(labels)
    return [e for e in SEVEN_EMOTIONS if e in present] + sorted(x for x in present if x not in SEVEN_EMOTIONS)


def choose_dataset() -> tuple[str, list | None, pd.DataFrame | None, str]:
    """(name, image items or None, AU table or None, where the AUs come from)."""
    source = st.radio("Dataset", (FER_SPLIT, FOLDER, ZIP, TABLE), horizontal=True, key="explorer_source")
    au_tables: dict = st.session_state.get("au_tables", {})
    if source == FER_SPLIT:
        root = config.datasets_dir() / "fer2013"
        splits = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        if not splits:
            st.warning(f"No FER2013 images at `{root}`. Put the Kaggle FER2013 folders there "
                       f"(`{root}/train/<emotion>/*.jpg`, `{root}/val/…`) or set FER_DATA_DIR to the folder "
                       f"holding `fer2013/`. {DATA_LAYOUT_HELP} Meanwhile the **AU table** option works "
                       "on the tables bundled in data/.")
            return "", None, None, ""
        split = st.selectbox("Split", splits, index=splits.index("train") if "train" in splits else 0)
        folder = root / split
        items = dataset_items(str(folder))
        table_path = config.data_dir() / f"fer2013_{split}_au.csv.gz"
        if table_path.is_file():
            return f"FER2013 {split}", items, load_au_table(table_path), f"`data/{table_path.name}`"
        return f"FER2013 {split}", items, au_tables.get(str(folder)), "extracted on the AU model page"
    if source == FOLDER:
        default = str(config.fer_split_dir("val")) if config.fer_split_dir("val").is_dir() else ""
        path = st.text_input("Folder with emotion subfolders (or emotion-prefixed file names)", value=default,
                             help=DATA_LAYOUT_HELP).strip()
        if not path:
            st.info(f"Type a folder path. {DATA_LAYOUT_HELP}")
            return "", None, None, ""
        folder = Path(path).expanduser()
        items = dataset_items(str(folder))
        return folder.name, items, au_tables.get(str(folder)), "extracted on the AU model page"
    if source == ZIP:
        up = st.file_uploader("Zip of a dataset folder (emotion subfolders inside)", type=["zip"],
                              key="explorer_zip", help=DATA_LAYOUT_HELP)
        if up is None:
            st.info(f"Upload a zip. It is unpacked into a temporary folder only. {DATA_LAYOUT_HELP}")
            return "", None, None, ""
        data = up.getvalue()
        unpacked = unpacked_zip(digest(data), data)
        return up.name, dataset_items(str(unpacked.root)), None, ""
    options = list(derived_tables()) + [UPLOAD_CSV]
    study = config.openface_study_table()
    if study.is_file():
        options.insert(len(options) - 1, f"study OpenFace table ({study.name})")
    choice = st.selectbox("AU table", options, key="explorer_table")
    if choice == UPLOAD_CSV:
        up = st.file_uploader("AU table CSV (this project's table, OpenFace output or a merged table)",
                              type=["csv", "gz"], key="explorer_csv")
        if up is None:
            st.info("Upload a CSV with columns AU01_r … AU45_r and a label (or emotion) column.")
            return "", None, None, ""
        return up.name, None, au_table_from_bytes(up.getvalue(), up.name), f"`{up.name}`"
    if choice.startswith("study"):
        return "study OpenFace table", None, load_au_table(study), f"`{study}`"
    return choice, None, load_au_table(derived_tables()[choice]), f"`data/{choice}`"


def show_balance(counts: dict[str, int], found: dict[str, float] | None = None) -> None:
    st.subheader("Class balance")
    order = _ordered(counts)
    table = plots.balance_table(counts, order)
    if found:
        table["faces found"] = [f"{found.get(e, float('nan')):.0%}" for e in table["emotion"]]
    ratio = plots.imbalance_ratio(counts)
    c1, c2, c3 = st.columns(3)
    c1.metric("Images", f"{sum(counts.values()):,}")
    c2.metric("Emotions", len([k for k in counts if k != "unlabelled"]))
    c3.metric("Imbalance ratio (largest / smallest)", "∞" if ratio == float("inf") else f"{ratio:.1f}")
    left, right = st.columns([1, 2])
    left.dataframe(table, hide_index=True, column_config={
        "percent": st.column_config.NumberColumn(format="%.1f %%")})
    right.plotly_chart(plots.class_balance_bar(counts, order), key="balance_chart")
    if ratio > 3:
        st.caption(f"The classes are imbalanced ({ratio:.1f}×): consider 'balanced' class weights on the "
                   "AU model page, and read per-emotion accuracy rather than overall accuracy.")


def show_samples(items: list) -> None:
    st.subheader("Sample images per emotion")
    c1, c2 = st.columns([3, 1])
    per = c1.slider("Images per emotion", 4, 16, 8, key="explorer_per")
    if c2.button("Shuffle", key="explorer_shuffle"):
        st.session_state["explorer_seed"] = st.session_state.get("explorer_seed", 0) + 1
    seed = st.session_state.get("explorer_seed", 0)
    counts = class_counts(items)
    by_label: dict[str, list] = {}
    for it in sample_per_class(items, per, seed):
        by_label.setdefault(it.label or "unlabelled", []).append(it)
    failed: list[str] = []
    for emotion in _ordered(by_label):
        chosen = by_label[emotion]
        thumbs, captions = [], []
        for it in chosen:
            try:
                thumbs.append(thumbnail(str(it.path)))
                captions.append(it.path.name[:18])
            except FerError as exc:
                failed.append(str(exc))
        st.markdown(f"**{emotion}** · {counts.get(emotion, 0):,} images")
        if thumbs:
            st.image(thumbs, caption=captions, width=96)
    if failed:
        st.warning(f"{len(failed)} sample image(s) could not be read and were skipped, e.g. {failed[0]}")


def show_aus(table: pd.DataFrame, origin: str) -> None:
    st.subheader("Action Units per emotion")
    selection = au_table.require_usable(table)  # none usable: the CLI's line, in red
    rows = table.iloc[selection.index]
    labels = [x for x in au_table.labels_of(rows).dropna().unique()]
    if not labels:
        st.warning("This table has no labelled faces with AU values, so there is nothing to plot per emotion.")
        return
    note = "" if not selection.left_out else f"; {selection.summary()}"
    st.caption(f"AUs from {origin}: {len(rows):,} faces with measured AUs{note}.")
    present = _ordered(labels)
    classes = st.multiselect("Emotions", present, default=present, key="explorer_classes")
    chosen = st.multiselect("AUs", list(AU_COLUMNS), default=list(AU_COLUMNS), format_func=au_label,
                            key="explorer_aus")
    if not classes or not chosen:
        st.info("Pick at least one emotion and one AU.")
        return
    st.plotly_chart(plots.au_box_plots(table, classes, chosen), key="au_box")
    st.plotly_chart(plots.mean_au_heatmap(table, classes, chosen), key="au_mean")
    st.caption("Boxes: middle half of the faces, line: median, whiskers: 1.5 × IQR. The heatmap is "
               "each emotion's average face in AU terms; AUs on a 0–5 scale.")


def main() -> None:
    st.title("Dataset explorer")
    st.caption("How balanced is a dataset, what do its faces look like, and which Action Units "
               "separate its emotions?")
    _, items, table, origin = choose_dataset()
    if items is None and table is None:
        return
    if items is not None:
        show_balance(class_counts(items))
    else:
        first = au_table.first_faces(table)
        labels = au_table.labels_of(first).fillna("unlabelled")
        counts = {str(k): int(v) for k, v in labels.value_counts().items()}
        found = first.assign(ok=au_table.measured(first)).groupby(labels)["ok"].mean().to_dict()
        show_balance(counts, found)
        failed = int((~au_table.measured(first)).sum())
        if failed:
            st.caption(f"{failed:,} of {len(first):,} images have no measured face (success 0); "
                       "they are counted above but left out of the AU plots.")
    if items is not None:
        show_samples(items)
    if table is not None:
        try:
            show_aus(table, origin)
        except FerError as exc:
            show_error(exc)
    elif items is not None:
        st.info("No AUs for this folder yet: extract them on the **AU model** page "
                "(source: *Extract AUs from an image folder*); they then appear here.")


run_page(main)
