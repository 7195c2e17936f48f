"""What every bot4jax command line shares: expected errors become one line on stderr, not a traceback.

    if __name__ == "__main__":
        raise SystemExit(run_cli(main))

Exit status: what `main` returns (None = 0); 1 for a Bot4jaxError, a ccxt error or an OS error (a
missing file, a full disk); 2 for usage errors (argparse exits with 2 by itself); 130 on Ctrl-C.
Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import sys
from typing import Callable, Sequence

from bot4jax.errors import Bot4jaxError


def one_line(exc: BaseException) -> str:
    """The exception as a single line: its type for context (ccxt's names say what failed), then its text."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, Bot4jaxError):
        return text
    return f"{type(exc).__name__}: {text}"


def _is_ccxt_error(exc: BaseException) -> bool:
    # Checked by module so that commands which never touch a venue do not pay for importing ccxt.
    return any(cls.__module__.startswith("ccxt.") for cls in type(exc).__mro__)


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None,
            prog: str | None = None) -> int:
    """Call `main(argv)` and turn expected failures into `<prog>: error: <one line>` and a status."""
    prog = prog or _prog_name()
    try:
        code = main(argv)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except (Bot4jaxError, OSError) as e:
        print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
        return 1
    except Exception as e:
        if not _is_ccxt_error(e):
            raise
        print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
        return 1
    return 0 if code is None else int(code)


def _prog_name() -> str:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:
        name = spec.name.removesuffix(".__main__")
        return f"python -m {name}"
    return "bot4jax"


def config_from_flags(parser, config_cls, argv):
    """Parse flags into `config_cls` (defaults < `--config` TOML < flags, each flag's `dest` a dotted
    config key) and return (config, json_logs, progress). The parser must define --config,
    --log-json and --no-progress, which are not config fields."""
    from bot4jax import config as cfg

    args = vars(parser.parse_args(argv))
    toml, json_logs, no_progress = args.pop("config"), args.pop("log_json"), args.pop("no_progress")
    return cfg.load(config_cls, toml, args), json_logs, not no_progress
