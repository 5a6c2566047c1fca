"""Start-up cost: importing the library or the command loads no heavy module; --help is quick.

Each check runs in a fresh interpreter (``sys.modules`` of this one already holds everything).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys

import pytest

HEAVY = ("numba", "pymc", "pytensor", "arviz", "matplotlib", "tqdm", "sklearn.datasets")


def _loaded(code: str) -> list[str]:
    probe = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize(
    "code",
    [
        "import bayeslayers",
        "import bayeslayers.cli",
        "from bayeslayers import Network, layers, heads, load",
        "import bayeslayers.config, bayeslayers.datasets, bayeslayers.plots",
    ],
)
def test_imports_load_no_heavy_module(code):
    loaded = set(_loaded(code))
    assert not [m for m in HEAVY if m in loaded]


def test_lazy_names_resolve():
    import bayeslayers

    assert bayeslayers.Network.__name__ == "Network"
    assert callable(bayeslayers.load) and bayeslayers.layers.ReLU and bayeslayers.heads.Gaussian
    assert bayeslayers.metrics.__name__ == "bayeslayers.metrics"  # any submodule, on demand
    assert set(bayeslayers.__all__) <= set(dir(bayeslayers))
    assert isinstance(bayeslayers.__version__, str)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        bayeslayers.nope  # noqa: B018


def test_first_kernel_call_loads_numba():
    loaded = _loaded(
        "import numpy as np\nfrom bayeslayers import _kernels\n"
        "assert 'numba' not in sys.modules\n"
        "_kernels.masked_solves(np.eye(2), np.ones((2, 1)), np.ones((1, 2)), 1.0)"
    )
    assert "numba" in loaded


def test_reading_digits_does_not_import_sklearn():
    loaded = _loaded("from bayeslayers.datasets import load_dataset\nload_dataset('digits')")
    assert "sklearn" not in loaded  # digits read from its CSV, the split written out


def _cpu_seconds(argv: list[str]) -> float:
    """CPU time (user + system) of a child process: unlike wall time, not inflated by a
    machine busy with other work."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert done.returncode == 0 and "usage: bayeslayers" in done.stdout
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def test_help_answers_well_under_half_a_second():
    best = min(_cpu_seconds([sys.executable, "-m", "bayeslayers.cli", "--help"]) for _ in range(3))
    assert best < 0.5, f"bayeslayers --help took {best:.2f} s of CPU time"
