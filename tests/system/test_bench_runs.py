"""`manage.py bench` runs end to end in its throw-away installation and prints every scenario's figures.

It runs with the production settings' defaults (DEBUG off, over plain HTTP on loopback); once, an HTTPS redirect of
those defaults made every scenario fail, and no test noticed.
"""

import os
import re
import subprocess
import sys

import pytest
from django.conf import settings

pytestmark = pytest.mark.system


def test_the_engine_benchmark_runs_every_scenario_on_a_tiny_table_and_prints_its_figures():
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SANDBOX_DATABASE_URL", "REDIS_URL")}
    result = subprocess.run(  # noqa: S603
        [sys.executable, "manage.py", "bench", "--records", "300", "--small", "200", "--c-records", "20", "--queries"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for scenario in (
        "A full sync of 200",
        "A full sync of 300",
        "B incremental",
        "R reconciliation of",
        "D floor",
        "C one record per request",
    ):
        assert scenario in result.stdout, result.stdout[-3000:]
    assert "A runs at" in result.stdout and "of the floor D" in result.stdout
    # --queries: each scenario's statements per page by kind and table (A creates the couplings it reserves).
    statement_line = re.compile(r"^ +[0-9.]+ per page  INSERT coupling_coupling$", re.MULTILINE)
    assert statement_line.search(result.stdout), result.stdout[-3000:]
