"""docs/python-api.md: its code blocks run, in order, in one namespace."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "python-api.md"


def test_python_api_doc_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 5
    namespace = {"__name__": "python_api_doc"}
    for k, block in enumerate(blocks):
        exec(compile(block, f"{DOC.name} block {k + 1}", "exec"), namespace)  # noqa: S102
    assert namespace["match"].f1 == 1.0
    assert "confidence" in namespace["back"].arrays
