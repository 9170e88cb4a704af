"""The package surface: small public API, fast import, no heavy imports at CLI start."""

from __future__ import annotations

import subprocess
import sys

import conveyor


def test_public_api_matches_all() -> None:
    public = {name for name in dir(conveyor) if not name.startswith("_")} | set(conveyor.__all__)
    for name in conveyor.__all__:
        assert getattr(conveyor, name) is not None
    assert set(conveyor.__all__) == {"Client", "ConveyorError", "Workspace", "__version__"}
    assert public >= set(conveyor.__all__)


def test_monitoring_names_load_on_first_use_and_the_tables_stay_light() -> None:
    code = (
        "import sys\n"
        "import conveyor.monitoring.records\n"
        "print(sorted({'scipy', 'conveyor.registry.models'} & set(sys.modules)))\n"
        "import conveyor.monitoring as m\n"
        "print(all(getattr(m, name) is not None for name in m.__all__))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["[]", "True"]


def test_cli_start_imports_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "from conveyor.cli.app import app\n"
        "heavy = {'torch', 'ray', 'pyarrow', 'sqlalchemy', 'alembic', 'fsspec', 'numpy'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
