"""documented-api.txt, read from `shared/docs/` beside the repository, for tests that quote it.

CI checks the repository out at some path whose parent (or an ancestor) holds `shared/`; the file
is searched upward from the repository root. Where it is absent the quoting tests skip and say why:
the package carries short quotes, never the document.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
RELATIVE_PATH = Path("shared") / "docs" / "documented-api.txt"


def find_document(start: Path = REPO_ROOT) -> Path | None:
    return next((d / RELATIVE_PATH for d in (start, *start.parents) if (d / RELATIVE_PATH).is_file()), None)


def document_text() -> str:
    """The document's text, or a skip naming where it was looked for."""
    path = find_document()
    if path is None:
        pytest.skip(f"{RELATIVE_PATH} is in neither {REPO_ROOT} nor any directory above it: the quotes cannot "
                    f"be compared with the document")
    return path.read_text(encoding="utf-8")
