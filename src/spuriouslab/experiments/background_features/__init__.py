"""Background features in deep networks (Zhang et al., ICML 2024, Section 5), with numbers.

Pad training images with a coloured border (brick red, 150/50/50), random-crop back and flip; train a CIFAR
ResNet-32 (and a control without padding), or with ``model=vit`` a small Vision Transformer; then measure what the
network reads: accuracy and representation change under borders of the training colour and of other colours,
Grad-CAM mass on the border (a ViT's on its patch embedding), and activation maximization of the last
convolution's channels (a ViT's last-block MLP units) with the colours of what it finds.  ``config`` / ``run`` /
``report`` hold the three jobs; the measurements live in :mod:`spuriouslab.nets.analysis`.
"""

from __future__ import annotations

from spuriouslab.claims import Claim
from spuriouslab.experiments.background_features import report, run
from spuriouslab.experiments.background_features.config import BackgroundFeaturesConfig
from spuriouslab.experiments.base import Experiment

ZH = "Zhang et al., ICML 2024"

EXPERIMENT = Experiment(
    name="background-features",
    summary="Padded-border training of a CIFAR ResNet (cpu: ResNet-8, paper: ResNet-32) or a ViT (model=vit): does "
    "it learn the border colour? (Zhang et al.)",
    Config=BackgroundFeaturesConfig,
    run=run,
    reporting=report,
    headline=("acc_train_colour", "repr_change_train_colour", "gradcam_border_train_colour"),
    claims=(
        Claim(
            "background-features",
            "the padded model's features take the border's colour: its visualizations lie "
            "further along the border colour's chroma axis (either direction) than the control's",
            "vis_border_axis_abs",
            "difference",
            when={"pipeline": "padded"},
            versus={"pipeline": "control"},
            paper=ZH,
        ),
        Claim(
            "background-features",
            "the signed measure beside it: the padded model's visualizations are more "
            "toward the border colour itself than the control's",
            "vis_border_axis",
            "difference",
            when={"pipeline": "padded"},
            versus={"pipeline": "control"},
            paper=ZH,
        ),
        Claim(
            "background-features",
            "the padded model relies on the border colour: its accuracy under frames of "
            "the training colour exceeds that under other colours by more than the control's",
            "acc_colour_gap",
            "difference",
            when={"pipeline": "padded"},
            versus={"pipeline": "control"},
            paper=ZH,
        ),
        Claim(
            "background-features",
            "the padded model puts more Grad-CAM mass on a frame of the training colour than the control",
            "gradcam_border_train_colour",
            "difference",
            when={"pipeline": "padded"},
            versus={"pipeline": "control"},
            paper=ZH,
        ),
    ),
)
