from __future__ import annotations

import os

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def cli():
    """Invoke the CLI in-process; returns (exit_code, stdout, stderr)."""
    from typer.testing import CliRunner

    from spuriouslab.cli import app

    runner = CliRunner()

    def invoke(*args: str):
        res = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
        return res.exit_code, res.stdout, res.stderr

    return invoke


TINY = [
    "--set",
    "d=40",
    "--set",
    "n_train=10,30",
    "--set",
    "n_test=50",
    "--set",
    "width=300",
    "--set",
    "seeds=2",
    "--set",
    "alpha=0.5",
    "--set",
    "activation=phi2,relu",
    "--no-progress",
]
