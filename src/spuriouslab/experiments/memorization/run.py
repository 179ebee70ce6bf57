"""Memorization run: data (:func:`spuriouslab.data.build_split`) -> Gram matrices and one factorisation per point
(:mod:`spuriouslab.kernels`) -> records with the theory's predictions beside them (:mod:`spuriouslab.theory`)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from spuriouslab.data.images import image_shape
from spuriouslab.data.memorization import build_split
from spuriouslab.experiments.base import Estimate, RunContext
from spuriouslab.experiments.memorization.config import MemorizationConfig
from spuriouslab.kernels.matrices import BLOCK, DEFAULT_WIDTH, KernelSpec, grams
from spuriouslab.kernels.solve import fit_kernel
from spuriouslab.seeding import stream_id
from spuriouslab.theory.alignment import predict_alignment


def points(cfg: MemorizationConfig) -> list[dict[str, Any]]:
    """The grid.  For images, alpha is the data set's nominal alpha (border pixels / all pixels)."""
    out = []
    alphas = cfg.alpha if cfg.data == "synthetic" else [round(cfg.split_spec().nominal_alpha(), 6)]
    for model in cfg.model:
        widths = cfg.width if cfg.width is not None else [DEFAULT_WIDTH[model]]
        for act in cfg.activation:
            for alpha in alphas:
                for w in widths:
                    for c in cfg.correlation:
                        for ridge in cfg.ridge:
                            for n in cfg.n_train:
                                for s in cfg.seed_values():
                                    out.append(
                                        {
                                            "n_train": n,
                                            "model": model,
                                            "activation": act,
                                            "alpha": alpha,
                                            "width": w,
                                            "ridge": ridge,
                                            "correlation": c,
                                            "seed": s,
                                        }
                                    )
    return out


def resolve(cfg: MemorizationConfig) -> dict[str, str]:
    from spuriouslab.data.images import identity

    return {} if cfg.data == "synthetic" else identity(cfg.data, cfg.data_root)


def check(cfg: MemorizationConfig) -> None:
    """Images: load (once) and validate classes and sizes against the data before anything is written."""
    if cfg.data != "synthetic":
        build_split(cfg.split_spec(), cfg.seed, max(cfg.n_train))


def estimate(cfg: MemorizationConfig) -> Estimate:
    """The largest group: every activation at the largest N (features share one pass), for the widest model."""
    n = max(cfg.n_train)
    if cfg.data == "synthetic":
        d, nt = cfg.d, cfg.n_test
    else:
        h, w, c = image_shape(cfg.data, cfg.data_root)
        b = cfg.split_spec().border_width
        d, nt = (h + 2 * b) * (w + 2 * b) * c, cfg.n_test
    rows = 2 * n + nt + (nt if cfg.spurious_corr else 0)
    acts = len(cfg.activation)
    best: Estimate | None = None
    for model in cfg.model:
        for width in cfg.width if cfg.width is not None else [DEFAULT_WIDTH[model]]:
            grams_ = (acts + (model == "ntk")) * rows * n * 8
            data = (2 * n + 2 * nt) * d * 8 * (2 if cfg.data != "synthetic" else 1) + rows * d * 12
            solve = 6 * n * n * 8
            if math.isinf(width):
                work = 6 * rows * n * 8 + rows * d * 8
                flops = 2.0 * rows * n * d + 60.0 * rows * n * acts
            else:
                chunk = min(256 * 2**20, rows * 2 * BLOCK * 4) + d * 2 * BLOCK * 4 + rows * n * 4
                work = chunk * (1 + (acts > 1))
                flops = 2.0 * rows * d * width + 2.0 * acts * rows * n * width
            est = Estimate(
                grams_ + data + solve + work,
                flops + 10.0 * n**3 * acts * len(cfg.ridge),
                f"{model}, width {width}, N={n}, {acts} activation(s)",
            )
            if best is None or est.peak_bytes > best.peak_bytes:
                best = Estimate(est.peak_bytes, max(est.flops, best.flops if best else 0.0), est.group)
            else:
                best.flops = max(best.flops, est.flops)
    assert best is not None, "the model axis is never empty (the config refuses an empty list)"
    return best


def group_key(cfg: MemorizationConfig, p: dict[str, Any]) -> Any:
    """Points computed together: every activation and ridge (one draw of V, one pre-activation pass) and,
    with ``nested``, every N (one Gram at the largest N, sliced)."""
    key = (p["seed"], p["model"], p["alpha"], p["width"], p["correlation"])
    return key if cfg.nested else (*key, p["n_train"])


def run_group(cfg: MemorizationConfig, points: list[dict], ctx: RunContext) -> Iterator[dict]:
    t0 = time.perf_counter()
    p0 = points[0]
    n_max = max(p["n_train"] for p in points)
    data = build_split(cfg.split_spec(p0["alpha"], p0["correlation"]), p0["seed"], n_max)
    acts = list(dict.fromkeys(p["activation"] for p in points))
    key = (p0["seed"], stream_id(f"features.{p0['model']}"), 0 if cfg.nested else n_max)
    specs = [
        KernelSpec.make(
            p0["model"], a, p0["width"], key=key, device=ctx.device, dtype=cfg.feature_dtype, progress=ctx.progress
        )
        for a in acts
    ]
    spurious_corr = cfg.spurious_corr or data.tests is not None  # the coloured task always measures C
    blocks = [data.Z_test, data.Z_query]
    if spurious_corr:
        assert data.Z_test_query is not None, "split_spec builds the test queries (test_queries=True)"
        blocks.append(data.Z_test_query)
    tests = data.tests or {}
    others = [name for name in tests if name != "id"]  # the coloured task's other test sets
    blocks += [tests[name][0] for name in others]
    computed = grams(specs, torch.from_numpy(data.Z), torch.from_numpy(np.vstack(blocks)))
    Ks = {a: K.cpu() for a, K in zip(acts, computed, strict=True)}
    gram_seconds = time.perf_counter() - t0
    nt = len(data.g_test)
    test_rows = slice(n_max, n_max + nt)
    query_start = n_max + nt
    g_all = torch.from_numpy(data.g)
    g_test = torch.from_numpy(data.g_test)
    # linear ridge, and RF as linear ridge at its equivalent lambda~: per (N, activation), every ridge at once
    theory: dict[tuple[int, str], dict[float, dict[str, float]]] = {}
    with_theory = data.covariance is not None and (p0["model"] == "linear" or (p0["model"] == "rf" and spurious_corr))
    for p in sorted(points, key=lambda q: (acts.index(q["activation"]), q["n_train"], q["ridge"])):
        t1 = time.perf_counter()
        K = Ks[p["activation"]]
        n = p["n_train"]
        g = g_all[:n]
        fit = fit_kernel(K[:n, :n], g, p["ridge"], eps=specs[acts.index(p["activation"])].precision)
        f_train = fit.predict(K[:n, :n])
        f_test = fit.predict(K[test_rows, :n])
        K_query = K[query_start : query_start + n, :n]
        f_query = fit.predict(K_query)
        S = fit.stability()
        F = fit.alignment(K_query)
        rec = dict(p)
        rec.update(
            d=data.d_x + data.d_y,
            d_x=data.d_x,
            d_y=data.d_y,
            n_test=nt,
            nested=cfg.nested,
            data=cfg.data,
            train_acc=_acc(f_train, g),
            test_acc=_acc(f_test, g_test),
            spurious_acc=_acc(f_query, g),
            test_mse=float(((f_test - g_test) ** 2).mean()),
            memorization_cov=_cov(f_query, g),
            alignment_mean=float(F.mean()),
            stability_mean=float(S.mean()),
            stability_g_mean=float((S * g).mean()),
            alignment_stability_mean=float((F * S * g).mean()),
            residual_max=fit.residual_max,
            solver=fit.solver,
            cond=fit.cond,
            rank=fit.rank,
        )
        if spurious_corr:
            tq = slice(query_start + n_max, query_start + n_max + nt)
            rec["spurious_corr"] = _cov(fit.predict(K[tq, :n]), g_test)
        if data.tests is not None:
            start = query_start + n_max + nt
            outputs = {"id": f_test}
            for name in others:
                outputs[name] = fit.predict(K[start : start + nt, :n])
                start += nt
            rec.update(rho=cfg.rho, **coloured_metrics(outputs, data.tests))
        if with_theory:  # linear ridge with a covariance (RF: at lambda~, from the activation's Hermite coefficients)
            at = (n, p["activation"])
            if at not in theory:
                ridges = sorted({q["ridge"] for q in points})
                theory[at] = linear_ridge_predictions(data, n, ridges, None if p["model"] == "linear" else at[1])
            rec.update(theory[at][p["ridge"]])
        if cfg.data == "synthetic" and p["model"] != "linear":  # the theory is for isotropic Gaussian data
            pred = predict_alignment(p["activation"], p["model"], data.alpha, n, cfg.d)
            rec.update(gamma_pred=pred.gamma_pred, gamma_many=pred.gamma_many, gamma_few=pred.gamma_few)
        else:
            rec.update(gamma_pred=math.nan, gamma_many=math.nan, gamma_few=math.nan)
        rec["seconds"] = gram_seconds / len(points) + time.perf_counter() - t1
        yield rec


def linear_ridge_predictions(
    data: Any, n: int, ridges: list[float], activation: str | None = None
) -> dict[float, dict[str, float]]:
    """The deterministic equivalent of linear ridge (:mod:`spuriouslab.theory.ridge`) at ``n`` samples for each
    of ``ridges``: the spurious correlation ``spurious_corr_pred``, the test loss ``test_mse_pred`` and the
    effective regularisation ``kappa``, from one eigendecomposition of ``Sigma``.  The kernel's ``K + ridge I``
    with ``K = Z Z'/d`` is ridge ``lam = ridge d / n`` in the theory's normalisation; the label ``sign(u'x)``
    has ``theta* = [sqrt(2/pi) u/|u|, 0]`` and noise ``1 - 2/pi``.

    With an ``activation`` (random features), each ridge is first mapped to the linear ridge it amounts to,
    ``lambda~`` (:func:`spuriouslab.theory.ridge.linear_equivalent`), recorded as ``ridge_equiv``; an activation
    without a linear part (``mu_1 = 0``) learns no linear predictor: ``C = 0`` and ``L = E[g^2] = 1``."""
    from spuriouslab.theory.ridge import linear_equivalent, predict

    d = data.d_x + data.d_y
    u = np.asarray(data.teacher, dtype=np.float64)
    theta = np.concatenate([math.sqrt(2 / math.pi) * u / np.linalg.norm(u), np.zeros(data.d_y)])
    equiv = {r: r if activation is None else linear_equivalent(activation).ridge(r) for r in ridges}
    finite = [r for r in ridges if math.isfinite(equiv[r])]
    preds = predict(data.covariance, theta, data.d_x, 1 - 2 / math.pi, n, [equiv[r] * d / n for r in finite])
    out = {r: {"spurious_corr_pred": 0.0, "test_mse_pred": 1.0, "kappa": math.nan} for r in ridges}
    out.update(
        {
            r: {"spurious_corr_pred": p.C, "test_mse_pred": p.L, "kappa": p.kappa}
            for r, p in zip(finite, preds, strict=True)
        }
    )
    if activation is not None:
        for r in ridges:
            out[r]["ridge_equiv"] = equiv[r]
    return out


def coloured_metrics(outputs: dict[str, torch.Tensor], tests: dict[str, tuple]) -> dict[str, float]:
    """The coloured task's numbers from the outputs on each test set (labels -1 / +1): accuracy and MSE on
    ``id``, ``indep`` and ``reversed``; the group accuracies on ``indep`` (all four groups; ``acc_indep`` is the
    mean over samples, ``group_balanced_acc`` over groups, ``worst_group_acc`` the lowest); and the colour
    reliance ``colour_flip``: the fraction of test images whose predicted label changes when only their colour
    is reversed (same cores in ``id`` and ``reversed``)."""
    from spuriouslab.data.coloured import group_metrics

    out: dict[str, float] = {}
    for name, f in outputs.items():
        g = torch.from_numpy(tests[name][1])
        out[f"acc_{name}"] = _acc(f, g)
        out[f"mse_{name}"] = float(((f - g) ** 2).mean())
    _, g, c = tests["indep"]
    groups = group_metrics((outputs["indep"].numpy() * g > 0), (g > 0).astype(int), c)
    out.update({k: v for k, v in groups.items() if k != "acc"})
    out["colour_flip"] = float(((outputs["id"] > 0) != (outputs["reversed"] > 0)).double().mean())
    return out


def _acc(f: torch.Tensor, g: torch.Tensor) -> float:
    return float((f * g > 0).double().mean())


def _cov(f: torch.Tensor, g: torch.Tensor) -> float:
    return float((f * g).mean() - f.mean() * g.mean())
