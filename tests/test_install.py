"""The built wheel ships kernels/ as bot4jax.kernels and imports outside the source tree."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_contains_and_imports_kernels(tmp_path):
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(wheels), str(ROOT)], check=True, cwd=tmp_path)
    (wheel,) = wheels.glob("bot4jax-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                    str(wheel)], check=True, cwd=tmp_path)
    code = ("import bot4jax, bot4jax.kernels, bot4jax.kernels.indicators_nb as k; "
            "print(bot4jax.__file__); print(bot4jax.kernels.__file__); print(k.__file__)")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}).stdout
    files = out.split()
    assert len(files) == 3 and all(f.startswith(str(target)) for f in files), out
    assert files[1].endswith("bot4jax/kernels/__init__.py")
