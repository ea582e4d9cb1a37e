"""An audit of a world: the paper's method (Eqs. 1-5) as one object whose stages are cached on disk.

    audit = Audit(load_world("shapes", "smoke"))
    v  = audit.counts()              # Eq. 1: v(c) over M^t's training images
    F  = audit.source_only()         # Eq. 2: {c : v(c) <= v_lo}
    Lt = audit.lingering()           # Eq. 3: mean p_c(M^st(x)) over D^c, per class of F
    I  = audit.composites()          # I(c): a target image at audit.scale (paper: 40%) on each x in D^c
    d  = audit.distraction_table()   # Eq. 4 for M^t and M^b, with its shuffled-pair null

Every stage result is stored with ``cache.cached`` under a key that hashes exactly what the stage
depends on: the world's fingerprint (source weights, data), the stage's own parameters and the
*weights* of the models it reads (so a retrained model invalidates what was computed from it, and
nothing else). Changing ``p_lo`` or ``v_lo`` re-thresholds cached numbers without touching a
model; changing ``k`` recomputes Eq. 1 only; a second call (or a second ``Audit`` of the same world)
reads everything back. Entries are written atomically; an unreadable entry is recomputed.
Models are trained (and cached) by ``training.finetune`` / ``training.train_scratch``.

``audit.computed`` counts the stage computations this object actually ran (cache misses), which
tests and notebooks can show to prove a warm cache.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset, TensorDataset

from . import cache as _cache
from . import training as _training
from ._data import ImageData, batches, labels_of
from ._validation import check_choice, check_int_range, check_range
from .attribution import gradcam
from .composites import Composites, make_composites
from .distraction import distraction, distraction_null
from .features import default_k, precision_recall, source_class_counts, source_only
from .lingering import lingering as _lingering_table
from .models import source_target_model
from .report import resolve_device

__all__ = ["Audit", "BUILTIN_ARMS", "ModelFactory"]

ModelFactory = Callable[[int], nn.Module]

#: Model names an Audit resolves by itself (``Audit.model(name, seed)``); remedies add more with
#: ``Audit.add_arm``. "M^b" is short for the competent baseline.
BUILTIN_ARMS = ("M^s", "M^t", "M^b", "M^b (competent)", "M^b (same data)", "M^b (matched acc)")


def _index_list(idx: Any) -> list[int]:
    if isinstance(idx, Tensor):
        return [int(i) for i in idx.flatten().tolist()]
    return [int(i) for i in idx]


def _key_of(obj: Any) -> Any:
    """A hashable, stable description of keyword overrides (callables by identity, see training.callable_key)."""
    if isinstance(obj, dict):
        return {str(k): _key_of(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_key_of(v) for v in obj]
    if isinstance(obj, Tensor):
        return _cache.fingerprint(obj)
    if isinstance(obj, nn.Module):
        return ("module", _cache.fingerprint(obj))
    if callable(obj):
        return repr(_training.callable_key(obj))
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return repr(obj)


def _gather(data: Dataset, idx: Sequence[int]) -> tuple[Tensor, Tensor]:
    """Images and labels of ``data`` at ``idx`` as tensors (fast path for TensorDataset)."""
    if isinstance(data, TensorDataset):
        t = torch.as_tensor(list(idx), dtype=torch.long)
        return data.tensors[0][t], data.tensors[1][t]
    xs, ys = [], []
    for x, y in batches(Subset(data, list(idx)), batch_size=256):
        xs.append(x)
        ys.append(y)
    if not xs:
        raise ValueError("no images selected")
    return torch.cat(xs), torch.cat(ys)  # type: ignore[arg-type]


class Audit:
    """The method section of the paper, run on one ``World``; every stage cached on disk.

    Args:
        world: a ``worlds.base.World`` (e.g. ``load_world("shapes", "smoke")``).
        k: Eq. 1's top-k; None = ``features.default_k(#source classes)`` (top-5 per 1000 classes).
        v_lo: Eq. 2's threshold; None = ``world.extra["v_lo"]``, else the profile's ``v_lo``, else
            ``round(0.01 * |D^t|)`` (a class in the top-k of at most 1% of M^t's training images).
        p_lo: Eq. 3/5 threshold on a mean softmax probability, in (0, 1); None =
            ``lingering.default_p_lo(#source classes)``: ten times chance, the paper's 0.01 for 1000 classes.
        scale: overlay scale of the composites along each side; None = ``world.extra["composite_scale"]``,
            else the paper's 0.4 (``shapes`` uses 0.6: at 32 px a 40% patch leaves its glyph ~8 px tall,
            and M^t is then at chance even on an object-free background).
        q: Eq. 4's quantile (paper: 0.8, the top 20% of background pixels).
        n_composites_per_class: |I(c)|: the first n images of each D^c (None: the world's
            ``extra["n_composites_per_class"]``, the profile's field of that name, else all of D^c).
        n_null: shuffled pairs per composite for the null of Eq. 4.
        match_tol: accuracy gap allowed for the accuracy-matched baseline (``data="matched"``).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...; models and stages run there.
        cache: read and write stage results on disk (``cache.cache_dir()``); False recomputes
            (in-memory memoisation within this object still applies).
        progress: show training progress bars (stderr).
    """

    def __init__(self, world: Any, *, k: int | None = None, v_lo: float | None = None, p_lo: float | None = None,
                 scale: float | None = None, q: float = 0.8, n_composites_per_class: int | None = None,
                 n_null: int = 20, match_tol: float = 0.02, device: str | torch.device = "auto",
                 cache: bool = True, progress: bool = False) -> None:
        for attr in ("source_model", "source_data", "target_train", "target_val", "target_classes",
                     "source_classes", "make_scratch", "fingerprint"):
            if not hasattr(world, attr):
                raise ValueError(f"world must be a lingerlab World (missing attribute {attr!r}); "
                                 f"got {type(world).__name__}")
        self.world = world
        n_src = len(world.source_classes)
        if k is not None:
            check_int_range("k", k, 1, n_src)
        self.k: int = default_k(n_src) if k is None else k
        if p_lo is None:
            from .lingering import default_p_lo
            p_lo = default_p_lo(n_src)
        self.p_lo: float = check_range("p_lo", p_lo, 0, 1, lo_open=True, hi_open=True)
        if scale is None:
            extra = getattr(world, "extra", None) or {}
            scale = extra.get("composite_scale", 0.4) if isinstance(extra, dict) else 0.4
        self.scale: float = check_range("scale", scale, 0, 1, lo_open=True)
        self.q: float = check_range("q", q, 0, 1, lo_open=True, hi_open=True)
        self.n_null: int = check_int_range("n_null", n_null, 1)
        self.match_tol: float = check_range("match_tol", match_tol, 0, 1, lo_open=True)
        if not isinstance(cache, bool):
            raise ValueError(f"cache must be True or False; got {cache!r}")
        self.cache = cache
        self.progress = bool(progress)
        self.device = resolve_device(device)
        self.computed: Counter[str] = Counter()
        self._memo: dict[tuple[str, str], Any] = {}
        self._models: dict[str, tuple[nn.Module, pd.DataFrame | None]] = {}
        self._fps: dict[int, tuple[nn.Module, str]] = {}
        self._arms: dict[str, ModelFactory] = {}
        self._source_labels: Tensor | None = None
        if v_lo is None:
            v_lo = world.extra.get("v_lo") if isinstance(getattr(world, "extra", None), dict) else None
        if v_lo is None:
            v_lo = getattr(world.profile, "v_lo", None)
        if v_lo is None:
            v_lo = float(round(0.01 * len(self.target_train_indices())))
        self.v_lo: float = check_range("v_lo", v_lo, 0)
        if n_composites_per_class is None:
            extra = getattr(world, "extra", None) or {}
            n_composites_per_class = extra.get("n_composites_per_class",
                                               getattr(world.profile, "n_composites_per_class", None))
        if n_composites_per_class is not None:
            check_int_range("n_composites_per_class", n_composites_per_class, 1)
        self.n_composites_per_class: int | None = n_composites_per_class

    def __repr__(self) -> str:
        return (f"Audit(world={self.world.name!r}, k={self.k}, v_lo={self.v_lo:g}, p_lo={self.p_lo:g}, "
                f"scale={self.scale:g}, q={self.q:g}, n_composites_per_class={self.n_composites_per_class}, "
                f"device={str(self.device)!r})")

    # ------------------------------------------------------------------ caching machinery
    def _stage(self, stage: str, parts: Any, compute: Callable[[], Any]) -> Any:
        """Cached result of ``stage`` for ``parts`` (hashed with the world's fingerprint and the memory
        layout models predict in, which changes the rounding)."""
        key = _cache.fingerprint(stage, self.world.fingerprint, parts, _training._LAYOUT, length=24)
        memo_key = (stage, key)
        if memo_key in self._memo:
            return self._memo[memo_key]

        def counted() -> Any:
            self.computed[stage] += 1
            return compute()

        result = _cache.cached(stage, key, counted, enabled=self.cache)
        self._memo[memo_key] = result
        return result

    def model_fingerprint(self, model: nn.Module) -> str:
        """Hash of ``model``'s weights (memoised per object): the key part of stages that read it."""
        hit = self._fps.get(id(model))
        if hit is not None and hit[0] is model:
            return hit[1]
        fp = _cache.fingerprint(type(model).__qualname__, model)
        self._fps[id(model)] = (model, fp)
        return fp

    # ------------------------------------------------------------------ data
    def target_train_indices(self) -> list[int]:
        """Indices of ``world.target_train`` that M^t is fine-tuned on: D^t of Eqs. 1-2."""
        sub = self.world.finetune_defaults.get("train_subset")
        if sub is None and isinstance(getattr(self.world, "extra", None), dict):
            sub = self.world.extra.get("finetune_subset")
        if sub is None:
            return list(range(len(self.world.target_train)))
        return _index_list(sub)

    def target_data(self) -> Dataset:
        """D^t: M^t's training images (a subset of ``world.target_train``)."""
        idx = self.target_train_indices()
        if len(idx) == len(self.world.target_train) and idx == list(range(len(idx))):
            return self.world.target_train
        return Subset(self.world.target_train, idx)

    def source_labels(self) -> Tensor:
        """Source class id of every image of ``world.source_data`` (D^c = images with label c)."""
        if self._source_labels is None:
            self._source_labels = labels_of(self.world.source_data).long().cpu()
        return self._source_labels

    def class_images(self, c: int, n: int | None = None) -> list[int]:
        """Indices in ``world.source_data`` of the first ``n`` images of D^c (all when None)."""
        idx = torch.nonzero(self.source_labels() == int(c)).flatten().tolist()
        return idx if n is None else idx[:n]

    # ------------------------------------------------------------------ models
    def _finetune_kwargs(self, overrides: dict[str, Any]) -> dict[str, Any]:
        kw = {**self.world.finetune_defaults, **overrides}
        if "train_subset" not in kw:
            extra = getattr(self.world, "extra", None) or {}
            if extra.get("finetune_subset") is not None:
                kw["train_subset"] = extra["finetune_subset"]
        return kw

    def source_model(self) -> nn.Module:
        """M^s (the world's source model, on the audit's device, eval mode)."""
        return self.world.source_model.to(self.device).eval()

    def _train_target(self, seed: int, overrides: dict[str, Any]) -> tuple[nn.Module, pd.DataFrame]:
        check_int_range("seed", seed, 0)
        name = _cache.fingerprint("M^t", seed, _key_of(overrides))
        if name not in self._models:
            kw = self._finetune_kwargs(overrides)
            kw.setdefault("progress", self.progress)
            kw.setdefault("num_classes", len(self.world.target_classes))
            model, hist = _training.finetune(self.world.source_model, self.world.target_train, self.world.target_val,
                                             seed=seed,
                                             device=self.device, cache=self.cache, **kw)
            self._models[name] = (model, hist)
        return self._models[name]  # type: ignore[return-value]

    def target_model(self, seed: int = 0, **finetune_overrides: Any) -> nn.Module:
        """M^t: ``training.finetune`` of M^s on D^t with ``world.finetune_defaults`` (+ overrides)."""
        return self._train_target(seed, finetune_overrides)[0]

    def history(self, seed: int = 0, **finetune_overrides: Any) -> pd.DataFrame:
        """Per-epoch history of :meth:`target_model` (same arguments)."""
        return self._train_target(seed, finetune_overrides)[1]

    def _scratch_kwargs(self, data: str, overrides: dict[str, Any]) -> dict[str, Any]:
        kw = {**self.world.scratch_defaults, **overrides}
        if data == "same":
            # Same images as M^t; epochs scaled so the number of optimisation steps matches the full
            # recipe (capped at 10x its epochs): fewer images must not also mean an unconverged model.
            n_full = len(_index_list(kw["train_subset"])) if "train_subset" in kw else len(self.world.target_train)
            idx = self.target_train_indices()
            epochs = int(kw.get("epochs", 10))
            if "epochs" not in overrides:
                kw["epochs"] = int(min(10 * epochs, max(epochs, math.ceil(epochs * n_full / max(1, len(idx))))))
            kw["train_subset"] = idx
        return kw

    def _train_scratch(self, seed: int, data: str, overrides: dict[str, Any]) -> tuple[nn.Module, pd.DataFrame]:
        check_int_range("seed", seed, 0)
        check_choice("data", data, ("full", "same", "matched"))
        name = _cache.fingerprint("M^b", seed, data, _key_of(overrides))
        if name not in self._models:
            if data == "matched":
                recipe = self.matched_recipe()
                overrides = {**overrides, "train_subset": recipe["train_subset"]}
                kw = self._scratch_kwargs("full", overrides)
            else:
                kw = self._scratch_kwargs(data, overrides)
            kw.setdefault("progress", self.progress)
            kw.setdefault("num_classes", len(self.world.target_classes))
            model, hist = _training.train_scratch(self.world.make_scratch, self.world.target_train,
                                                  self.world.target_val, seed=seed, device=self.device, cache=self.cache, **kw)
            self._models[name] = (model, hist)
        return self._models[name]  # type: ignore[return-value]

    def scratch_model(self, seed: int = 0, data: str = "full", **scratch_overrides: Any) -> nn.Module:
        """M^b trained from random weights with ``world.scratch_defaults`` (+ overrides).

        ``data="full"``: the world's competent baseline recipe (e.g. shapes: 2,500 images with zoom-out
        augmentation). ``"same"``: exactly M^t's training images (D^t), same recipe, epochs scaled to
        keep the number of steps (at most 10x). ``"matched"``: the recipe on a seeded subset of its
        images, sized by :meth:`matched_recipe` so its target validation accuracy is within
        ``match_tol`` of M^t's.
        """
        return self._train_scratch(seed, data, scratch_overrides)[0]

    def scratch_history(self, seed: int = 0, data: str = "full", **scratch_overrides: Any) -> pd.DataFrame:
        """Per-epoch history of :meth:`scratch_model` (same arguments)."""
        return self._train_scratch(seed, data, scratch_overrides)[1]

    def st_model(self, seed: int = 0, bn: str = "target") -> nn.Module:
        """M^st = B(M^t) + H(M^s) (Sec. 3.2); ``bn="source"`` restores M^s's BatchNorm statistics."""
        check_choice("bn", bn, ("target", "source"))
        return source_target_model(self.target_model(seed), self.source_model(), bn=bn, head=self._head())

    def _extra(self) -> dict[str, Any]:
        extra = getattr(self.world, "extra", None)
        return extra if isinstance(extra, dict) else {}

    def _head(self) -> str | None:
        return self.world.finetune_defaults.get("head") or self._extra().get("head")

    def _cam_layer(self) -> str | None:
        return self._extra().get("cam_layer") or self._extra().get("target_layer")

    def add_arm(self, name: str, factory: ModelFactory) -> None:
        """Register a model arm: ``factory(seed) -> nn.Module`` (e.g. a remedy's fine-tuned model)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string; got {name!r}")
        if name in BUILTIN_ARMS:
            raise ValueError(f"name {name!r} is a built-in arm; choose another (built-ins: {', '.join(BUILTIN_ARMS)})")
        if not callable(factory):
            raise ValueError(f"factory must be a callable seed -> nn.Module; got {type(factory).__name__}")
        self._arms[name] = factory

    def arms(self) -> list[str]:
        """Names :meth:`model` resolves: the built-ins and the arms added with :meth:`add_arm`."""
        return list(BUILTIN_ARMS) + list(self._arms)

    def model(self, name: str | nn.Module, seed: int = 0) -> nn.Module:
        """A model by arm name (see :data:`BUILTIN_ARMS` and :meth:`add_arm`), or ``name`` itself if a module."""
        if isinstance(name, nn.Module):
            return name
        if name == "M^s":
            return self.source_model()
        if name == "M^t":
            return self.target_model(seed)
        if name in ("M^b", "M^b (competent)"):
            return self.scratch_model(seed, "full")
        if name == "M^b (same data)":
            return self.scratch_model(seed, "same")
        if name == "M^b (matched acc)":
            return self.scratch_model(seed, "matched")
        if name in self._arms:
            model = self._arms[name](seed)
            if not isinstance(model, nn.Module):
                raise ValueError(f"arm {name!r} returned {type(model).__name__}, not an nn.Module")
            return model.to(self.device).eval()
        raise ValueError(f"model must be an nn.Module or one of {', '.join(map(repr, self.arms()))}; got {name!r}")

    # ------------------------------------------------------------------ predictions (cached)
    def logits(self, model: str | nn.Module, images: Tensor | Dataset | None = None, seed: int = 0) -> Tensor:
        """``model``'s logits on ``images`` (None: ``world.target_val``), on the CPU; cached by weights and data."""
        m = self.model(model, seed)
        if images is None:
            data_key: Any = ("target_val", _training.data_fingerprint(self.world.target_val))
            data: ImageData = self.world.target_val
        elif isinstance(images, Tensor):
            data_key, data = _cache.fingerprint(images), images
        else:
            data_key, data = _training.data_fingerprint(images), images
        return self._stage("logits", (self.model_fingerprint(m), data_key),
                           lambda: _training.predict(m, data, device=self.device)[0])

    def accuracy(self, model: str | nn.Module, seed: int = 0,
                 data: Dataset | tuple[Tensor, Tensor] | None = None) -> float:
        """Accuracy of ``model`` (an arm name or a module) on ``data``: a labelled dataset or an
        ``(images, labels)`` pair; None (default): the target validation set. Logits are cached."""
        if data is None:
            images, y = None, labels_of(self.world.target_val)
        elif isinstance(data, tuple):
            if len(data) != 2 or not all(isinstance(t, Tensor) for t in data) or len(data[0]) != len(data[1]):
                raise ValueError("data must be a labelled Dataset or an (images, labels) pair of tensors of equal "
                                 f"length; got a tuple of {len(data)}")
            images, y = data
        else:
            images, y = data, labels_of(data)
        logits = self.logits(model, images, seed)
        return float((logits.argmax(1) == y.long().cpu()).double().mean())

    def matched_recipe(self, seeds: Sequence[int] = (0, 1, 2), max_tries: int = 7) -> dict[str, Any]:
        """How ``data="matched"`` trains M^b: the competent recipe (same epochs, augmentation,
        optimiser) on fewer images, so that its target validation accuracy is within ``match_tol``
        of M^t's (mean over ``seeds`` of M^t).

        Procedure (seed 0, cached): the images are a fixed seeded ordering of the recipe's training
        pool; n = N (the competent model itself) is tried first, then n is halved until the accuracy
        falls to ``target + match_tol`` or below, then bisected (on log n) between the last
        too-accurate and the first not-too-accurate n, at most ``max_tries`` trainings in all. The n
        with the smallest gap wins. If even the full recipe is below ``target - match_tol``, less data
        cannot match M^t: n = N is returned with ``within_tol`` False. The chosen n is then trained
        for every seed. Returns the choice and every try (``tries``).
        """
        check_int_range("max_tries", max_tries, 1)
        target = float(np.mean([self.accuracy("M^t", s) for s in seeds]))
        base = self._scratch_kwargs("full", {})
        pool = _index_list(base["train_subset"]) if "train_subset" in base else list(range(len(self.world.target_train)))
        perm = torch.randperm(len(pool), generator=torch.Generator().manual_seed(12345)).tolist()
        pool = [pool[i] for i in perm]
        min_n = min(len(pool), max(2 * int(base.get("batch_size", 64)), 32))

        def run(n: int) -> float:
            model, _ = _training.train_scratch(
                self.world.make_scratch, self.world.target_train, self.world.target_val, seed=0,
                device=self.device, cache=self.cache,
                **{"num_classes": len(self.world.target_classes), "progress": self.progress, **base,
                   "train_subset": sorted(pool[:n])})
            return self.accuracy(model)

        def compute() -> dict[str, Any]:
            tries: list[dict[str, Any]] = []

            def attempt(n: int) -> float:
                acc = run(n)
                tries.append({"n_images": n, "val_acc": acc, "gap": acc - target})
                return acc

            n_hi = len(pool)  # largest n tried that is too accurate
            acc = attempt(n_hi)
            if acc > target + self.match_tol:
                n_lo = None
                n = n_hi
                while len(tries) < max_tries and n > min_n:
                    n = max(min_n, n // 2)
                    acc = attempt(n)
                    if abs(acc - target) <= self.match_tol:
                        break
                    if acc < target - self.match_tol:
                        n_lo = n
                        break
                    n_hi = n
                while (n_lo is not None and len(tries) < max_tries and n_hi - n_lo > 1
                       and all(abs(t["gap"]) > self.match_tol for t in tries)):
                    n = int(round(math.sqrt(n_hi * n_lo)))
                    n = min(max(n, n_lo + 1), n_hi - 1)
                    acc = attempt(n)
                    if acc > target + self.match_tol:
                        n_hi = n
                    elif acc < target - self.match_tol:
                        n_lo = n
            best = min(tries, key=lambda t: (abs(t["gap"]), -t["n_images"]))
            return {"target_acc": target, "n_images": best["n_images"], "val_acc": best["val_acc"],
                    "gap": best["gap"], "within_tol": abs(best["gap"]) <= self.match_tol,
                    "train_subset": sorted(pool[:best["n_images"]]), "tries": pd.DataFrame(tries)}

        return self._stage("matched_recipe", (target, self.match_tol, max_tries, _key_of(base), pool), compute)

    # ------------------------------------------------------------------ Eqs. 1-3
    def counts(self) -> Tensor:
        """Eq. 1: ``v(c) = |{x in D^t : c in top_k(M^s(x))}|`` for every source class (LongTensor, CPU)."""
        idx = self.target_train_indices()
        return self._stage("counts", (self.k, idx),
                           lambda: source_class_counts(self.source_model(), self.target_data(), k=self.k).cpu())

    def source_only(self) -> Tensor:
        """Eq. 2: ``F = {c : v(c) <= v_lo}`` (ascending class ids)."""
        return source_only(self.counts(), self.v_lo)

    def _class_probs(self, seed: int) -> pd.DataFrame:
        """Per-class mean p_c over D^c under M^st, M^s and M^st with source BN stats (all classes)."""
        mt = self.target_model(seed)
        key = (self.model_fingerprint(mt), self._head())

        def compute() -> pd.DataFrame:
            return _lingering_table(self.st_model(seed, "target"), self.world.source_data,
                                    list(range(len(self.world.source_classes))), p_lo=self.p_lo,
                                    source_model=self.source_model(), mst_source_bn=self.st_model(seed, "source"),
                                    class_names=list(self.world.source_classes))

        return self._stage("class_probs", key, compute)

    def lingering(self, seed: int = 0) -> pd.DataFrame:
        """Eq. 3 table over F: ``class, name, v, n_images, p_source, p_st, p_st_source_bn, lingering``.

        ``lingering`` is ``p_st > p_lo``; the class means are cached per M^t, so changing ``p_lo``
        or ``v_lo`` only re-thresholds.
        """
        full = self._class_probs(seed)
        F = set(self.source_only().tolist())
        table = full[full["class"].isin(F)].reset_index(drop=True).copy()
        v = self.counts()
        table["v"] = pd.array([int(v[c]) for c in table["class"]], dtype="Int64")
        table["lingering"] = np.nan_to_num(table["p_st"].to_numpy(dtype=float), nan=-1.0) > self.p_lo
        return table

    def lingering_classes(self, seed: int = 0) -> list[int]:
        """L (Eq. 3): the source-only classes whose mean p_c under M^st exceeds p_lo."""
        t = self.lingering(seed)
        return [int(c) for c in t.loc[t["lingering"], "class"]]

    # ------------------------------------------------------------------ composites and maps
    def composites(self, classes: Iterable[int] | None = None, seed: int = 0) -> Composites:
        """I(c) for each c in ``classes`` (default F, which does not depend on any fine-tuning seed):
        the first ``n_composites_per_class`` images of D^c, each with a random ``world.target_val``
        image at ``scale`` pasted at a random place (draws from ``seed``).

        ``source_index`` indexes ``world.source_data``; the source class of composite i is
        ``audit.source_labels()[source_index[i]]`` (see :meth:`composite_classes`).
        """
        cls = sorted(set(_index_list(self.source_only() if classes is None else classes)))
        n_src = len(self.world.source_classes)
        bad = [c for c in cls if not 0 <= c < n_src]
        if bad:
            raise ValueError(f"classes must be source class ids in [0, {n_src - 1}]; got {bad[:5]}")
        if not cls:
            raise ValueError("classes is empty (F is empty at this v_lo?): pass at least one source class")
        check_int_range("seed", seed, 0)

        def compute() -> Composites:
            idx = [i for c in cls for i in self.class_images(c, self.n_composites_per_class)]
            if not idx:
                raise ValueError(f"the source data hold no images of classes {cls[:10]}")
            src, _ = _gather(self.world.source_data, idx)
            tgt_x, tgt_y = _gather(self.world.target_val, range(len(self.world.target_val)))
            comp = make_composites(src, tgt_x, scale=self.scale, generator=seed, target_labels=tgt_y)
            comp.source_index = torch.as_tensor(idx, dtype=torch.long)[comp.source_index.cpu()]
            return comp

        return self._stage("composites", (cls, self.n_composites_per_class, self.scale, seed), compute)

    def composite_classes(self, composites: Composites) -> Tensor:
        """The source class c_s of every composite (from ``source_index`` into ``world.source_data``)."""
        return self.source_labels()[composites.source_index.cpu()]

    def maps(self, model: str | nn.Module, composites: Composites | Tensor, targets: Tensor | Sequence[int] | int,
             seed: int = 0) -> Tensor:
        """Grad-CAM maps ``A(x, model, target)`` ``[N, H, W]`` (``attribution.gradcam``), cached by
        the model's weights, the images and the targets. ``model``: an arm name or a module;
        the layer is ``world.extra["cam_layer"]`` (or ``"target_layer"``) when set, else
        ``attribution.default_layer``."""
        m = self.model(model, seed)
        images = composites.images if isinstance(composites, Composites) else composites
        n = len(images)
        t = torch.full((n,), int(targets), dtype=torch.long) if isinstance(targets, int) else \
            torch.as_tensor(_index_list(targets), dtype=torch.long)
        if len(t) != n:
            raise ValueError(f"targets must have one class per image ({n}); got {len(t)}")
        layer = self._cam_layer()
        return self._stage("maps", (self.model_fingerprint(m), _cache.fingerprint(images), t, _key_of(layer)),
                           lambda: gradcam(m, images.to(self.device), t.to(self.device), layer, batch_size=128).cpu())

    def distraction_table(self, seed: int = 0, models: Sequence[str | nn.Module] = ("M^t", "M^b"),
                          classes: Iterable[int] | None = None, composites_seed: int = 0) -> pd.DataFrame:
        """Eq. 4 per composite and model, with its chance level: one row per (composite, model).

        Columns: ``composite, source_class, source_name, lingering`` (c_s in L of M^t(seed)),
        ``target_label, model, seed, pred, correct, distraction`` (IoU of the top-(1-q) background
        pixels of A(x, model, c_t) and A(x, M^s, c_s)) and ``null`` (mean IoU over ``n_null``
        shuffled pairs: the chance level to compare against).
        """
        comp = self.composites(classes, composites_seed)
        cs = self.composite_classes(comp)
        ms = self.maps("M^s", comp, cs)
        L = set(self.lingering_classes(seed))
        names = list(self.world.source_classes)
        frames = []
        for j, name in enumerate(models):
            label = name if isinstance(name, str) else f"model{j}"
            mt = self.maps(name, comp, comp.target_label, seed)
            d = distraction(mt, ms, comp.masks.cpu(), self.q)
            null = distraction_null(mt, ms, comp.masks.cpu(), self.q, n_perm=self.n_null,
                                    generator=seed * 1000 + 7).nanmean(0) if len(comp) > 1 else torch.full((len(comp),), float("nan"))
            pred = self.logits(name, comp.images, seed).argmax(1)
            frames.append(pd.DataFrame({
                "composite": np.arange(len(comp)), "source_class": cs.numpy(),
                "source_name": [names[int(c)] for c in cs], "lingering": [int(c) in L for c in cs],
                "target_label": comp.target_label.cpu().numpy(), "model": label, "seed": seed,
                "pred": pred.numpy(), "correct": (pred == comp.target_label.cpu()).numpy(),
                "distraction": d.double().numpy(), "null": null.double().numpy()}))
        return pd.concat(frames, ignore_index=True)

    # ------------------------------------------------------------------ Eq. 5 and planted truth
    def detection(self, seed: int = 0, classes: Iterable[int] | None = None, composites_seed: int = 0
                  ) -> dict[str, Any]:
        """Eq. 5 as a deployable check (``detection.evaluate_detection``): clean ``world.target_val``
        images vs composites over ``classes`` (default F), with M^t(seed) and L(seed)."""
        from .detection import evaluate_detection

        comp = self.composites(classes, composites_seed)
        x, y = _gather(self.world.target_val, range(len(self.world.target_val)))
        return evaluate_detection(self.st_model(seed), self.target_model(seed), x, y, comp,
                                  self.lingering_classes(seed), p_lo=self.p_lo)

    def planted_recovery(self, seed: int = 0) -> pd.DataFrame:
        """Precision and recall of F (Eq. 2) and L (Eq. 3) against the planted source-only classes."""
        truth = getattr(self.world, "planted_source_only", None)
        if truth is None:
            raise ValueError(f"world {self.world.name!r} has no planted truth (planted_source_only is None); "
                             "use a procedural world such as 'shapes'")
        rows = []
        for name, found in (("F", self.source_only().tolist()), ("L", self.lingering_classes(seed))):
            p, r = precision_recall(found, truth)
            rows.append({"set": name, "found": len(found), "planted": len(truth),
                         "hits": len(set(found) & set(truth)), "precision": p, "recall": r})
        return pd.DataFrame(rows)
