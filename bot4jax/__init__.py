"""bot4jax: crypto trading research (JAX, batch) and execution (Numba, streaming) in one pipeline."""
import importlib.util as _util
import sys as _sys
from pathlib import Path as _Path

__version__ = "0.1.0"


def _map_source_kernels() -> None:
    # Installed, `kernels/` lives at bot4jax/kernels. Run from a source checkout after a
    # non-editable install, ./bot4jax shadows the installed package and kernels/ sits beside it:
    # map it to the same name so both layouts import identically.
    if _util.find_spec("bot4jax.kernels") is not None:
        return
    src = _Path(__file__).resolve().parent.parent / "kernels"
    if (src / "__init__.py").is_file():
        spec = _util.spec_from_file_location("bot4jax.kernels", src / "__init__.py",
                                             submodule_search_locations=[str(src)])
        module = _util.module_from_spec(spec)
        _sys.modules["bot4jax.kernels"] = module
        spec.loader.exec_module(module)


_map_source_kernels()
