"""Prints pip constraints pinning every ``>=`` requirement of pyproject.toml to its minimum.

Usage: python .ci/minimums.py [extra ...] > constraints.txt

The runtime dependencies and the named extras' requirements ``name>=X``
become ``name==X``, so ``pip install -c constraints.txt -e ".[test]"`` builds
an environment with exactly the declared minimum versions.
"""

import re
import sys
from pathlib import Path

import tomllib

project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
requirements = list(project["dependencies"])
for extra in sys.argv[1:]:
    requirements += project["optional-dependencies"][extra]
pins = {}
for requirement in requirements:
    m = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*>=\s*([0-9][^,;\s]*)", requirement.strip())
    if m is None:
        sys.exit(f"pyproject.toml: {requirement!r} has no plain '>=' minimum to pin")
    name = m.group(1).lower()
    if pins.setdefault(name, m.group(2)) != m.group(2):
        sys.exit(f"pyproject.toml: {name} has two minimums, {pins[name]} and {m.group(2)}")
for name, version in sorted(pins.items()):
    print(f"{name}=={version}")
