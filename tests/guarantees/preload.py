"""Build an LD_PRELOAD shim from one of the C files beside this module.

The shims stand in for what cannot be had here (a disk whose fsync fails, a
power cut); everything else in those tests is real. They need Linux and a C
compiler: without them the tests skip, and under CI=true they fail.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import _in_ci

HERE = Path(__file__).parent


def build(source: str, out_dir: Path) -> Path:
    """Compile ``source`` (e.g. ``"failsync.c"``) into ``out_dir``; the .so's path."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None or not sys.platform.startswith("linux"):
        why = f"the {source} shim needs Linux and a C compiler (apt install gcc)"
        if _in_ci():
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    out = out_dir / Path(source).with_suffix(".so").name
    subprocess.run(
        [cc, "-shared", "-fPIC", "-O2", "-o", str(out), str(HERE / source), "-ldl", "-lpthread"],
        check=True,
        capture_output=True,
    )
    return out
