"""AU tables as the tools researchers use write them: Excel re-saves (BOM and CRLF, semicolons and
decimal commas, "Unicode text", CP949 in Korea, workbooks), R's write.csv, pandas with its index,
TSV, OpenFace 2.0/2.2 output and py-feat's. Each file is written here byte for byte as the tool
writes it and read through ``au_table.read`` (what the CLI and the dashboard call); what a
researcher would take to be the same numbers is read as them, and what could be read two ways is
refused with one line that says what to do."""

from __future__ import annotations

import codecs
import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fer_core import au_table, i18n
from fer_core.au_table import AU_COLUMNS
from fer_core.cli import main
from fer_core.emotions import SIX_EMOTIONS
from fer_core.errors import AUTableError
from fer_core.measure.openface_csv import import_openface_dir

KOREAN = {"angry": "화남", "disgust": "혐오", "happy": "행복", "neutral": "무표정", "sad": "슬픔", "surprise": "놀람"}
FER2013_CODES = {"angry": 0, "disgust": 1, "fear": 2, "happy": 3, "sad": 4, "surprise": 5, "neutral": 6}
PYFEAT_AUS = ("AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU11", "AU12", "AU14", "AU15",
              "AU17", "AU20", "AU23", "AU24", "AU25", "AU26", "AU28", "AU43")


def project_table(n: int = 12, seed: int = 0) -> pd.DataFrame:
    """This workbench's table, AUs with two decimals (as a spreadsheet shows and saves them)."""
    rng = np.random.default_rng(seed)
    aus = np.round(rng.uniform(0, 5, size=(n, len(AU_COLUMNS))), 2)
    return pd.DataFrame({"file": [f"img{i}.jpg" for i in range(n)], "face": 0,
                         "label": [SIX_EMOTIONS[i % 6] for i in range(n)], "success": 1, "confidence": 0.9,
                         "source": "mediapipe", "reason": "", **dict(zip(AU_COLUMNS, aus.T))})


def spreadsheet_lines(frame: pd.DataFrame, sep: str = ",", decimal: str = ".") -> list[str]:
    """Lines as Excel saves a sheet: cells unquoted, numbers with the locale's decimal mark."""
    def cell(v) -> str:
        return f"{v:g}".replace(".", decimal) if isinstance(v, float) else str(v)
    return [sep.join(frame.columns)] + [sep.join(cell(v) for v in row) for row in frame.itertuples(index=False)]


def excel_csv(lines: list[str], encoding: str = "utf-8", bom: bytes = b"") -> bytes:
    return bom + ("\r\n".join(lines) + "\r\n").encode(encoding)


def assert_same_table(table: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Every AU, label and file name as written, and every row used."""
    assert len(table) == len(expected)
    np.testing.assert_allclose(table[list(AU_COLUMNS)].to_numpy(dtype=float),
                               expected[list(AU_COLUMNS)].to_numpy(dtype=float), atol=1e-5)
    assert table["label"].tolist() == expected["label"].tolist()
    assert table["file"].tolist() == expected["file"].tolist()
    assert au_table.select(table, SIX_EMOTIONS).n == len(expected)


def refusal(path: Path) -> str:
    with pytest.raises(AUTableError) as err:
        au_table.read(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(path))
    return message


# -- Excel -------------------------------------------------------------------------------------
def test_excel_csv_utf8_resave_with_bom_and_crlf(tmp_path):
    expected = project_table()
    path = tmp_path / "au.csv"
    path.write_bytes(excel_csv(spreadsheet_lines(expected), bom=codecs.BOM_UTF8))
    assert_same_table(au_table.read(path), expected)


def test_excel_in_a_decimal_comma_locale_semicolons_and_windows_1252(tmp_path):
    """German/French Excel's "CSV (;)": fields by ";", "1,25" for 1.25, Windows-1252, CRLF. The
    AUs were refused before as a column of text."""
    expected = project_table()
    path = tmp_path / "au.csv"
    path.write_bytes(excel_csv(spreadsheet_lines(expected, ";", ","), "cp1252"))
    table = au_table.read(path)
    assert_same_table(table, expected)
    assert table["confidence"].tolist() == pytest.approx([0.9] * len(expected))


def test_decimal_commas_beside_a_text_cell_keep_their_numbers(tmp_path):
    """A text cell makes the parser leave its column as text: the other cells still read as numbers."""
    expected = project_table()
    lines = spreadsheet_lines(expected, ";", ",")
    cells = lines[3].split(";")
    cells[list(expected.columns).index("AU04_r")] = "#VALUE!"  # Excel's error cell
    lines[3] = ";".join(cells)
    path = tmp_path / "au.csv"
    path.write_bytes(excel_csv(lines, bom=codecs.BOM_UTF8))
    table = au_table.read(path)
    values = expected["AU04_r"].to_numpy(dtype=float)
    assert np.isnan(table.loc[2, "AU04_r"]) and table.loc[2, "reason"] == "an AU value is not a number"
    np.testing.assert_allclose(np.delete(table["AU04_r"].to_numpy(dtype=float), 2), np.delete(values, 2), atol=1e-5)


def test_excel_unicode_text_utf16_tabs(tmp_path):
    expected = project_table()
    path = tmp_path / "au.txt"
    path.write_bytes(excel_csv(spreadsheet_lines(expected, "\t"), "utf-16-le", codecs.BOM_UTF16_LE))
    assert_same_table(au_table.read(path), expected)


def test_excel_unicode_text_in_a_decimal_comma_locale(tmp_path):
    expected = project_table()
    path = tmp_path / "au.txt"
    path.write_bytes(excel_csv(spreadsheet_lines(expected, "\t", ","), "utf-16-le", codecs.BOM_UTF16_LE))
    assert_same_table(au_table.read(path), expected)


def test_excel_on_korean_windows_saves_csv_in_cp949(tmp_path):
    """Korean Excel's "CSV (쉼표로 분리)" is CP949: Korean labels and file names read as written
    (before, they were read as Latin-1 and the labels refused as unknown)."""
    expected = project_table().assign(file=lambda f: [f"사진{i}.jpg" for i in range(len(f))])
    path = tmp_path / "au.csv"
    path.write_bytes(excel_csv(spreadsheet_lines(expected.assign(label=expected["label"].map(KOREAN))), "cp949"))
    assert_same_table(au_table.read(path), expected)


@pytest.mark.parametrize("name", ["Ärger.jpg", "INFORMAÇÃO.jpg", "AÇÃO.jpg"])
def test_latin_1_text_stays_latin_1(tmp_path, name):
    """A Latin-1 name that happens to decode as CP949 ("Ä" then a letter; "ÇÃ", one common Hangul
    syllable standing alone) is not read as Korean: INFORMAÇÃO.jpg read as INFORMA플O.jpg."""
    expected = project_table().assign(file=name)
    path = tmp_path / "au.csv"
    path.write_bytes(excel_csv(spreadsheet_lines(expected), "latin-1"))
    assert au_table.read(path)["file"].tolist() == expected["file"].tolist()


@pytest.mark.parametrize("kind", ["xlsx", "xls"])
def test_a_workbook_is_refused_saying_to_save_it_as_csv(tmp_path, kind):
    path = tmp_path / f"au.{kind}"
    if kind == "xlsx":  # an Office Open XML workbook is a zip of XML parts
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as z:
            z.writestr("[Content_Types].xml", "<Types/>")
            z.writestr("xl/workbook.xml", "<workbook/>")
            z.writestr("xl/worksheets/sheet1.xml", "<worksheet/>")
        path.write_bytes(buffer.getvalue())
    else:  # Excel 97-2003: an OLE2 compound file
        path.write_bytes(bytes.fromhex("d0cf11e0a1b11ae1") + bytes(504))
    assert "save it as CSV UTF-8" in refusal(path)


def test_a_zipped_csv_is_refused_saying_to_unzip_it(tmp_path):
    path = tmp_path / "au.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("au.csv", project_table().to_csv(index=False))
    assert "unzip it" in refusal(path)


# -- R, pandas, TSV ----------------------------------------------------------------------------
def test_r_write_csv_with_row_names_quotes_and_na(tmp_path):
    expected = project_table()
    header = '"","file","label","success",' + ",".join(f'"{c}"' for c in AU_COLUMNS)
    lines = [header]
    for i, row in expected.iterrows():
        au = ["NA" if i == 3 and c == "AU04_r" else f"{row[c]:g}" for c in AU_COLUMNS]
        lines.append(f'"{i + 1}","{row.file}",' + ("NA" if i == 5 else f'"{row.label}"') + ",1," + ",".join(au))
    path = tmp_path / "au.csv"
    path.write_text("\n".join(lines) + "\n")
    table = au_table.read(path)
    assert table["file"].tolist() == expected["file"].tolist()
    assert table["label"].tolist() == [None if i == 5 else v for i, v in enumerate(expected["label"])]
    assert np.isnan(table.loc[3, "AU04_r"]) and table.loc[0, "AU01_r"] == pytest.approx(expected.loc[0, "AU01_r"])
    assert au_table.select(table, SIX_EMOTIONS).n == len(expected) - 2  # the NA AU and the NA label


def test_pandas_to_csv_with_its_index_column(tmp_path):
    expected = project_table()
    path = tmp_path / "au.csv"
    expected.to_csv(path)  # a first column without a name: "Unnamed: 0" when pandas reads it back
    assert_same_table(au_table.read(path), expected)


def test_tsv(tmp_path):
    expected = project_table()
    path = tmp_path / "au.tsv"
    expected.to_csv(path, sep="\t", index=False)
    assert_same_table(au_table.read(path), expected)


# -- OpenFace, py-feat -------------------------------------------------------------------------
def openface_lines(columns: list[str], rows: list[list[str]], data_sep: str) -> list[str]:
    """OpenFace writes its header with ", " (names with a leading space when split at ",")."""
    return [", ".join(columns)] + [data_sep.join(r) for r in rows]


def test_openface_leading_space_headers_and_presence_columns(tmp_path):
    """OpenFace 2.2 FaceLandmarkImg in emotion folders: header " AU01_r", " AU01_c" beside it."""
    rng = np.random.default_rng(1)
    columns = ["face", "confidence", "gaze_0_x"] + list(AU_COLUMNS) + [c[:-2] + "_c" for c in AU_COLUMNS]
    written: dict[str, np.ndarray] = {}
    for emotion in ("happy", "sad"):
        (tmp_path / emotion).mkdir()
        aus = np.round(rng.uniform(0, 5, size=len(AU_COLUMNS)), 2)
        written[emotion] = aus
        row = ["0", "0.975", "0.1"] + [f"{v:.2f}" for v in aus] + ["1.00"] * len(AU_COLUMNS)
        (tmp_path / emotion / f"{emotion}001.csv").write_text("\n".join(openface_lines(columns, [row], ",")) + "\n")
    table = import_openface_dir(tmp_path)
    assert table["label"].tolist() == ["happy", "sad"] and table["success"].tolist() == [1, 1]
    for i, emotion in enumerate(("happy", "sad")):
        np.testing.assert_allclose(table.loc[i, list(AU_COLUMNS)].to_numpy(dtype=float), written[emotion], atol=1e-5)


def test_openface_feature_extraction_of_an_image_folder(tmp_path):
    """FeatureExtraction -fdir: one CSV for the folder, a row per image (``frame``, ``face_id``),
    OpenFace 2.0's ", " between values; a failed image (success 0) is no measurement."""
    columns = ["frame", "face_id", "timestamp", "confidence", "success"] + list(AU_COLUMNS)
    rows = [[str(k), "0", f"{(k - 1) / 30:.3f}", "0.98" if k != 2 else "0", "1" if k != 2 else "0"]
            + [f"{k / 2:.2f}"] * len(AU_COLUMNS) for k in (1, 2, 3)]
    path = tmp_path / "happy.csv"
    path.write_text("\n".join(openface_lines(columns, rows, ", ")) + "\n")
    table = au_table.read(path)
    assert table["file"].tolist() == ["happy#1", "happy#2", "happy#3"]
    assert table["success"].tolist() == [1, 0, 1] and np.isnan(table.loc[1, "AU01_r"])
    assert table["AU12_r"].tolist()[::2] == pytest.approx([0.5, 1.5])


def test_py_feat_scores_are_refused_naming_the_columns_needed(tmp_path):
    """py-feat's Fex CSV has AU01 … AU43 from 0 to 1; read as OpenFace's 0-5 they would mean other
    faces. Before, the message said only that AU01_r … were missing."""
    n = 4
    fex = pd.DataFrame({"FaceRectX": 10.0, "FaceRectY": 12.0, "FaceRectWidth": 40.0, "FaceRectHeight": 40.0,
                        "FaceScore": 0.99, **{a: np.linspace(0, 1, n) for a in PYFEAT_AUS},
                        **{e: 1 / 7 for e in ("anger", "disgust", "fear", "happiness", "sadness", "surprise",
                                              "neutral")}, "input": [f"img{i}.jpg" for i in range(n)]})
    path = tmp_path / "fex.csv"
    fex.to_csv(path)
    message = refusal(path)
    assert "AU01, AU02, AU04" in message and "0 to 1" in message and "AU01_r … AU45_r" in message


# -- labels ------------------------------------------------------------------------------------
def test_capitalised_padded_and_korean_labels(tmp_path):
    """As the image-folder side reads folder names (emotions.normalize_emotion)."""
    expected = project_table()
    written = [f" {e.capitalize()} " if i % 2 else KOREAN[e] for i, e in enumerate(expected["label"])]
    path = tmp_path / "au.csv"
    path.write_bytes(expected.assign(label=written).to_csv(index=False).encode("utf-8-sig"))
    assert_same_table(au_table.read(path), expected)


def test_fer2013_codes_in_a_table_like_the_studys_are_refused_naming_both_numberings(tmp_path):
    """FER2013 numbers 0-6 another way than the study's 0-5 (2 is fear there, happy here): a 6 shows
    the table uses FER2013's, and it is refused rather than read as the study's."""
    expected = project_table()
    path = tmp_path / "emotion.csv"
    expected[list(AU_COLUMNS)].assign(emotion=expected["label"].map(FER2013_CODES)).to_csv(path, index=False)
    message = refusal(path)
    assert "label code 6" in message and "2 fear" in message and "2 happy" in message


def test_numbers_as_labels_beside_file_names_are_refused(tmp_path):
    """FER2013's codes of a table without neutral (0-5) were read as the study's: fear as happy,
    happy as neutral. Numbers are labels only in a table like the study's, as an image folder
    named "2" is no emotion."""
    expected = project_table().assign(label=lambda f: ["fear", "happy", "sad", "angry"] * (len(f) // 4))
    path = tmp_path / "au.csv"
    expected.assign(label=expected["label"].map(FER2013_CODES)).to_csv(path, index=False)
    message = refusal(path)
    assert "numbers as labels (such as 0)" in message and "2 fear" in message and "2 happy" in message


def test_numbers_as_labels_beside_file_names_alone_are_refused(tmp_path):
    """A ``file,label,AU01_r…`` table (no success column: another program's merge) with FER2013's
    codes was still read as the study's: 2 (fear) as happy, 3 (happy) as neutral."""
    expected = project_table().assign(label=lambda f: ["fear", "happy", "sad", "angry"] * (len(f) // 4))
    path = tmp_path / "au.csv"
    expected.assign(label=expected["label"].map(FER2013_CODES))[["file", "label", *AU_COLUMNS]].to_csv(path, index=False)
    message = refusal(path)
    assert "numbers as labels (such as 0)" in message and "2 fear" in message


def test_the_studys_table_still_reads_its_codes():
    from fer_core.config import openface_study_table

    study = openface_study_table()
    if not study.is_file():
        pytest.skip("../shared datasets not present (set FER_DATA_DIR to run this test)")
    labels = au_table.read(study)["label"]
    assert labels.notna().all() and set(labels) <= set(SIX_EMOTIONS) and len(set(labels)) == 6


def test_openface_rows_with_a_label_column_read_labels_as_every_table(tmp_path):
    """A label column beside OpenFace's per-face columns: names as people write them are read, a
    number is refused (it was left out as unlabelled, without a word), as in the project's tables."""
    columns = ["face", "confidence", "emotion"] + list(AU_COLUMNS)
    path = tmp_path / "faces.csv"
    rows = [["0", "0.9", name] + ["1.5"] * len(AU_COLUMNS) for name in (" Happy ", "슬픔")]
    path.write_text("\n".join(openface_lines(columns, rows, ", ")) + "\n")
    assert au_table.read(path)["label"].tolist() == ["happy", "sad"]
    rows = [["0", "0.9", code] + ["1.5"] * len(AU_COLUMNS) for code in ("2", "4")]
    path.write_text("\n".join(openface_lines(columns, rows, ", ")) + "\n")
    assert "numbers as labels" in refusal(path)


# -- the command line and the Korean messages --------------------------------------------------
def test_train_au_and_evaluate_read_a_decimal_comma_table(tmp_path, models_dir, capsys):
    table = project_table(60)
    path = tmp_path / "au.csv"
    path.write_bytes(excel_csv(spreadsheet_lines(table, ";", ","), bom=codecs.BOM_UTF8))
    model = tmp_path / "m.json"
    assert main(["train-au", str(path), "--out", str(model), "--name", "au-decimal-comma"]) == 0
    assert main(["evaluate", "--model", str(model), "--au-table", str(path), "--json"]) == 0
    capsys.readouterr()
    fex = tmp_path / "fex.csv"
    pd.DataFrame({a: [0.5] for a in PYFEAT_AUS}).to_csv(fex, index=False)
    assert main(["evaluate", "--model", str(model), "--au-table", str(fex)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "AU columns without _r" in lines[0]


def test_new_refusals_read_in_korean(tmp_path):
    fex, study, numbers = tmp_path / "fex.csv", tmp_path / "emotion.csv", tmp_path / "numbers.csv"
    book, archive = tmp_path / "au.xls", tmp_path / "au.zip"
    pd.DataFrame({a: [0.5] for a in PYFEAT_AUS}).to_csv(fex, index=False)
    project_table()[list(AU_COLUMNS)].assign(emotion=6).to_csv(study, index=False)
    project_table().assign(label=3).to_csv(numbers, index=False)
    book.write_bytes(bytes.fromhex("d0cf11e0a1b11ae1") + bytes(504))
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("au.csv", "")
    presence = tmp_path / "presence.csv"
    pd.DataFrame({c[:-2] + "_c": [1.0] for c in AU_COLUMNS}).to_csv(presence, index=False)
    with i18n.using_language("ko"):
        for path, korean in ((fex, "_r이 없는 AU 열"), (study, "FER2013은"), (numbers, "숫자 레이블"),
                             (book, "스프레드시트"), (archive, "압축을 풀고"), (presence, "존재 여부 열")):
            assert korean in i18n.message(refusal(path))


def test_the_dashboards_table_uploaders_let_through_every_file_the_reader_reads_or_explains():
    """The browser refuses an upload whose ending is not in the uploader's list before the reader
    sees it: Excel's "Unicode text" (.txt) and a .tsv were refused though they read, and a workbook
    got Streamlit's bare "file type not allowed" instead of the reader's "save it as CSV UTF-8"."""
    from ui.common import TABLE_TYPES

    for name in ("au.csv", "au.tsv", "au.txt", "au.csv.gz", "au.csv.bz2", "au.csv.xz", "au.parquet",
                 "au.xlsx", "au.xls", "au.ods"):
        assert name.rsplit(".", 1)[1] in TABLE_TYPES, name
