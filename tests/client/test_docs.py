"""docs/client.md's first example runs as written against the real service."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

from tests.client.helpers import stored
from tests.support.api import Api

DOC = Path(__file__).resolve().parents[2] / "docs" / "client.md"


def test_the_first_example_of_the_client_docs_runs_and_stores_its_events(api: Api) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text("utf-8"), re.S)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(blocks[0], {"URL": api.url, "TOKEN": api.key()})
    printed = out.getvalue().splitlines()
    assert printed[0].startswith("configuration ")
    assert printed[1].startswith("[0] [(1, 'outcome', ")  # stored 0, refused 1 by its field
    assert len(stored(api)) == 1 + 1200 + 1 + 1
