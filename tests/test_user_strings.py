"""Names other people chose (file, folder and Teachable Machine class names) stay text everywhere
they are shown: Streamlit's Markdown, Plotly labels and CSV downloads opened in a spreadsheet.

Markdown is checked by rendering what the page sent with a CommonMark renderer (markdown-it, which
keras's ``rich`` brings): Streamlit escapes raw HTML itself, but draws Markdown links and images,
and an image is fetched from its server as soon as someone opens the page.
"""

from __future__ import annotations

import io
import re

import pandas as pd
import pytest

markdown_it = pytest.importorskip("markdown_it")

HOSTILE_IMAGE = "![x](https://evil.example/track.png)"
HOSTILE_LINK = "[click](javascript:alert(1))"
HOSTILE_FORMULA = '=HYPERLINK("http://evil.example","x")'


def rendered(markdown: str) -> str:
    """The HTML a CommonMark renderer makes of ``markdown`` (with strike-through, as GFM)."""
    return markdown_it.MarkdownIt("commonmark").enable("strikethrough").render(markdown)


def plain(markdown: str) -> str:
    """The text a reader sees: the rendered HTML without tags and entities (and without the
    invisible word joiner that keeps a web address from becoming a link)."""
    import html

    return html.unescape(re.sub(r"<[^>]+>", "", rendered(markdown))).replace("\u2060", "").strip()


def test_shown_literally_keeps_names_as_text():
    from ui.common import shown_literally

    for name in (HOSTILE_IMAGE, HOSTILE_LINK, "$x^2$ `code` *em* ~~gone~~ <b>", "a\\[b]", "two\nlines"):
        shown = shown_literally(name)
        assert not re.search(r"<(a|img|code|em|del|b)\b", rendered(shown)), (name, rendered(shown))
        assert plain(shown) == name.replace("\n", " ")
    assert shown_literally("keras_model.h5: not an image") == "keras_model.h5: not an image"
    for name in ("__init__.jpg", "_x_.jpg", "# big.jpg", "x__"):  # bold and a heading, before
        assert not re.search(r"<(em|strong|h1)\b", rendered(shown_literally(name))), name
        assert plain(shown_literally(name)) == name


def test_show_error_shows_a_hostile_file_name_as_text():
    """A file's name inside an error (a shared folder, a zip) is shown as typed, not fetched as an image."""
    from streamlit.testing.v1 import AppTest

    def page():
        from fer_core.errors import DatasetError
        from ui.common import show_error

        show_error(DatasetError("angry/![x](https://evil.example/track.png).jpg: not an image"))

    at = AppTest.from_function(page).run(timeout=60)
    (error,) = at.error
    assert "<img" not in rendered(error.value), error.value
    assert plain(error.value) == "angry/![x](https://evil.example/track.png).jpg: not an image"


def test_csv_bytes_neutralises_formulas_only_in_text_cells():
    from fer_core.fileio import csv_bytes

    frame = pd.DataFrame({"file": [HOSTILE_FORMULA, "+cmd", "@SUM(A1)", "-2+3", "\tx", "angry/a.jpg", "-0.5"],
                          "delta": [-1.5, 2.0, -3.0, 0.0, 1.0, 2.0, 3.0]})
    frame[HOSTILE_FORMULA] = 1
    back = pd.read_csv(io.BytesIO(csv_bytes(frame)), dtype={"file": str}, keep_default_na=False)
    assert back["file"].tolist() == ["'" + HOSTILE_FORMULA, "'+cmd", "'@SUM(A1)", "'-2+3", "'\tx", "angry/a.jpg", "-0.5"]
    assert back["delta"].tolist() == [-1.5, 2.0, -3.0, 0.0, 1.0, 2.0, 3.0]  # numbers stay numbers
    assert list(back.columns) == ["file", "delta", "'" + HOSTILE_FORMULA]


def test_compare_predictions_download_keeps_a_formula_file_name_as_text(tmp_path):
    """Compare's per-image CSV: a zip's wrapping folder named like a formula starts the file cell."""
    from fer_core.figures.compare import predictions_frame
    from fer_core.fileio import csv_bytes

    root = tmp_path / "set"
    table = pd.DataFrame({"file": [str(root / f"{HOSTILE_FORMULA}/angry/a.jpg"), str(root / "happy/b.jpg")],
                          "label": ["angry", "happy"], "m": ["angry", "sad"]})
    text = csv_bytes(predictions_frame(table, ["m"], root)).decode()
    cells = [row.split(",")[0] for row in text.splitlines()[1:]]
    assert cells[0].lstrip('"').startswith("'="), text
    assert cells[1] == "happy/b.jpg"


def test_probability_bars_draw_class_names_as_text():
    """Plotly draws <a href>, <b> and <span style> in labels; a class name must show as written."""
    from fer_core.figures import plots

    name = '<a href="https://evil.example">Anger</a>'
    fig = plots.probability_bars({name: 0.6, "happy": 0.4})
    assert '&lt;a href="https://evil.example"&gt;Anger&lt;/a&gt;' in list(fig.data[0].y)
    assert not any("<a" in label for label in fig.data[0].y)


def test_teachable_page_shows_hostile_class_names_as_text(tmp_path, models_dir, downloads):
    """Class names of a Teachable Machine export (labels.txt) and the upload's file name are shown
    as typed in every Markdown element and widget label of the page, and the mapping CSV keeps a
    formula-like class name as text."""
    from apptest_helpers import run_app
    from streamlit.testing.v1 import AppTest

    from fer_core import config
    from fer_core.predictors.teachable_example import write_teachable_export

    labels = ("Anger", "Happiness", HOSTILE_LINK, HOSTILE_IMAGE, HOSTILE_FORMULA)
    export = write_teachable_export(tmp_path / "export", labels)
    zipped = export.zip("![pix](https:evil.example) x.zip")
    at = AppTest.from_file(str(config.REPO_ROOT / "pages" / "5_Teachable_Machine.py"), default_timeout=240)
    run_app(at, 240)
    at.file_uploader(key="tm_upload").set_value([(zipped.name, zipped.read_bytes(), "application/zip")])
    run_app(at, 240)
    shown = [str(e.value) for kind in ("markdown", "caption", "success", "warning", "info")
             for e in at.get(kind)] + [e.label for e in at.get("selectbox")]
    hostile = [s for s in shown if "evil" in s or "javascript" in s]
    assert len(hostile) >= 5, shown  # the labels' selectboxes, the ignored line, the loaded line
    for text in hostile:
        assert not re.search(r"<(a|img)\b", rendered(text)), (text, rendered(text))
    seen = " ".join(plain(s) for s in hostile)
    for name in (HOSTILE_LINK, HOSTILE_IMAGE, "![pix](https:evil.example) x.zip"):
        assert name in seen, seen
    (csv,) = [data for name, data in downloads.items() if name.endswith("_mapping.csv")]
    mapping = pd.read_csv(io.BytesIO(csv))
    assert mapping["class"].tolist()[-1] == "'" + HOSTILE_FORMULA


def test_try_it_shows_an_uploads_name_as_text_in_its_heading_and_error(models_dir):
    """Try it's panel heading and the error of an upload that is no image showed the upload's name
    as Markdown: ``![x](https://…).jpg`` made the viewer's browser fetch that image."""
    from apptest_helpers import run_app
    from streamlit.testing.v1 import AppTest

    from fer_core.config import REPO_ROOT

    at = run_app(AppTest.from_file(str(REPO_ROOT / "pages" / "3_Try_it.py")), 120)
    name = f"{HOSTILE_IMAGE}.jpg"
    at.file_uploader(key="try_upload").set_value((name, b"not an image at all", "image/jpeg"))
    run_app(at, 120)
    shown = [m.value for m in at.markdown if name in plain(m.value)] + [e.value for e in at.error]
    assert shown and all("<img" not in rendered(v) for v in shown), shown
    assert any(plain(e.value).startswith(name) for e in at.error), [e.value for e in at.error]


def test_an_au_table_downloaded_from_the_dashboard_reads_back_with_its_file_names(tmp_path):
    """The download puts a ' before a file name a spreadsheet would run (-01.jpg, @2x.jpg): read
    back (the AU model page, train-au-bottleneck --au-table), the rows no longer matched their files."""
    from fer_core import au_table
    from fer_core.au_table import AU_COLUMNS
    from fer_core.fileio import csv_bytes

    names = ["-01.jpg", "@2x_happy.jpg", "=a.jpg", "happy/+45.jpg", "plain.jpg"]
    table = pd.DataFrame({"file": names, "face": 0, "label": "happy", "success": 1,
                          **{c: 1.5 for c in AU_COLUMNS}})
    path = tmp_path / "au.csv"
    path.write_bytes(csv_bytes(table))
    assert "'-01.jpg" in path.read_text()
    assert au_table.read(path)["file"].tolist() == names


def test_shown_literally_keeps_a_leading_list_quote_or_rule_marker_as_text():
    """A name at the start of a message (an error begins with the file's name) started a list, a
    numbered list, a rule or a quote: '-01.jpg: not an image' is text, '- 01.jpg' was a bullet."""
    from ui.common import shown_literally

    for name in ("- a.jpg", "+ a.jpg", "1. a.jpg", "2024) a.jpg", "---", "-", "> a.jpg", "  - a.jpg"):
        html = rendered(shown_literally(name))
        assert not re.search(r"<(ul|ol|li|hr|blockquote|h\d)\b", html), (name, html)
        assert plain(shown_literally(name)) == name.strip()
    assert shown_literally("3.5 s: 2024.01.05.jpg") == "3.5 s: 2024.01.05.jpg"  # no marker: as typed


class _RefusingDocker:
    """A Docker engine that answers and then refuses: looking up the image (``lookup``), pulling
    it, or starting a container."""

    def __init__(self, lookup: bool = True):
        self.lookup, self.images, self.containers = lookup, self, self

    def ping(self):
        return True

    def get(self, name):
        import docker

        if not self.lookup:
            raise docker.errors.APIError("500 Server Error: Internal Server Error")
        return object()

    def pull(self, repo, tag=None):
        import docker

        raise docker.errors.APIError(f"pull access denied for {repo}")

    def create(self, *args, **kwargs):
        import docker

        raise docker.errors.APIError("Mounts denied: the path is not shared from the host")


def test_errors_that_name_a_command_show_no_literal_backticks(tmp_path):
    """An error is shown as text (``show_error``), so a command written as a code span in it showed
    its backticks: "check the engine with `docker info`". The command is plain text now, and the
    Korean templates of these messages still match them."""
    from PIL import Image

    from fer_core import i18n
    from fer_core.au_table import AU_COLUMNS
    from fer_core.errors import FerError
    from fer_core.images import LabeledImage
    from fer_core.measure.openface_docker import OpenFaceDocker
    from fer_core.predictors.au_bottleneck import _au_targets
    from fer_core.predictors.cnn import load_network

    photo = tmp_path / "happy" / "a.jpg"
    photo.parent.mkdir()
    Image.new("RGB", (8, 8)).save(photo)
    docker_lines = [OpenFaceDocker(client=_RefusingDocker(lookup=False)).status()[1]]
    for call in (lambda: OpenFaceDocker(client=_RefusingDocker()).pull(),
                 lambda: OpenFaceDocker(client=_RefusingDocker(), work_dir=tmp_path).extract([LabeledImage(photo, "happy")])):
        with pytest.raises(FerError) as caught:
            call()
        docker_lines.append(str(caught.value))
    other_lines = []
    table = pd.DataFrame({"file": ["elsewhere.jpg"], "face": 0, "label": "happy", "success": 1,
                          **{c: 1.0 for c in AU_COLUMNS}})
    for call in (lambda: _au_targets([photo], tmp_path, table, None),
                 lambda: load_network(tmp_path / "model.keras", {}, runtime="litert")):
        with pytest.raises(FerError) as caught:
            call()
        other_lines.append(str(caught.value))
    assert ["docker info" in docker_lines[0], "docker pull" in docker_lines[1], "docker info" in docker_lines[2],
            "fer_core extract" in other_lines[0], "export-lite" in other_lines[1]] == [True] * 5
    for line in docker_lines + other_lines:
        assert "`" not in line, line
    with i18n.using_language("ko"):
        assert all("확인하" in i18n.message(line) for line in docker_lines), docker_lines


def test_shown_literally_keeps_emoji_icon_and_colour_codes_as_text():
    """Streamlit's Markdown made a class or file named ":smile:" an emoji, ":material/home:" an icon
    and ":red[x]" red text. Both colons of a shortcode (and an icon's "/") and a directive's colon
    are escaped: checked in headless Chromium that each then shows as typed (an escaped opening colon
    alone still made the emoji); CommonMark reads the escapes back to the name."""
    from ui.common import shown_literally

    for name in (":smile: x.jpg", "a:smile:b", ":material/home:", ":red[x]", "x:blue-background[y]", "12:30:45"):
        shown = shown_literally(name)
        assert plain(shown) == name
        assert not re.search(r"(?<!\\):[\w+\-]", shown), shown  # no colon left to open a code or directive
        assert not re.search(r"[\w+\-](?<!\\):", shown.replace("\\:", "")), shown
    assert "\\/" in shown_literally(":material/home:")
    assert shown_literally("keras_model.h5: not an image") == "keras_model.h5: not an image"


def test_shown_literally_keeps_a_bare_web_address_or_email_from_becoming_a_link():
    """A Teachable Machine class named "see http://x.example/l" showed a live link: GitHub's
    autolinks ignore backslash escapes. A word joiner after the scheme or "www" and before "@"
    stops them (checked in headless Chromium: no <a> left); the text reads as typed."""
    from ui.common import shown_literally

    for name in ("see http://127.0.0.1:9999/l", "(https://q.example)", "HTTP://Z.example", "www.x.example",
                 "me@x.example", "[link](http://x.example/a)"):
        shown = shown_literally(name)
        assert plain(shown) == name
        assert not re.search(r"(?i)(https?://|www\.|[^\u2060]@)", shown), shown
    assert shown_literally("shttp_model.h5") == "shttp_model.h5"  # no joiner where nothing would link


def test_dashboard_downloads_open_in_a_korean_excel_and_read_back_everywhere(tmp_path):
    """Without a byte-order mark, Excel reads a CSV in the system's code page (CP949 on a Korean
    Windows): a reviewer's Korean file names would come out garbled. pandas and this workbench's
    table reader read the download back with its first column named as written."""
    from fer_core import au_table
    from fer_core.fileio import csv_bytes

    frame = au_table.from_rows([{"file": "surprise/놀람_사진.jpg", "face": 0, "label": "surprise", "success": 0,
                                 "reason": "no face found"}])
    data = csv_bytes(frame)
    assert data.startswith(b"\xef\xbb\xbffile,")
    assert pd.read_csv(io.BytesIO(data)).columns[0] == "file"
    (tmp_path / "down.csv").write_bytes(data)
    assert au_table.read(tmp_path / "down.csv")["file"].tolist() == ["surprise/놀람_사진.jpg"]
