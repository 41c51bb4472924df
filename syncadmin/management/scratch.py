"""A throw-away installation for the benchmark commands, so a benchmark never touches the real databases.

A command re-runs itself once in a fresh data folder (its own SQLite databases, generated keys) with a marker
variable set, and the child does the work.
"""

import os
import subprocess
import sys
import tempfile


def is_scratch_child(marker: str) -> bool:
    """Whether this process is the re-run in the scratch folder."""
    return os.environ.get(marker) == "1"


def rerun_in_scratch_folder(*, marker: str, prefix: str, env: dict[str, str] | None = None) -> int:
    """Run this very command again in a fresh data folder (the configured databases left out); its exit code."""
    with tempfile.TemporaryDirectory(prefix=prefix) as scratch:
        child_env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SANDBOX_DATABASE_URL")}
        child_env.update({marker: "1", "SYNCADMIN_DATA_DIR": scratch, **(env or {})})
        return subprocess.run([sys.executable, *sys.argv], env=child_env, check=False).returncode  # noqa: S603
