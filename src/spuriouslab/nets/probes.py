"""Linear probes on frozen features: multinomial logistic regression, fitted on ID training features.

``sklearn`` (the default where the features fit in memory): scikit-learn's ``LogisticRegression`` (L-BFGS) on
standardised features.  ``torch``: a linear layer trained with AdamW and cross-entropy (the full-scale path;
the paper's probe: AdamW lr 1e-3, 10 epochs, warm-up then cosine).
"""

from __future__ import annotations

import numpy as np
import torch


def fit_probe(
    features: np.ndarray,
    labels: np.ndarray,
    kind: str = "sklearn",
    seed: int = 0,
    epochs: int = 10,
    lr: float = 1e-3,
    weight_decay: float = 1e-3,
    batch_size: int = 256,
    c: float = 1.0,
):
    """A fitted probe: ``predict(features) -> labels``."""
    if kind == "sklearn":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000)).fit(features, labels)
    if kind == "torch":
        return TorchProbe(epochs, lr, weight_decay, batch_size, seed).fit(features, labels)
    raise ValueError(f"probe must be sklearn or torch, got {kind!r}")


def probe_accuracies(train: tuple, tests: dict[str, tuple], **kwargs) -> dict[str, float]:
    """Fit a probe (:func:`fit_probe` with ``kwargs``) on ``train = (features, labels)`` and return its accuracy
    on every named ``(features, labels)`` test set.  Tensors or arrays."""
    as_np = lambda a: a.cpu().numpy() if hasattr(a, "cpu") else np.asarray(a)  # noqa: E731
    probe = fit_probe(as_np(train[0]), as_np(train[1]), **kwargs)
    return {name: float((probe.predict(as_np(f)) == as_np(y)).mean()) for name, (f, y) in tests.items()}


class TorchProbe:
    """A linear layer on standardised features, trained with AdamW (warm-up then cosine), cross-entropy."""

    def __init__(self, epochs=10, lr=1e-3, weight_decay=1e-3, batch_size=256, seed=0):
        self.epochs, self.lr, self.weight_decay, self.batch_size, self.seed = epochs, lr, weight_decay, batch_size, seed

    def fit(self, X, y):
        from spuriouslab.nets.train import warmup_cosine

        X = torch.as_tensor(np.asarray(X), dtype=torch.float32)
        y = torch.as_tensor(np.asarray(y), dtype=torch.int64)
        self.mean_, self.std_ = X.mean(0), X.std(0).clamp(min=1e-6)
        X = (X - self.mean_) / self.std_
        gen = torch.Generator().manual_seed(self.seed)
        self.classes_ = torch.unique(y)
        self.layer_ = torch.nn.Linear(X.shape[1], int(y.max()) + 1)
        opt = torch.optim.AdamW(self.layer_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        steps = self.epochs * max(1, -(-len(X) // self.batch_size))
        sched = warmup_cosine(opt, max(1, steps // 20), steps)
        for _ in range(self.epochs):
            perm = torch.randperm(len(X), generator=gen)
            for i in range(0, len(X), self.batch_size):
                idx = perm[i : i + self.batch_size]
                opt.zero_grad()
                torch.nn.functional.cross_entropy(self.layer_(X[idx]), y[idx]).backward()
                opt.step()
                sched.step()
        return self

    @torch.no_grad()
    def predict(self, X):
        X = (torch.as_tensor(np.asarray(X), dtype=torch.float32) - self.mean_) / self.std_
        return self.layer_(X).argmax(1).numpy()
