"""The peers' sides of the benchmarks: scripts run under a Python with
PyTorch (`--peer_python`), which may lack kerasseq and its dependencies."""

import subprocess


def missing(python, modules):
    """Why `python` cannot import `modules` (`None` when it can): the line
    a benchmark prints where it skips a peer."""
    try:
        result = subprocess.run(
            [python, "-c", f"import {', '.join(modules)}"],
            capture_output=True,
            text=True,
        )
    except OSError as error:
        return f"--peer_python={python!r} cannot run: {error}"
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["?"])[-1]
        return f"{python} has no {'/'.join(modules)} ({last})"
    return None
