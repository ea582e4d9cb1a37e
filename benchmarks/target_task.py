"""A candidate target task for a real-weights world, scored by the fair test's gates.

    python benchmarks/target_task.py --digits 3 8 --n-train 120 --seeds 3
    python benchmarks/target_task.py --digits 3 8 --n-train 120 --seeds 3 --zoom --epochs 8
    python benchmarks/target_task.py --lfw --precise-bn --seeds 3

The ``lite0`` world at profile ``smoke`` (EfficientNet-Lite0, its source photos as D^c), with its target
task replaced by two of scikit-learn's bundled handwritten digits (8x8 grey, resized to the world's
size, as RGB): a task symmetric in the source object, as cats vs dogs is for an espresso cup (a photo
is evidence for neither digit). ``--zoom`` gives the fine-tuning recipe (and so the paper's M^b, its
copy from random weights) the ``shapes`` world's zoom-out augmentation, so that both arms see small
targets on a background (``--zoom-range``, ``--zoom-prob``: its scales and probability); ``--epochs``
sets both arms' epochs; ``--precise-bn`` recomputes both arms' BatchNorm statistics after the last step;
``--bn-freeze`` keeps M^s's BatchNorm statistics in M^t (not with ``--precise-bn``);
``--lfw`` keeps ``lite0``'s own target task (LFW faces vs non-faces) instead of the digits. Prints each
arm's learning-rate search, the gate table of ``fair_test`` (``seeds`` seeds, no stability reruns) and
its verdicts, and the wall time. Runs in the model cache of ``LINGERLAB_CACHE``; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import lingerlab as ll  # noqa: E402
from lingerlab import cache as _cache  # noqa: E402
from lingerlab.arm_roles import recipe_table  # noqa: E402
from lingerlab.audit import Audit  # noqa: E402
from lingerlab.fair_test import fair_test  # noqa: E402
from lingerlab.worlds.shapes_augment import ZoomOut  # noqa: E402


def digits(a: int, b: int, size: int, n_train: int, n_val: int, seed: int = 7) -> tuple[TensorDataset, TensorDataset]:
    """Digits ``a`` (label 0) and ``b`` (label 1) as RGB ``size`` px; balanced seeded train/val split."""
    from sklearn.datasets import load_digits

    d = load_digits()
    keep = np.isin(d.target, [a, b])
    x = torch.from_numpy(d.images[keep].astype(np.float32) / 16)
    y = torch.from_numpy((d.target[keep] == b).astype(np.int64))
    x = F.interpolate(x[:, None], size=(size, size), mode="bilinear", align_corners=False)
    x = x.clamp(0, 1).expand(-1, 3, -1, -1).contiguous()
    g = torch.Generator().manual_seed(seed)
    tr, va = [], []
    for c in (0, 1):
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        tr.append(idx[: n_train // 2])
        va.append(idx[n_train // 2 : n_train // 2 + n_val // 2])
    tr_i, va_i = torch.cat(tr).sort().values, torch.cat(va).sort().values
    return TensorDataset(x[tr_i], y[tr_i]), TensorDataset(x[va_i], y[va_i])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--digits", type=int, nargs=2, default=(3, 8), metavar=("A", "B"))
    ap.add_argument("--n-train", type=int, default=120)
    ap.add_argument("--n-val", type=int, default=120)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--zoom", action="store_true", help="zoom-out augmentation for the fine-tuning recipe")
    ap.add_argument("--zoom-range", type=float, nargs=2, default=(0.35, 0.8), metavar=("LO", "HI"))
    ap.add_argument("--zoom-prob", type=float, default=0.5)
    ap.add_argument("--epochs", type=int, default=None, help="epochs of both arms (default: the profile's)")
    bn = ap.add_mutually_exclusive_group()
    bn.add_argument("--precise-bn", action="store_true", help="precise BatchNorm statistics for both arms")
    bn.add_argument("--bn-freeze", action="store_true", help="M^t keeps M^s's BatchNorm statistics")
    ap.add_argument("--lfw", action="store_true", help="lite0's own target task instead of the digits")
    args = ap.parse_args()
    t0 = time.perf_counter()
    w = ll.load_world("lite0", "smoke", progress=False)
    a, b = args.digits
    mt = w.spec.recipes["M^t"]
    if args.zoom:
        zoom = ZoomOut(*args.zoom_range, args.zoom_prob)
        mt = mt.replace(augment=zoom, description="fine-tuning with zoom-out")
    if args.epochs is not None:
        mt = mt.replace(epochs=args.epochs)
    if args.bn_freeze:  # M^b (same data), from random weights, still updates its statistics
        mt = mt.replace(bn="freeze")
    if args.precise_bn:  # M^b (same data) is M^t's recipe from random weights, so both arms
        mt = mt.replace(precise_bn=True)
    spec = dataclasses.replace(w.spec, recipes={**w.spec.recipes, "M^t": mt})
    # a fingerprint of its own (the stage caches of the book's lite0 stay untouched)
    fp = _cache.fingerprint("target_task", sorted(vars(args).items()), w.fingerprint)
    world = dataclasses.replace(w, spec=spec, fingerprint=fp)
    if not args.lfw:
        train, val = digits(a, b, w.profile.image_size, args.n_train, args.n_val)
        world = dataclasses.replace(world, target_train=train, target_val=val, target_classes=[str(a), str(b)])
    train, val = world.target_train, world.target_val
    task = "LFW faces vs non-faces" if args.lfw else f"digits {a} vs {b}"
    audit = Audit(world, device="cpu")
    print(f"{task}: {len(train)} training, {len(val)} validation images; zoom-out {args.zoom}")
    ft = fair_test(audit, seeds=tuple(range(args.seeds)), stability=False)
    with_pd = dict(line_width=200)
    print(audit.zoo.searches().to_string(**with_pd))
    recipes = recipe_table(audit, audit.world.spec.comparison, (0,))
    print(recipes[["arm", *(c for c in recipes.columns if c.startswith("converged"))]].to_string(**with_pd))
    print(ft.gates.table.to_string(**with_pd))
    print(ft.verdicts().iloc[:, :4].to_string(**with_pd))
    print(f"wall {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
