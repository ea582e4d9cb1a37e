"""arms: the paper's M^b as the reference recipe from random weights."""

from __future__ import annotations

from lingerlab.arms import from_scratch
from lingerlab.recipe import Recipe
from lingerlab.worlds.shapes_augment import ZoomOut


def test_from_scratch_changes_only_the_start():
    ref = Recipe("M^t", train_subset=[3, 1, 2], augment=ZoomOut(), epochs=7, optimizer="adam", lr=3e-4, batch_size=8)
    b = from_scratch(ref)
    assert (b.name, b.init) == ("M^b (same data)", "scratch")
    # the same images, augmentation, steps and schedule; only the start (and its name) differ
    assert b.replace(name=ref.name, init=ref.init, description=ref.description) == ref
    assert from_scratch(ref, precise_bn=True).precise_bn and from_scratch(ref.replace(precise_bn=True)).precise_bn


def test_from_scratch_updates_batchnorm_even_when_the_reference_freezes_it():
    """A random net has no statistics worth keeping: M^t's ``bn="freeze"`` becomes ``"update"``."""
    ref = Recipe("M^t", bn="freeze")
    b = from_scratch(ref, precise_bn=True)
    assert (b.bn, b.precise_bn) == ("update", True)
