"""Small helpers shared by the Streamlit AppTest files."""

from __future__ import annotations

import json

from streamlit.testing.v1 import AppTest


def run_app(at: AppTest, timeout: float) -> AppTest:
    """Run the script and fail with the page's exception messages, if any."""
    at.run(timeout=timeout)
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(elements) -> list[str]:
    return [str(e.value) for e in elements]


def charts(at: AppTest) -> list[dict]:
    """The plotly figure specs the page rendered."""
    return [json.loads(e.proto.spec) for e in at.get("plotly_chart")]
