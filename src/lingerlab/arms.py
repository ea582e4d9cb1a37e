"""Arms: the models a comparison puts side by side, each trained by a named, frozen
:class:`~lingerlab.recipe.Recipe` (:func:`recipe_table` shows every difference). The paper's arms
(Sec. 3.1): ``M^t`` (fine-tuning of M^s on D^t) and the world's further ``spec.recipes``; ``M^b
(competent)``, the world's scratch recipe; ``M^b (same data)``, the reference fine-tuning recipe from
random weights (:func:`from_scratch`, the paper's own M^b); ``M^b (matched acc)``, that recipe on
fewer images, accuracy-matched to M^t (:func:`match_accuracy`). :class:`Zoo` trains and remembers
them; where the world names ``spec.lr_search``, the reference and M^b pick their rates by the same
search (:meth:`Zoo.search`, ``tuning.pick_rate``).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from . import training as _training
from .inference import predict
from .tuning import pick_rate
from ._validation import check_int_range
from .recipe import Recipe

__all__ = ["BUILTIN_ARMS", "Zoo", "recipe_table", "from_scratch", "match_accuracy", "target_indices"]


def target_indices(world: Any) -> list[int]:
    """Indices of ``world.target_train`` that M^t trains on: D^t of Eqs. 1-2."""
    sub = world.recipe("M^t").train_subset
    return list(range(len(world.target_train))) if sub is None else list(sub)


def recipe_table(recipes: Sequence[Recipe] | Mapping[str, Recipe], n_images: int) -> pd.DataFrame:
    """One row per arm: what each recipe trains on and how (``n_images``: size of the full target set)."""
    items = list(recipes.values()) if isinstance(recipes, Mapping) else list(recipes)
    return pd.DataFrame([r.row(n_images) for r in items])


def from_scratch(recipe: Recipe, *, name: str = "M^b (same data)", precise_bn: bool = False) -> Recipe:
    """``recipe`` trained from random weights instead of M^s: the same images, augmentation and steps.
    Its BatchNorm statistics update (a random net has no statistics worth freezing); ``precise_bn``:
    recompute them after the last step (a short scratch run needs it)."""
    return recipe.replace(
        name=name,
        init="scratch",
        bn="update",
        precise_bn=recipe.precise_bn or precise_bn,
        description=f"{recipe.name}'s recipe from random weights: same images, augmentation and steps",
    )


def match_accuracy(
    accuracy_at: Callable[[int], float], n_max: int, target: float, tol: float, *, min_n: int = 32, max_tries: int = 7
) -> dict[str, Any]:
    """A training-set size n whose model (``accuracy_at(n)``: validation accuracy on the first n images)
    is within ``tol`` of ``target``: n_max first, then halved until no longer too accurate, then
    bisected on log n, at most ``max_tries`` calls; the smallest gap wins (ties: the larger n).
    Returns ``target_acc, n_images, val_acc, gap, within_tol, tries``."""
    check_int_range("max_tries", max_tries, 1)
    check_int_range("n_max", n_max, 1)
    min_n = min(n_max, check_int_range("min_n", min_n, 1))
    tries: list[dict[str, Any]] = []

    def attempt(n: int) -> float:
        acc = float(accuracy_at(n))
        tries.append({"n_images": n, "val_acc": acc, "gap": acc - target})
        return acc

    n_hi = n_max  # largest n tried that is too accurate
    acc = attempt(n_hi)
    if acc > target + tol:
        n_lo = None
        n = n_hi
        while len(tries) < max_tries and n > min_n:
            n = max(min_n, n // 2)
            acc = attempt(n)
            if abs(acc - target) <= tol:
                break
            if acc < target - tol:
                n_lo = n
                break
            n_hi = n
        while (
            n_lo is not None and len(tries) < max_tries and n_hi - n_lo > 1 and all(abs(t["gap"]) > tol for t in tries)
        ):
            n = int(round(math.sqrt(n_hi * n_lo)))
            n = min(max(n, n_lo + 1), n_hi - 1)
            acc = attempt(n)
            if acc > target + tol:
                n_hi = n
            elif acc < target - tol:
                n_lo = n
    best = min(tries, key=lambda t: (abs(t["gap"]), -t["n_images"]))
    return {"target_acc": target, **best, "within_tol": abs(best["gap"]) <= tol, "tries": pd.DataFrame(tries)}


#: Arm names a :class:`Zoo` resolves by itself; "M^b" is short for the competent baseline.
BUILTIN_ARMS = ("M^s", "M^t", "M^b", "M^b (competent)", "M^b (same data)", "M^b (matched acc)")

ModelFactory = Callable[[int], nn.Module]
_SEARCH_COLUMNS = ["arm", "lr", "val_acc", "picked"]


class Zoo:
    """The model zoo of one world: arm name -> recipe -> model for a seed, for the built-in arms
    (:data:`BUILTIN_ARMS`) and those added with :meth:`add`. ``accuracy(model) -> float`` (target
    validation accuracy) and ``stages`` (a ``cache.StageCache``) serve the accuracy-matched baseline."""

    def __init__(
        self,
        world: Any,
        *,
        device: torch.device,
        cache: bool = True,
        progress: bool = False,
        accuracy: Callable[[nn.Module], float] | None = None,
        stages: Any = None,
        match_tol: float = 0.02,
    ) -> None:
        self.world, self.device, self.cache, self.progress = world, device, cache, progress
        self.accuracy, self.stages, self.match_tol = accuracy, stages, match_tol
        self._extra: dict[str, ModelFactory | Recipe] = {}
        self._models: dict[tuple[Recipe, int, int], tuple[tuple[nn.Module, pd.DataFrame], Any]] = {}
        self._searches: dict[Recipe, tuple[Recipe, pd.DataFrame]] = {}  # recipe -> (tuned recipe, trials)

    def names(self) -> list[str]:
        """Every arm name :meth:`model` resolves: built-ins, the world's further recipes, added arms."""
        return list(BUILTIN_ARMS) + self._world_arms() + list(self._extra)

    def _world_arms(self) -> list[str]:
        return [k for k in self.world.spec.recipes if k not in BUILTIN_ARMS]

    def add(self, name: str, arm: ModelFactory | Recipe) -> None:
        """Register an arm: a :class:`Recipe`, or ``factory(seed) -> nn.Module``."""
        if not isinstance(name, str) or not name:
            raise TypeError(f"name must be a non-empty string; got {name!r}")
        if name in BUILTIN_ARMS or name in self._world_arms():
            raise ValueError(
                f"name {name!r} is a built-in or world arm; choose another (taken: "
                f"{', '.join(list(BUILTIN_ARMS) + self._world_arms())})"
            )
        if not (isinstance(arm, Recipe) or callable(arm)):
            raise TypeError(f"arm must be a recipe.Recipe or a callable seed -> nn.Module; got {type(arm).__name__}")
        self._extra[name] = arm

    def recipe(self, name: str) -> Recipe:
        """The recipe of arm ``name`` (M^t, each M^b regime, or a recipe added with :meth:`add`)."""
        w = self.world
        if name == "M^t" or name in self._world_arms():
            recipe = w.recipe("M^t") if name == "M^t" else w.spec.recipes[name]
            return self._tuned(recipe) if name == w.spec.reference_arm else recipe
        if name in ("M^b", "M^b (competent)"):
            return w.recipe("M^b")
        if name == "M^b (same data)":
            ref = w.spec.reference_arm
            base = w.recipe("M^t") if ref in BUILTIN_ARMS else w.spec.recipes[ref]
            return self._tuned(from_scratch(base, precise_bn=w.recipe("M^b").precise_bn))
        if name == "M^b (matched acc)":
            return w.recipe("M^b").replace(
                name=name,
                train_subset=self.matched()["train_subset"],
                description=f"scratch, competent recipe on fewer images, accuracy matched to {w.spec.reference_arm}",
            )
        arm = self._extra.get(name)
        if isinstance(arm, Recipe):
            return arm
        raise ValueError(f"name must be an arm with a recipe: {', '.join(map(repr, self.names()[1:]))}; got {name!r}")

    def search(self, recipe: Recipe) -> pd.DataFrame:
        """The learning-rate search of ``recipe``: one (cached) run per rate of ``spec.lr_search`` at
        seed 0, its target validation accuracy and the pick (:func:`pick_rate` on per-image correctness)."""
        rows, correct = [], []
        for lr in self.world.spec.lr_search:
            logits, labels = predict(self.train(recipe.replace(lr=lr), 0)[0], self.world.target_val, device=self.device)
            correct.append((logits.argmax(1) == labels).numpy())
            rows.append({"arm": recipe.name, "lr": lr, "val_acc": float(correct[-1].mean(dtype=np.float64))})
        out = pd.DataFrame(rows, columns=_SEARCH_COLUMNS[:3])
        pick = pick_rate(out["lr"].tolist(), correct) if rows else None
        out["picked"] = [r["lr"] == pick for r in rows]
        return out

    def _tuned(self, recipe: Recipe) -> Recipe:
        """``recipe`` with the learning rate :meth:`search` picks (unchanged without ``spec.lr_search``)."""
        if not self.world.spec.lr_search:
            return recipe
        if recipe not in self._searches:
            table = self.search(recipe)
            self._searches[recipe] = (recipe.replace(lr=float(table.loc[table["picked"], "lr"].iloc[0])), table)
        return self._searches[recipe][0]

    def search_of(self, recipe: Recipe) -> pd.DataFrame:
        """The learning-rate search whose pick is ``recipe`` (matched by the whole recipe; no rows if none)."""
        return next(
            (t for tuned, t in self._searches.values() if tuned == recipe), pd.DataFrame(columns=_SEARCH_COLUMNS)
        )

    def searches(self) -> pd.DataFrame:
        """Every learning-rate search this zoo ran, one row per trial."""
        frames = [t for _, t in self._searches.values()]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=_SEARCH_COLUMNS)

    def table(self, names: Sequence[str]) -> pd.DataFrame:
        """:func:`recipe_table` of the arms ``names``."""
        return recipe_table([self.recipe(n) for n in names], len(self.world.target_train))

    def model(self, name: str | nn.Module, seed: int = 0) -> nn.Module:
        """A model by arm name (eval mode, on the zoo's device), or ``name`` itself if a module."""
        if isinstance(name, nn.Module):
            return name
        if name == "M^s":
            return self.world.source_model.to(self.device).eval()
        given = self.world.spec.given.get("M^b" if name in ("M^b", "M^b (competent)") else name)
        if given is not None:  # the user's own model: measured as it is, for every seed
            return given.to(self.device).eval()
        arm = self._extra.get(name)
        if arm is not None and not isinstance(arm, Recipe):
            model = arm(seed)
            if not isinstance(model, nn.Module):
                raise TypeError(f"arm {name!r} returned {type(model).__name__}, not an nn.Module")
            return model.to(self.device).eval()
        if name not in self.names():
            raise ValueError(f"model must be an nn.Module or one of {', '.join(map(repr, self.names()))}; got {name!r}")
        return self.train(self.recipe(name), seed)[0]

    def train(self, recipe: Recipe, seed: int, source: nn.Module | None = None) -> tuple[nn.Module, pd.DataFrame]:
        """``(model, history)`` of ``recipe`` trained with ``seed``. ``source``: the model a
        ``"source"`` recipe fine-tunes (default ``world.source_model``; remedies pass an edited one)."""
        if not isinstance(recipe, Recipe):
            raise TypeError(f"recipe must be a recipe.Recipe; got {type(recipe).__name__}")
        seed = check_int_range("seed", seed, 0)
        key = (recipe, seed, id(source))
        hit = self._models.get(key)
        if hit is None or hit[1] is not source:
            w = self.world
            run = dict(seed=seed, device=self.device, cache=self.cache, progress=self.progress)
            data = (w.target_train, w.target_val, recipe)
            if recipe.init == "source":
                src = w.source_model if source is None else source
                out = _training.finetune(src, *data, num_classes=len(w.target_classes), **run)
            else:
                out = _training.train_scratch(w.make_scratch, *data, num_classes=len(w.target_classes), **run)
            self._models[key] = hit = (out, source)  # the source is kept alive, so its id stays its own
        return hit[0]

    def matched(self, seeds: Sequence[int] = (0, 1, 2), max_tries: int = 7) -> dict[str, Any]:
        """How "M^b (matched acc)" trains: the competent recipe on a seeded ordering of its images, cut to
        the size :func:`match_accuracy` finds within ``match_tol`` of ``spec.reference_arm``'s accuracy
        (mean over ``seeds``). Returns the choice, ``train_subset`` and every try (cached)."""
        if self.accuracy is None or self.stages is None:
            raise ValueError("this Zoo was built without accuracy= and stages=: it cannot match accuracy")
        target = float(np.mean([self.accuracy(self.model(self.world.spec.reference_arm, s)) for s in seeds]))
        base = self.world.recipe("M^b")
        pool = list(base.train_subset) if base.train_subset is not None else list(range(len(self.world.target_train)))
        perm = torch.randperm(len(pool), generator=torch.Generator().manual_seed(12345)).tolist()
        pool = [pool[i] for i in perm]

        def compute() -> dict[str, Any]:
            out = match_accuracy(
                lambda n: self.accuracy(self.train(base.replace(train_subset=sorted(pool[:n])), 0)[0]),
                len(pool),
                target,
                self.match_tol,
                min_n=max(2 * base.batch_size, 32),
                max_tries=max_tries,
            )
            return {**out, "train_subset": sorted(pool[: out["n_images"]])}

        return self.stages.get("matched_recipe", (target, self.match_tol, max_tries, base, pool), compute)
