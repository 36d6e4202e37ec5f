"""Command lines: paths pasted as they are, and commands printed for pasting back."""
from __future__ import annotations

import os
import re
import shlex
import sys
from typing import Any

# Overrides whose value is a file or folder. A multirun job's folder is named from its overrides
# (`0_data=gtzan,fold=0`), which Hydra cannot parse unquoted.
PATH_KEYS = ("ckpt", "ckpt_path", "init_from", "input", "output", "data.root", "hydra.run.dir", "hydra.sweep.dir")


def hydra_quote(value: str) -> str:
    """`value` as a single-quoted Hydra string: a `'` inside escaped as `\\'`, and the backslashes
    before a quote or the end doubled (Hydra reads 2n of them there as n, others as they are)."""
    return "'" + re.sub(r"(\\*)('|\Z)", lambda m: 2 * m[1] + "\\" * bool(m[2]) + m[2], value) + "'"


def override_value(value: Any) -> str:
    """`value` written so that Hydra's override grammar reads it back as the same value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(map(override_value, value)) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{key}:{override_value(item)}" for key, item in value.items()) + "}"
    text = str(value)
    plain = re.fullmatch(r"[A-Za-z_/][\w./:-]*", text, re.ASCII) and text.lower() not in ("null", "true", "false", "nan", "inf")
    return text if plain else hydra_quote(text)


def _is_path_key(key: str) -> bool:
    key = key.lstrip("+~")
    return key in PATH_KEYS or key.startswith("paths.")


def quote_paths(args: list[str]) -> list[str]:
    """Command-line overrides with every path value that Hydra cannot parse as written (`=`, `,`
    with `=`, quotes) quoted for it, so that a path copied from a log, metrics.json or summary.csv
    works as pasted. A value with a comma that Hydra reads as a sweep is one path if a file or
    folder of that whole name exists (`input=/music/Crosby, Stills.wav`), a sweep otherwise
    (`ckpt_path=a.ckpt,b.ckpt`). A path Hydra would read as a number (`data.root=2024`) stays a path."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser, quoted = OverridesParser.create(), []
    for arg in args:
        key, sep, value = arg.partition("=")
        if sep and not arg.startswith("-") and _is_path_key(key) and "${" not in value:
            try:
                override = parser.parse_override(arg)
                if override.is_sweep_override():
                    if os.path.exists(os.path.expanduser(value)):
                        arg = f"{key}={hydra_quote(value)}"
                elif isinstance(override.value(), (int, float)) and not isinstance(override.value(), bool):
                    arg = f"{key}={hydra_quote(value)}"
            except HydraException:
                arg = f"{key}={hydra_quote(value)}"
        quoted.append(arg)
    return quoted


def run_with_pasted_paths(main) -> None:
    """Call a `@hydra.main` function with sys.argv's path values quoted (see `quote_paths`)."""
    sys.argv[1:] = quote_paths(sys.argv[1:])
    main()


def python_command(module: str) -> str:
    """`<this interpreter> -m module`: the command that reruns this program as it runs now, from
    any shell (a bare `python` may be another interpreter, or none)."""
    return f"{shlex.quote(sys.executable)} -m {module}"
