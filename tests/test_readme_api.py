"""The README's Python API example, run as written (its photo and test folder put in place):
an example that no longer runs is the first thing a library user meets."""

from __future__ import annotations

import contextlib
import io
import re

from fer_core.config import REPO_ROOT


def test_the_readmes_python_example_runs(astronaut_jpeg, fer_val, tmp_path, monkeypatch):
    from fer_core.images import draw_test_set

    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    draw_test_set(fer_val, tmp_path / "test60", per_class=2)
    code = code.replace('"photo.jpg"', repr(str(astronaut_jpeg))).replace('"test60"', repr(str(tmp_path / "test60")))
    monkeypatch.chdir(REPO_ROOT)  # the example reads data/ as the README's commands do, from the checkout
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md (Python API)", "exec"), {})
    lines = printed.getvalue().splitlines()
    assert "happy, mostly because of AU12 lip corner puller" in lines[0]
    assert [line.split()[0] for line in lines[1:]] == ["mine", "au-logreg-fer2013", "cnn-fer2013"]
