"""The README's Layout section names every module of ``src/reinflow`` (a new file must be placed there)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_layout_names_every_module():
    text = (ROOT / "README.md").read_text()
    layout = text[text.index("## Layout"):]
    layout = layout[: layout.index("```", layout.index("```") + 3)]
    src = ROOT / "src" / "reinflow"
    missing = [str(p.relative_to(src)) for p in sorted(src.rglob("*.py"))
               if p.name != "__init__.py" and not re.search(rf"(?<![\w.]){re.escape(p.name)}", layout)]
    assert not missing, f"README Layout does not name: {missing}"
