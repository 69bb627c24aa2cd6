"""Where the adoption tests' input files are: the fixtures here, and Showcase's own ord configuration."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent
FIXTURES = HERE / "fixtures"
EXAMPLES = FIXTURES / "examples"
SHOWCASE_ORD = HERE.parent / "fixtures" / "showcase" / "navigator.ord.yml"
