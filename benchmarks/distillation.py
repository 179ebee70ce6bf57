"""Benchmark: `spuriouslab run distillation` (synthetic task, 5 seeds stacked) - seconds per seed and where the time
goes (teacher, student, baseline, probes), against the same run with one seed per group (no stacking).

    python benchmarks/distillation.py [--epochs 3000] [--seeds 5]

Prints one table and the stacking speed-up ratio.
"""

from __future__ import annotations

import argparse
import time


def run(epochs: int, seeds: int, stacked: bool) -> dict:
    from spuriouslab.experiments import get_experiment, run_points

    exp = get_experiment("distillation")
    cfg = exp.make_config(
        dict(
            epochs=epochs, teacher_epochs=epochs // 2, log_every=max(1, epochs // 20), seeds=seeds, activation=["relu"]
        )
    )
    points = exp.points(cfg)
    t = time.perf_counter()
    recs = run_points(exp, cfg) if stacked else [r for p in points for r in run_points(exp, cfg, points=[p])]
    total = time.perf_counter() - t
    parts = {k: sum(r[f"seconds_{k}"] for r in recs) / len(recs) for k in ("teacher", "student", "baseline", "probes")}
    return {"total": total, "per_seed": total / seeds, **parts}


def main() -> None:
    from spuriouslab.runtime import tune_allocator

    tune_allocator()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=3000)
    ap.add_argument("--seeds", type=int, default=5)
    args = ap.parse_args()
    rows = {"stacked": run(args.epochs, args.seeds, True), "one seed at a time": run(args.epochs, args.seeds, False)}
    print(f"distillation, synthetic, relu student, {args.seeds} seeds, {args.epochs} epochs (full batch)")
    print("| mode | total s | s per seed | teacher | student | baseline | probes |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(
            f"| {name} | {r['total']:.1f} | {r['per_seed']:.2f} | {r['teacher']:.2f} | {r['student']:.2f} | "
            f"{r['baseline']:.2f} | {r['probes']:.2f} |"
        )
    print(f"stacking speed-up: {rows['one seed at a time']['total'] / rows['stacked']['total']:.2f}x")


if __name__ == "__main__":
    main()
