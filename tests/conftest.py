"""Shared pytest set-up: service fixtures live in their own plugin modules, one per service."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

pytest_plugins = ["fixtures_go", "fixtures_docker", "fixtures_registry"]

