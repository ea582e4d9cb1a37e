"""Profiles are data; load_world validates names, profiles and options up front."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from lingerlab.profiles import LOADER_DECIDES, PROFILES, ShapesProfile, get_profile, profile_names, split_overrides
from lingerlab.recipe import Recipe
from lingerlab.worlds import _LOADERS, load_world


def test_every_world_has_smoke_and_full():
    assert set(_LOADERS) == {"shapes", "lite0", "lite1", "lite2", "paper", "custom"}
    for world in _LOADERS:
        assert {"smoke", "full"} <= set(PROFILES[world])
        for name, prof in PROFILES[world].items():
            assert dataclasses.is_dataclass(prof) and prof.name == name


def test_profiles_are_frozen_and_overridable():
    p = get_profile("shapes", "smoke")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.n_shapes = 1  # type: ignore[misc]
    q = get_profile("shapes", "smoke", n_shapes=2, zoom_min=0.4)
    assert (q.n_shapes, q.zoom_min) == (2, 0.4) and p.n_shapes != 2
    assert get_profile("shapes", q) is q


def test_shapes_profile_sizes():
    smoke, full = PROFILES["shapes"]["smoke"], PROFILES["shapes"]["full"]
    n = lambda p: p.n_shapes * p.n_textures * p.n_colours  # noqa: E731
    assert n(smoke) >= 20 and n(full) >= 100
    assert smoke.image_size == 32 and smoke.finetune_train < smoke.target_train


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda: get_profile("nope"), ["world", "shapes", "lite0"]),
        (lambda: get_profile("shapes", "tiny"), ["profile", "smoke", "full"]),
        (lambda: get_profile("shapes", "smoke", epochs=3), ["epochs", "source", "finetune"]),
        (lambda: get_profile("shapes", "smoke", name="x"), ["name"]),
        (lambda: load_world("nope"), ["name", "shapes", "paper", "custom"]),
        (lambda: load_world("shapes", "huge"), ["profile", "smoke", "full"]),
        (lambda: load_world("shapes", "smoke", colour="red"), ["colour", "valid options", "profile fields"]),
    ],
)
def test_errors_name_what_is_valid(call, words):
    with pytest.raises(ValueError) as e:
        call()
    for w in words:
        assert w in str(e.value)


@pytest.mark.parametrize(
    "field, value, want",
    [
        ("n_shapes", "3", "int"),
        ("n_shapes", 3.0, "int"),
        ("n_shapes", 3.5, "int"),
        ("n_shapes", True, "int"),
        ("n_shapes", None, "int"),
        ("n_shapes", np.float64(3), "int"),
        ("n_shapes", np.bool_(True), "int"),
        ("zoom_min", "0.1", "float"),
        ("zoom_min", True, "float"),
        ("zoom_min", None, "float"),
        ("zoom_min", [0.1], "float"),
        ("finetune", 3, "Recipe"),
        ("scratch", None, "Recipe"),
        ("finetune", [("epochs", 2)], "Recipe"),
    ],
)
def test_wrong_type_is_type_error_naming_field_and_type(field, value, want):
    with pytest.raises(TypeError) as e:
        get_profile("shapes", "smoke", **{field: value})
    msg = str(e.value)
    assert repr(field) in msg and want in msg and type(value).__name__ in msg


def test_numpy_scalars_are_accepted_as_python_numbers():
    p = get_profile(
        "shapes",
        "smoke",
        n_shapes=np.int64(2),
        width=np.int32(8),
        target_train=np.uint16(900),
        clutter_prob=np.float32(0.5),
        zoom_min=np.int64(0),
        shared_prob=np.float64(0.25),
        finetune={"optimizer": np.str_("sgd"), "epochs": np.int64(4)},
    )
    assert (p.n_shapes, p.width, p.target_train) == (2, 8, 900)
    assert type(p.n_shapes) is int and type(p.width) is int and type(p.target_train) is int
    assert p.clutter_prob == 0.5 and type(p.clutter_prob) is float
    assert p.zoom_min == 0.0 and type(p.zoom_min) is float
    assert p.shared_prob == 0.25 and type(p.shared_prob) is float
    assert p.finetune.optimizer == "sgd" and type(p.finetune.optimizer) is str
    assert p.finetune.epochs == 4 and type(p.finetune.epochs) is int
    # an int for a float field is stored as a float, so the fingerprint does not depend on 1 vs 1.0
    one = get_profile("paper", "smoke", finetune={"lr": 1})
    assert one == get_profile("paper", "smoke", finetune={"lr": 1.0})
    assert type(one.finetune.lr) is float and one.finetune.cache_key() == one.finetune.replace(lr=1.0).cache_key()


def test_unknown_fields_stay_value_errors_even_with_bad_types():
    with pytest.raises(ValueError, match="unknown shapes profile field.*'epochs'"):
        get_profile("shapes", "smoke", epochs="3")


def test_load_world_passes_type_errors_on():
    with pytest.raises(TypeError, match="paper profile field 'n_train' must be an int like 200; got str '200'"):
        load_world("paper", "smoke", n_train="200")


def test_split_overrides():
    fields, rest = split_overrides("paper", {"n_train": 10, "source_model": None})
    assert fields == {"n_train": 10} and rest == {"source_model": None}
    assert profile_names("lite0") == ["smoke", "full"]
    assert isinstance(PROFILES["shapes"]["full"], ShapesProfile)


def test_profiles_hold_the_two_recipes():
    for world, profs in PROFILES.items():
        for prof in profs.values():
            assert isinstance(prof.finetune, Recipe) and isinstance(prof.scratch, Recipe), world
            assert prof.scratch.init == "scratch"
            flat = [f.name for f in dataclasses.fields(prof) if f.name.startswith(("finetune_", "scratch_"))]
            recipe_fields = {f.name for f in dataclasses.fields(Recipe)}
            assert not [f for f in flat if f.split("_", 1)[1] in recipe_fields], (world, flat)


def test_a_recipe_dict_is_merged_into_the_profiles_recipe():
    base = get_profile("shapes", "smoke")
    p = get_profile("shapes", "smoke", finetune={"epochs": 2}, scratch={"batch_size": 8, "lr": 0.01})
    assert p.finetune == base.finetune.replace(epochs=2)
    assert p.scratch == base.scratch.replace(batch_size=8, lr=0.01)
    assert p.finetune.optimizer == "adam" and p.finetune.lr_schedule == "cosine"  # the rest is the profile's
    assert base.finetune.epochs == 20  # the profile itself is unchanged
    assert get_profile("shapes", "smoke", finetune={}) == base


def test_a_recipe_instance_replaces_the_profiles_recipe():
    mine = Recipe("mine", epochs=1, optimizer="sgd", lr=0.05, batch_size=4)
    p = get_profile("lite0", "smoke", finetune=mine)
    assert p.finetune is mine and p.scratch == get_profile("lite0", "smoke").scratch


def test_an_unknown_recipe_field_names_it_and_the_valid_ones():
    with pytest.raises(ValueError) as e:
        get_profile("shapes", "smoke", finetune={"epoch": 2})
    msg = str(e.value)
    assert "'finetune'" in msg and "'epoch'" in msg
    for valid in ("epochs", "lr", "optimizer", "batch_size", "bn"):
        assert valid in msg


def test_a_bad_recipe_value_is_refused_where_it_enters():
    with pytest.raises(ValueError, match="'scratch': bn must be one of 'update', 'freeze'; got 'maybe'"):
        get_profile("paper", "smoke", scratch={"bn": "maybe"})
    with pytest.raises(TypeError, match="'finetune': optimizer must be one of 'sgd', 'adam'; got int 1"):
        get_profile("custom", "smoke", finetune={"optimizer": 1})
    with pytest.raises(ValueError, match="'finetune': precise_bn=True recomputes"):
        get_profile("lite0", "smoke", finetune={"precise_bn": True, "bn": "freeze"})


def test_load_world_routes_recipe_overrides_to_the_profile():
    fields, rest = split_overrides("shapes", {"finetune": {"epochs": 2}, "scratch": Recipe("b"), "device": "cpu"})
    assert fields == {"finetune": {"epochs": 2}, "scratch": Recipe("b")} and rest == {"device": "cpu"}
    with pytest.raises(ValueError, match="unknown recipe field"):
        load_world("shapes", "smoke", finetune={"epochs": 2, "nope": 1})


def test_what_the_loader_decides_is_not_a_profile_override():
    for key in LOADER_DECIDES:
        with pytest.raises(ValueError, match=f"loader sets '{key}' itself"):
            get_profile("shapes", "smoke", finetune={key: None})


def test_a_flat_recipe_name_points_to_the_recipe_field():
    with pytest.raises(ValueError, match=r"a recipe setting: finetune=\{'epochs': \.\.\.\}"):
        get_profile("lite0", "smoke", finetune_epochs=3)
    with pytest.raises(ValueError, match=r"source=\{'lr': \.\.\.\}"):
        get_profile("shapes", "smoke", source_lr=0.1)


def test_a_profile_built_directly_needs_recipes():
    with pytest.raises(TypeError, match=r"ShapesProfile.finetune must be a Recipe"):
        ShapesProfile("x", finetune={"epochs": 2})
    assert ShapesProfile("x", finetune=Recipe("M^t", epochs=2)).finetune.epochs == 2


def test_the_shapes_source_recipe():
    """M^s trains from random weights with Adam on a cosine schedule; ``full`` changes its epochs only."""
    smoke, full = PROFILES["shapes"]["smoke"].source, PROFILES["shapes"]["full"].source
    assert (smoke.init, smoke.optimizer, smoke.lr_schedule) == ("scratch", "adam", "cosine")
    assert full == smoke.replace(epochs=full.epochs) and full.epochs > smoke.epochs
