import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from factory import ProjectFactory  # noqa: E402


@pytest.fixture
def factory(tmp_path) -> ProjectFactory:
    """A fresh project folder; call ``.complete()`` or the step builders on it."""
    return ProjectFactory(tmp_path / "proj")
