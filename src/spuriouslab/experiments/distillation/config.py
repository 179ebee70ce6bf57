"""Distillation config: values only; the preset (cpu / paper recipe) and the task's sizes are layers of
``DEFAULTS``."""

from __future__ import annotations

import copy
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, model_validator

from spuriouslab.data.distillation import DISTILL_TASKS, DistillTaskName
from spuriouslab.experiments.base import ExperimentConfig, FromRegistry
from spuriouslab.experiments.fields import (
    MAX_DIM,
    MAX_SAMPLES,
    MAX_SEEDS,
    MAX_WIDTH,
    ActivationName,
    AndMaskTau,
    FilePath,
    Listed,
    refuse_group_remedies,
    refuse_unused,
    refuse_unused_remedy_settings,
)
from spuriouslab.nets.models import EncoderName
from spuriouslab.nets.remedies import REMEDIES, RemedyName

ROLES = ["teacher", "student", "baseline"]  # the three models of every seed
PRESETS: dict[str, dict[str, Any]] = {
    # CPU minutes: full-batch (synthetic) or small-batch AdamW, no warm-up, no clipping, scikit-learn probes
    "cpu": {"lr": 1e-3, "weight_decay": 1e-3, "warmup": 0, "clip": 0.0, "probe": "sklearn"},
    # the paper's recipe (RN50 row): AdamW lr 1e-3, wd 0.05, batch 256, 10k warm-up steps then cosine, grad-norm
    # clip 1.0, 50 epochs; probes AdamW lr 1e-3, 10 epochs, wd 0.1 (teacher) / 1e-3 (students)
    "paper": {
        "lr": 1e-3,
        "weight_decay": 0.05,
        "batch_size": 256,
        "warmup": 10_000,
        "clip": 1.0,
        "epochs": 50,
        "probe": "torch",
        "probe_epochs": 10,
        "probe_lr": 1e-3,
    },
}
TASK_DEFAULTS = FromRegistry(DISTILL_TASKS, lambda spec: copy.deepcopy(spec.defaults))  # each task's sizes


PRETRAINED_TASK = "digits-renditions"  # the task of a pretrained teacher when none is given
# a pretrained teacher's CPU recipe: the paper's shape (warm-up then cosine, gradient-norm clipping), one epoch of
# warm-up at the renditions tasks' 1000 images in batches of 64
PRETRAINED_CPU: dict[str, Any] = {"warmup": 16, "clip": 1.0}


def _names_pretrained(teacher: Any) -> bool:
    """Whether ``teacher`` (a value or a sweep's list) names pretrained teachers only."""
    from spuriouslab.nets.efficientnet import VARIANTS

    names = teacher if isinstance(teacher, list) else [teacher]
    return bool(names) and all(isinstance(n, str) and n in VARIANTS for n in names)


class DistillationConfig(ExperimentConfig):
    AXES: ClassVar[tuple[str, ...]] = ("activation", "remedy")
    DEFAULTS: ClassVar = (("preset", PRESETS), ("task", TASK_DEFAULTS))

    task: DistillTaskName = Field(
        "synthetic",
        description="the task (data registry DISTILL_TASKS): "
        + ", ".join(DISTILL_TASKS)
        + " (synthetic core/background, an image data set on backgrounds, or a folder)",
    )
    preset: Literal["cpu", "paper"] = Field("cpu", description="cpu (minutes) or paper (the paper's recipe, GPU)")
    activation: Annotated[list[ActivationName], Listed] = Field(
        ["relu"], description="student and baseline activation (MLP tasks; identity = the linear control)"
    )
    teacher_activation: ActivationName = Field("relu", description="built-in synthetic teacher's activation")
    teacher: str | None = Field(
        None,
        description="a pretrained ImageNet teacher (efficientnet-lite0, -lite1, -lite2: the pretrained extra), or "
        "the import string package.module:factory of a frozen teacher encoder (else the built-in teacher, trained "
        "here)",
    )
    teacher_checkpoint: FilePath = Field(None, description="state dict (torch.save) loaded into the teacher")
    student: str | None = Field(
        None, description="import string of the student encoder (default: the teacher's architecture, fresh init)"
    )
    data_root: str | None = Field(
        None,
        description="task=folder: root/{train,test}/<class>/*.png and "
        "root/ood/<name>/<class>/*.png; image tasks: data search root",
    )
    d: int = Field(256, ge=2, le=MAX_DIM, description="synthetic: input dimension")
    d_core: int = Field(32, ge=1, le=MAX_DIM, description="synthetic: core latent dimension")
    d_bg: int = Field(32, ge=1, le=MAX_DIM, description="synthetic: background latent dimension")
    n_classes: int = Field(10, ge=2, le=1000, description="synthetic: classes (directions in the core subspace)")
    noise: float = Field(1.5, ge=0, allow_inf_nan=False, description="synthetic: core noise around the prototypes")
    n: int = Field(1000, ge=2, le=MAX_SAMPLES, description="training samples (task)")
    n_test: int = Field(1000, ge=1, le=MAX_SAMPLES, description="ID test samples, and each OOD set (task)")
    canvas: int = Field(16, ge=8, le=512, description="image tasks: canvas size (the image sits at its centre)")
    encoder: EncoderName = Field(
        "cnn-encoder", description="image tasks: the built-in encoder (model registry, role encoder)"
    )
    width: int = Field(256, ge=1, le=MAX_WIDTH, description="MLP encoders: hidden width")
    embed: int = Field(32, ge=1, le=MAX_WIDTH, description="embedding (representation) size")
    epochs: int = Field(300, ge=1, le=10**7, description="student and baseline epochs (full batch: steps)")
    teacher_epochs: int = Field(1500, ge=1, le=10**7, description="built-in teacher epochs")
    batch_size: int = Field(0, ge=0, le=MAX_SAMPLES, description="minibatch size; 0 = full batch")
    lr: float = Field(1e-3, gt=0, allow_inf_nan=False, description="AdamW learning rate (preset)")
    weight_decay: float = Field(1e-3, ge=0, allow_inf_nan=False, description="AdamW weight decay (preset)")
    warmup: int = Field(0, ge=0, description="warm-up steps before the cosine decay; 0 with clip=0: constant lr")
    clip: float = Field(0.0, ge=0, allow_inf_nan=False, description="gradient-norm clip per seed (0 = off)")
    log_every: int = Field(150, ge=1, description="epochs between measurements (and checkpoints)")
    remedy: Annotated[list[RemedyName], Listed] = Field(
        ["none"],
        description="remedies for the student: "
        + ", ".join(m for m, r in REMEDIES.items() if not r.needs_groups)
        + " (project-oracle: synthetic only)",
    )
    pretrain_epochs: int | None = Field(
        None,
        ge=1,
        le=10**7,
        description="pretrain / lp-ft: student epochs distilling the teacher on wide backgrounds (default: epochs)",
    )
    pretrain_background: float = Field(
        1.0,
        gt=0,
        allow_inf_nan=False,
        description="pretrain / lp-ft, synthetic: pre-training backgrounds U[-b, b] (images: the teacher's)",
    )
    lp_epochs: int | None = Field(
        None, ge=1, le=10**7, description="lp-ft: epochs of the student's last layer alone (default: epochs // 4)"
    )
    and_mask_tau: AndMaskTau = 1.0
    probe: Literal["sklearn", "torch"] = Field(
        "sklearn", description="linear probe: scikit-learn logistic regression or a torch AdamW probe"
    )
    probe_epochs: int = Field(10, ge=1, le=10**5, description="torch probe epochs")
    probe_lr: float = Field(1e-3, gt=0, allow_inf_nan=False, description="torch probe learning rate")
    probe_wd_teacher: float = Field(0.1, ge=0, description="torch probe weight decay on teacher features")
    probe_wd_student: float = Field(1e-3, ge=0, description="torch probe weight decay on student / baseline features")
    streaming: bool = Field(
        False,
        description="task=folder with a given teacher: read images batch by batch with "
        "DataLoader workers (data larger than memory)",
    )
    workers: int = Field(2, ge=0, le=256, description="DataLoader worker processes (streaming=true)")
    amp: bool = Field(True, description="bfloat16 autocast on CUDA (ignored on CPU)")
    seeds: int = Field(5, ge=1, le=MAX_SEEDS, description="seeds (teacher, student and baseline per seed)")

    @model_validator(mode="before")
    @classmethod
    def _user_student(cls, values: Any) -> Any:
        """A user's encoder (``student``, or ``teacher`` whose architecture the student takes) has its own
        activation: the activation axis (the built-in MLP student's) is then one placeholder value, not a grid
        of identical models."""
        if isinstance(values, dict) and (values.get("teacher") or values.get("student")):
            values = {**values}
            values.setdefault("activation", ["relu"])
            if _names_pretrained(values.get("teacher")):
                # an ImageNet teacher takes images: the data every machine has; on a CPU the paper's recipe shape
                values.setdefault("task", PRETRAINED_TASK)
                if values.get("preset", "cpu") == "cpu":
                    for key, value in PRETRAINED_CPU.items():
                        values.setdefault(key, value)
        return values

    @model_validator(mode="after")
    def _combination(self) -> DistillationConfig:
        self._pretrained()
        if (self.teacher or self.student) and len(self.activation) > 1:
            raise ValueError(
                f"activation: got {self.activation}; the student is your encoder "
                f"({self.student or self.teacher}), whose activation is its own: one value only"
            )
        if self.task == "synthetic" and self.d_core + self.d_bg > self.d:
            raise ValueError(f"d_core + d_bg: got {self.d_core} + {self.d_bg} > d={self.d}")
        if self.task != "synthetic" and self.student is None and self.activation != ["relu"]:
            raise ValueError(
                f"activation: got {self.activation}; the built-in image encoders are ReLU CNNs (the "
                "activation axis is for MLP students on task=synthetic)"
            )
        if self.task == "synthetic" and self.encoder != "cnn-encoder":
            raise ValueError(f"encoder: got {self.encoder!r}; task=synthetic trains MLP encoders (image tasks choose)")
        if DISTILL_TASKS[self.task].needs_root and not self.data_root:
            raise ValueError("data_root: task=folder needs data_root=DIR (DIR/train, DIR/test, DIR/ood/<name>)")
        if self.streaming and (self.task != "folder" or not self.teacher):
            raise ValueError("streaming: reads task=folder data for a given teacher (teacher=package.module:factory)")
        if self.streaming and self.remedy != ["none"]:
            raise ValueError(f"remedy: got {self.remedy}; a streamed folder trains without remedies (none)")
        refuse_group_remedies(self, "distillation")
        refuse_unused_remedy_settings(
            self,
            {
                "pretrain_epochs": "pretrain",
                "pretrain_background": "pretrain",
                "lp_epochs": "lp",
                "and_mask_tau": "and-mask",
            },
        )
        if self.task != "synthetic":
            refuse_unused(
                self, ["pretrain_background"], "image tasks pre-train on the teacher's own backgrounds (task=synthetic)"
            )
        oracle = [m for m in self.remedy if REMEDIES[m].oracle]
        if oracle and (self.task != "synthetic" or self.student or self.teacher):
            raise ValueError(
                f"remedy: {oracle[0]} needs the known core subspace: task=synthetic with the built-in student"
            )
        if self.teacher_checkpoint and not self.teacher:
            raise ValueError("teacher_checkpoint: give it with teacher=package.module:factory")
        return self

    def _pretrained(self) -> None:
        """``teacher=efficientnet-liteN``: a name of the pretrained teachers (a near miss is refused with the
        allowed names), no checkpoint of the user's, no remedy (their phases distil a teacher of the task's own
        backgrounds), an image task."""
        from spuriouslab.nets.efficientnet import VARIANTS

        name = self.teacher
        if name is None or ":" in name:
            return
        if name not in VARIANTS:
            raise ValueError(
                f"teacher: got {name!r}; write package.module:factory or a pretrained teacher ({', '.join(VARIANTS)})"
            )
        if self.teacher_checkpoint:
            raise ValueError(f"teacher_checkpoint: teacher={name} brings its ImageNet weights; give no checkpoint")
        if self.remedy != ["none"]:
            raise ValueError(f"remedy: got {self.remedy}; teacher={name} runs without remedies (none)")
        if self.task == "synthetic":
            raise ValueError(f"task: got synthetic; teacher={name} takes images (e.g. task=digits-renditions)")

    def probe_kwargs(self, model: str, seed: int) -> dict[str, Any]:
        """How the probe on ``model``'s features (teacher, student, baseline) of ``seed`` is fitted."""
        from spuriouslab.seeding import stream_id, torch_seed

        wd = self.probe_wd_teacher if model == "teacher" else self.probe_wd_student
        return {
            "kind": self.probe,
            "seed": torch_seed(seed, stream_id("distillation.probe")) % 2**31,
            "epochs": self.probe_epochs,
            "lr": self.probe_lr,
            "weight_decay": wd,
        }

    def phase_epochs(self, remedy: str) -> dict[str, int]:
        """The student's training phases under ``remedy`` and their epochs: pre-training, probing, the task."""
        return REMEDIES[remedy].phases(self.epochs, self.pretrain_epochs, self.lp_epochs)

    def mlp(self) -> bool:
        """Whether the built-in encoders are MLPs (vector inputs: synthetic) or CNNs (images)."""
        return DISTILL_TASKS[self.task].mlp
