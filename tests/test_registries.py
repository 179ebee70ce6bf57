"""Every consumer agrees with the registries (data sets, models, random streams), and adding a data set or a model
is one entry: a new entry works end to end with no other change."""

from collections import Counter

import numpy as np
import pytest
import torch

from spuriouslab.data import images
from spuriouslab.data.datasets import DATASETS, DatasetSpec
from spuriouslab.data.formats import ImageData
from spuriouslab.errors import ConfigError
from spuriouslab.experiments import get_experiment, run_points
from spuriouslab.nets.models import MODELS, ModelSpec, has_batchnorm
from spuriouslab.seeding import IMAGE_OFFSETS, STREAMS

DATA_EXPERIMENTS = ["memorization", "memorization-nn", "background-features", "probe"]


def _values(name: str, data: str) -> dict:
    extra = {"probe": {"model": "probe_models:reads_border"}, "background-features": {"depth": 8}}.get(name, {})
    root = {"data_root": "/nonexistent"} if data == "folder" else {}
    return {"data": data, **extra, **root}


@pytest.mark.parametrize("experiment", DATA_EXPERIMENTS)
def test_every_registered_data_set_is_accepted_with_its_defaults(experiment):
    exp = get_experiment(experiment)
    for name, spec in DATASETS.items():
        cfg = exp.make_config(_values(experiment, name))
        assert cfg.data == name
        if experiment == "memorization":
            assert cfg.classes == list(spec.classes) and cfg.n_train == list(spec.n_train)
            assert cfg.border == spec.border and cfg.split_spec().border_width == spec.border
        elif experiment == "memorization-nn":
            assert cfg.border == spec.border
        elif experiment == "background-features":
            assert (cfg.border, cfg.eval_border) == spec.padding
    with pytest.raises(ConfigError, match="allowed: .*" + ", ".join(DATASETS)):
        exp.make_config(_values(experiment, "no-such-set"))


def test_data_layer_reads_shapes_sources_and_checksums_from_the_registry():
    for name, spec in DATASETS.items():
        if spec.shape is not None:
            assert images.image_shape(name) == spec.shape
    listed = [row["name"] for row in images.info()]
    assert listed == [k for k, v in DATASETS.items() if v.marker is not None or v.package or images.builtin(k)]
    with pytest.raises(ConfigError, match="allowed: " + ", ".join(k for k, v in DATASETS.items() if v.sources)):
        images.fetch("digits")


def _tiny(where):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (60, 6, 6, 1), dtype=np.uint8)
    y = np.arange(60) % 3
    return ImageData("tiny", x[:40], y[:40], x[40:], y[40:], ["a", "b", "c"], source="test")


def test_a_new_data_set_is_one_entry(monkeypatch):
    monkeypatch.setitem(
        DATASETS,
        "tiny",
        DatasetSpec(_tiny, "a test set", shape=(6, 6, 1), border=2, classes=(0, 2), n_train=(8, 12), padding=(1, 1)),
    )
    images._load_cached.cache_clear()
    assert "tiny" in [r["name"] for r in images.info()] and images.load_images("tiny").verified.startswith("shapes")
    mem = get_experiment("memorization")
    cfg = mem.make_config({"data": "tiny", "model": ["rf"], "width": ["inf"], "seeds": 1, "n_test": 10})
    assert cfg.n_train == [8, 12] and cfg.classes == [0, 2] and cfg.border == 2
    recs = run_points(mem, cfg)
    assert len(recs) == 2 and all(np.isfinite(r["spurious_acc"]) for r in recs)
    nn = get_experiment("memorization-nn")
    cfg = nn.make_config(
        {"data": "tiny", "model": ["fc"], "n_train": [12], "epochs": 2, "log_every": 1, "seeds": 1, "n_test": 10}
    )
    (rec,) = run_points(nn, cfg)
    assert rec["status"] == "ok" and rec["n_classes"] == 3 and len(rec["curve_epoch"]) == 3
    images._load_cached.cache_clear()


def test_every_classifier_is_offered_and_its_batchnorm_flag_is_true():
    nn = get_experiment("memorization-nn")
    for name, spec in MODELS.items():
        built = spec.build((3, 12, 12), 10)
        assert has_batchnorm(built) == spec.batchnorm, name
        params, activations = spec.size((3, 12, 12), 10)
        assert params == sum(p.numel() for p in built.parameters()) and activations > 0, name
        if spec.role == "classifier":
            cfg = nn.make_config({"model": [name]})
            assert cfg.model == [name]
            assert built(torch.zeros(2, 3, 12, 12)).shape == (2, 10)
            point = {"model": name, "n_train": 100, "remedy": "none", "seed": 0}
            assert (point["seed"] in nn.group_key(cfg, point)[3:]) == spec.batchnorm  # BatchNorm: one seed a group
        else:
            with pytest.raises(ConfigError, match="model: got"):
                nn.make_config({"model": [name]})


class _Linear(torch.nn.Module):
    def __init__(self, shape, n_out):
        super().__init__()
        self.layer = torch.nn.Linear(int(np.prod(shape)), n_out)

    def forward(self, x):
        return self.layer(x.flatten(1))


def test_a_new_model_is_one_entry(monkeypatch):
    monkeypatch.setitem(MODELS, "linear", ModelSpec(_Linear, "a linear classifier"))
    nn = get_experiment("memorization-nn")
    cfg = nn.make_config({"model": ["linear"], "n_train": [20], "epochs": 2, "log_every": 1, "seeds": 2, "n_test": 20})
    recs = run_points(nn, cfg)
    assert [r["status"] for r in recs] == ["ok", "ok"] and recs[0]["curve_train_loss"] != recs[1]["curve_train_loss"]
    assert nn.estimate(cfg).peak_bytes > 0


# Stream ids that two families share since before this test existed.  They never meet in one draw (different
# generator kinds or key lengths), and renumbering them would change every stored record made with them; a new
# stream takes an id no other stream has.
HISTORICAL_SHARED_IDS = {
    0: {"synthetic.train", "contamination.map"},
    1: {"synthetic.test", "features.rf", "contamination.data"},
    2: {"synthetic.query", "features.ntk", "contamination.sampling"},
    3: {"synthetic.teacher", "contamination.init"},
}


def test_stream_ids_are_unique():
    by_id: dict[int, set] = {}
    for name, sid in STREAMS.items():
        by_id.setdefault(sid, set()).add(name)
    shared = {sid: names for sid, names in by_id.items() if len(names) > 1}
    assert shared == HISTORICAL_SHARED_IDS
    families = Counter((name.split(".")[0], sid) for name, sid in STREAMS.items())
    assert max(families.values()) == 1  # within a family, always unique
    image_bases = [STREAMS["images.kernels"], STREAMS["images.nets"]]  # their offsets: no overlap with others
    taken = set(STREAMS.values()) - set(image_bases)
    assert not any(b + k in taken for b in image_bases for k in IMAGE_OFFSETS.values())
