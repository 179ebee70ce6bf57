"""Ready-made paper figures: ``spuriouslab reproduce NAME`` runs one with that paper's recipe (a config in
``spuriouslab/configs/``, also reachable as ``configs/`` in a checkout) and writes its report.

Runtimes were measured with the command itself on the 2-core CPU machine this project develops on, most in one
``reproduce --all --budget cpu`` on 2026-12-02 ("--budget cpu: ..." is a figure's time with its ``cpu_sets``).
"not measured" says so where a run needs data or hardware we did not have, or was too long to measure in the
session that wrote this.  No GPU was available to measure the GPU column.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from spuriouslab.errors import ConfigError


@dataclass(frozen=True)
class Figure:
    """One named figure: the paper, its config file, what it shows, the runtimes measured on 2 CPU cores and on a
    GPU, and what it needs: ``data`` (data sets of the registry that must be found on disk), ``gpu`` (paper
    scale: runs only in ``--budget gpu``, and only where a GPU is present).  ``cpu_sets`` are the ``--set``
    overrides ``reproduce --all --budget cpu`` runs it with (shorter training that still gives every verdict);
    ``reproduce NAME`` and ``--budget gpu`` run the config as it is."""

    paper: str
    config: str  # file name in spuriouslab/configs
    shows: str
    cpu: str  # measured runtime on 2 CPU cores
    gpu_time: str = "not measured"
    data: tuple[str, ...] = ()
    gpu: bool = False
    cpu_sets: tuple[str, ...] = ()
    # --set values that run it on a subset of its data shipped in a package (``data=mnist-5k``) when ``data`` is
    # not found; the run's summary names the subset
    subset: tuple[str, ...] = ()
    # the scale knob of a preset whose size was once chosen by a search, and the values ``reproduce NAME --across``
    # runs it at (claims across scale); ``rule`` says how the preset's value of the knob is chosen now
    across: tuple[str, tuple[int, ...]] | None = None
    rule: str = ""
    extras: tuple[str, ...] = ()  # optional extras of the package it needs (pretrained: the ImageNet teachers)

    @property
    def subset_data(self) -> str | None:
        """The data set ``subset`` runs the figure on (its ``data=`` value), or None."""
        return next((s.split("=", 1)[1] for s in self.subset if s.startswith("data=")), None)

    @property
    def needs(self) -> str:
        """What it needs beyond the package, in words."""
        parts = [f"{d} (spuriouslab data fetch {d})" for d in self.data]
        parts += [f"the {e} extra (pip install 'spuriouslab[{e}]')" for e in self.extras]
        parts += ["a GPU"] if self.gpu else []
        return "; ".join(parts)


BM = "Bombari & Mondelli, ICML 2024"
ZH = "Zhang et al., ICML 2024"
SHORT = ("iterations=5000", "log_every=250")  # contamination in reproduce --all --budget cpu: a quarter of the run
# the contamination figures across their length (log_every 250 divides each)
ITERATIONS = ("iterations", (2500, 5000, 10000, 20000))
SHORT_RULE = (
    "the paper's 20000 iterations (reproduce NAME); reproduce --all --budget cpu runs a quarter of them, 5000, to fit "
    "the CPU budget - a length, not a choice by verdicts; --across iterations shows each claim at 2500 to 20000"
)

# How the searched presets' sizes are chosen now (issue 29): by a rule on training, stated before the runs across
# scale were judged, never by which verdicts come out; ``reproduce NAME --across`` shows every claim at every size.
DISTILL_RULE = (
    "epochs: the smallest of 100, 300, 1000, 3000 at which the ReLU student has fitted its teacher on the training "
    "distribution, cosine similarity of the embeddings >= 0.95 on ID data (fit_cos_id, mean over seeds)"
)
PADDED_RULE = (
    "epochs: the smallest of 2, 4, 8, 16 at which the control network reaches 0.85 test accuracy on the unpadded "
    "images (mean over seeds), i.e. a trained classifier, whatever its border reliance; none does (0.525, 0.644, "
    "0.829, 0.845 on 2026-12-07), so the largest, 16, where the control is closest to it"
)
PRETRAINED_RULE = (
    "epochs: the smallest of 10, 20, 40 at which the distilled student has fitted its pretrained teacher on ID "
    "data, relative embedding error on the ID test images <= 0.5 (relerr_id, mean over seeds: the student explains "
    "at least half of the teacher's ID variance), stated on 2026-12-07 before the runs across epochs; if none "
    "does, the largest; none did (1.49, 1.15, 0.93 on 2026-12-07), so 40"
)

FIGURES: dict[str, Figure] = {
    "bm-synthetic": Figure(
        BM,
        "memorization_synthetic.yaml",
        "RF (k=1e5) and NTK (k=100) spurious vs test accuracy "
        "over N, phi2/phi4, alpha 1/2 and 1/4, alignment with theory",
        "4m04s",
    ),
    "bm-synthetic-relu": Figure(BM, "memorization_synthetic_relu.yaml", "the same with ReLU at infinite width", "15s"),
    "bm-alignment": Figure(
        BM, "alignment.yaml", "feature alignment measured vs predicted over alpha, 4 activations, N = 10..4d", "1m49s"
    ),
    "bm-ridge": Figure(
        BM + " (follow-up)",
        "ridge_correlation.yaml",
        "memorization and spurious correlation C vs the ridge lambda, correlated spurious parts",
        "9s",
    ),
    "bm-ridge-linear": Figure(
        BM + " (follow-up)",
        "ridge_linear.yaml",
        "linear ridge on z = [x, y] with a covariance: C and L vs lambda, measured and their deterministic "
        "equivalents, n/d = 1/2 and 2, two correlations, isotropic and power-law spurious spectra",
        "43s",
    ),
    "bm-ridge-rf": Figure(
        BM + " (follow-up)",
        "ridge_rf.yaml",
        "random features (ReLU, tanh, GELU; infinite width) against linear ridge at the effective lambda~ from "
        "their Hermite coefficients: C and L vs lambda, measured and the linear theory, bm-ridge-linear's settings",
        "2m30s",
    ),
    "bm-ridge-colour-mnist": Figure(
        BM + " (follow-up)",
        "ridge_colour_mnist.yaml",
        "linear ridge on Color-MNIST (1 vs 7, a red / green border agreeing with the label w.p. rho = 0.5 .. 1): "
        "C and the test loss vs lambda per rho, the test-optimal lambda, the coloured task's accuracies",
        "not measured (on mnist-5k: 33s)",
        data=("mnist",),
        subset=("data=mnist-5k", "n_train=200,600", "n_test=200"),
    ),
    "bm-ridge-colour-cifar10": Figure(
        BM + " (follow-up)",
        "ridge_colour_cifar10.yaml",
        "linear ridge on CIFAR-10 cat vs ship with a red / green border agreeing with the label w.p. rho = 0.5 .. 1: "
        "C and the test loss vs lambda per rho",
        "not measured",
        data=("cifar10",),
    ),
    "bm-mnist": Figure(
        BM,
        "memorization_mnist.yaml",
        "RF / NTK memorization on MNIST 1 vs 7 with a noise border",
        "not measured (on mnist-5k: 1m28s)",
        data=("mnist",),
        subset=("data=mnist-5k", "n_train=100,200,500,800"),
    ),
    "bm-cifar10": Figure(
        BM,
        "memorization_cifar10.yaml",
        "RF / NTK memorization on CIFAR-10 cat vs ship with a noise border",
        "not measured",
        data=("cifar10",),
    ),
    "bm-colour-kernels": Figure(
        BM + " (follow-up) x " + ZH,
        "coloured_kernels.yaml",
        "RF / NTK ridge on digits 1 vs "
        "7 with a red / green border agreeing with the label w.p. rho = 0.5 .. 1: C vs "
        "lambda per rho, worst-group accuracy and colour reliance vs rho",
        "38s",
    ),
    "colour-spectrum": Figure(
        BM + " x " + ZH,
        "coloured_nets.yaml",
        "FC, CNN and ResNet-8 on coloured digits over "
        "rho = 0.5 .. 1: OOD (reversed colour) and worst-group accuracy, colour reliance",
        "3m17s",
    ),
    "colour-thesis": Figure(
        ZH + " x the spurious-correlation literature",
        "coloured_thesis.yaml",
        "the thesis on one task: CNN on coloured digits at rho 0.5 (novel colours: contamination) and 0.9 (colours "
        "reversed: spurious correlation), no remedy, pre-training, reweighting, GroupDRO, JTT and DFR; checkpoints "
        "chosen by worst-group validation accuracy; failure mode x remedy figure",
        "4m09s",
    ),
    "colour-thesis-resnet": Figure(
        ZH + " x the spurious-correlation literature",
        "coloured_thesis_resnet.yaml",
        "the same with the CIFAR ResNet-8 (3 seeds)",
        "11m11s (CPU shared with two other jobs)",
    ),
    "bm-digits": Figure(
        BM + " (offline stand-in)",
        "memorization_offline_images.yaml",
        "the image protocol on scikit-learn's digits",
        "6s",
    ),
    "bm-nn-quick": Figure(BM, "nn_quick.yaml", "trained FC and CNN memorize the border (digits, 150 epochs)", "44s"),
    "bm-nn-mnist": Figure(
        BM,
        "nn_mnist.yaml",
        "trained FC and CNN on MNIST, the paper's recipe (1000 epochs)",
        "not measured",
        data=("mnist",),
        gpu=True,
    ),
    "bm-nn-resnet": Figure(
        BM, "nn_cifar10_resnet.yaml", "ResNet-18 on CIFAR-10 with a border", "not measured", data=("cifar10",), gpu=True
    ),
    "zh-theory": Figure(
        ZH,
        "contamination_theory.yaml",
        "ReLU net grows background weight (hinge, SGD, frozen output): projections, activation asymmetry, OOD loss",
        "2m13s",
    ),
    "zh-activations": Figure(
        ZH,
        "contamination_activations.yaml",
        "background growth for ReLU, GELU, LeakyReLU, Sigmoid, Tanh and the linear net",
        "10m42s (--budget cpu: 3m35s)",
        cpu_sets=SHORT,
        across=ITERATIONS,
        rule=SHORT_RULE,
    ),
    "zh-losses": Figure(
        ZH,
        "contamination_losses.yaml",
        "background growth across losses x optimizers",
        "not measured (--budget cpu: 3m12s)",
        cpu_sets=SHORT,
        across=ITERATIONS,
        rule=SHORT_RULE,
    ),
    "zh-toy": Figure(
        ZH,
        "contamination_toy.yaml",
        "the official toy script (logistic, AdamW, norm core, seed 2024) across activations",
        "8m29s (--budget cpu: 4m44s)",
        cpu_sets=SHORT,
        across=ITERATIONS,
        rule=SHORT_RULE,
    ),
    "zh-distillation": Figure(
        ZH,
        "distillation_synthetic.yaml",
        "teacher / distilled student / baseline probed ID and OOD; the student's background weight",
        "1m06s",
        across=("epochs", (100, 300, 1000, 3000)),
        rule=DISTILL_RULE,
    ),
    "zh-distillation-digits": Figure(
        ZH, "distillation_digits.yaml", "distillation on digits laid on backgrounds", "44s"
    ),
    # The deep-network presets in the other family, the small Vision Transformer (spuriouslab.nets.vit), each right
    # after its ResNet / CNN counterpart so that the evidence reads in both families side by side.  Runtimes
    # measured on 2026-12-02 with ``OMP_NUM_THREADS=1 spuriouslab reproduce NAME`` on the project's 2-core machine
    # while another job shared its CPU (two threads contending with it ran several times slower).
    "zh-distill-digits-vit": Figure(
        ZH,
        "distillation_digits_vit.yaml",
        "distillation on digits laid on backgrounds with ViT teacher, student and baseline (30 epochs each)",
        "3m42s (OMP_NUM_THREADS=1, CPU shared)",
    ),
    "zh-pretrained": Figure(
        ZH,
        "distillation_pretrained.yaml",
        "distillation from a pretrained ImageNet teacher (EfficientNet-Lite0): a same-architecture student from "
        "scratch and a label-trained baseline, probed on digits (32 px) and on sketch / style / noise / blur / "
        "contrast / frame renditions; the student-teacher match ID and OOD (CKA, relative error)",
        "23m34s",
        extras=("pretrained",),
        across=("epochs", (10, 20, 40)),
        rule=PRETRAINED_RULE,
    ),
    "zh-pretrained-fashion": Figure(
        ZH,
        "distillation_pretrained_fashion.yaml",
        "the same on Fashion-MNIST",
        "23m34s",
        data=("fashion-mnist",),
        extras=("pretrained",),
    ),
    "zh-pretrained-cifar10": Figure(
        ZH,
        "distillation_pretrained_cifar10.yaml",
        "the same on CIFAR-10 (32 px, 5000 images) with the three teachers EfficientNet-Lite0 / 1 / 2",
        "not measured",
        data=("cifar10",),
        extras=("pretrained",),
    ),
    "zh-pretrained-paper": Figure(
        ZH,
        "distillation_pretrained_paper.yaml",
        "the paper's scale: full CIFAR-10 at 224 px, the three teachers, the paper's recipe",
        "not measured",
        data=("cifar10",),
        gpu=True,
        extras=("pretrained",),
    ),
    "zh-padded-cpu": Figure(
        ZH,
        "background_features_cpu.yaml",
        "padded vs control ResNet-8 on 5000 Fashion-MNIST "
        "images, 16 epochs, 5 seeds: feature grids and their colour, border reliance, Grad-CAM",
        "31m36s (CPU shared with a run of about its size; 8 epochs took 8m11s-10m01s)",
        across=("epochs", (2, 4, 8, 16)),
        rule=PADDED_RULE,
    ),
    "zh-padded-vit-cpu": Figure(
        ZH,
        "background_features_vit_cpu.yaml",
        "padded vs control ViT (patch 4, dim 64, depth 4) on 5000 Fashion-MNIST images, 5 epochs, 3 seeds: "
        "feature grids of its last block's MLP units and their colour, border reliance, Grad-CAM on the patch "
        "embedding",
        "8m48s (OMP_NUM_THREADS=1, CPU shared)",
    ),
    "zh-padded-cifar": Figure(
        ZH,
        "background_features_paper.yaml",
        "padded CIFAR-10, ResNet-32, 250 epochs: the paper's feature visualizations, with numbers",
        "not measured",
        data=("cifar10",),
        gpu=True,
    ),
}

VIT_FIGURES: dict[str, tuple[str, Figure]] = {
    name: (counterpart, FIGURES[name])
    for name, counterpart in [
        ("zh-padded-vit-cpu", "zh-padded-cpu"),
        ("zh-distill-digits-vit", "zh-distillation-digits"),
    ]
}
"""The ViT figures, each with its ResNet / CNN counterpart (the entry before it in :data:`FIGURES`)."""


def config_path(name: str) -> Path:
    if name not in FIGURES:
        raise ConfigError(f"reproduce: got {name!r}; allowed: {', '.join(FIGURES)} (spuriouslab reproduce --list)")
    path = Path(str(resources.files("spuriouslab") / "configs" / FIGURES[name].config))
    if not path.is_file():
        raise ConfigError(f"reproduce: the config {FIGURES[name].config} is missing from the installed package")
    return path


def listing() -> str:
    lines = []
    for name, f in FIGURES.items():
        lines.append(f"{name:<24} {f.paper}: {f.shows}")
        extra = (f"; needs {f.needs}" if f.needs else "") + (
            f"; reproduce --all --budget cpu sets {' '.join(f.cpu_sets)}" if f.cpu_sets else ""
        )
        lines.append(f"{'':<24} configs/{f.config}; 2 CPU cores: {f.cpu}; GPU: {f.gpu_time}{extra}")
        if f.across is not None:
            knob, values = f.across
            lines.append(f"{'':<24} --across declared: {knob} = {', '.join(map(str, values))}; preset rule: {f.rule}")
    return "\n".join(lines)
