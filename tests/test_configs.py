from pathlib import Path

import pytest
import yaml

from spuriouslab.experiments import get_experiment

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_ready_made_configs_validate(path):
    from spuriouslab.sweep import make_plan

    values = yaml.safe_load(path.read_text())
    exp = get_experiment(values.pop("experiment"))
    plan = make_plan(exp, values)  # a list on a field that is not an axis sweeps it (rho of the coloured task)
    dumped = plan.base.model_dump(mode="json")  # what config.yaml of the run will say
    for key, value in values.items():  # nothing silently dropped or rewritten
        got = plan.grid[key] if key in plan.grid else dumped[key]
        assert got == value or got == [value], (key, got, value)


def test_there_is_a_config_per_paper_figure():
    names = {p.stem for p in CONFIGS}
    assert {
        "memorization_synthetic",
        "memorization_mnist",
        "memorization_cifar10",
        "alignment",
        "ridge_correlation",
        "contamination_theory",
        "contamination_activations",
        "nn_mnist",
    } <= names
