"""Profiles are data; load_world validates names, profiles and options up front."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from lingerlab.profiles import PROFILES, ShapesProfile, get_profile, profile_names, split_overrides
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
        p.source_epochs = 1  # type: ignore[misc]
    q = get_profile("shapes", "smoke", source_epochs=2, zoom_min=0.4)
    assert (q.source_epochs, q.zoom_min) == (2, 0.4) and p.source_epochs != 2
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
        (lambda: get_profile("shapes", "smoke", epochs=3), ["epochs", "source_epochs"]),
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
        ("source_epochs", "3", "int"),
        ("source_epochs", 3.0, "int"),
        ("source_epochs", 3.5, "int"),
        ("source_epochs", True, "int"),
        ("source_epochs", None, "int"),
        ("source_epochs", np.float64(3), "int"),
        ("source_epochs", np.bool_(True), "int"),
        ("source_lr", "0.1", "float"),
        ("source_lr", True, "float"),
        ("source_lr", None, "float"),
        ("source_lr", [0.1], "float"),
        ("finetune_optimizer", 1, "str"),
        ("finetune_optimizer", None, "str"),
        ("finetune_optimizer", b"adam", "str"),
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
        source_epochs=np.int64(2),
        width=np.int32(8),
        target_train=np.uint16(900),
        source_lr=np.float32(0.5),
        zoom_min=np.int64(0),
        shared_prob=np.float64(0.25),
        finetune_optimizer=np.str_("sgd"),
    )
    assert (p.source_epochs, p.width, p.target_train) == (2, 8, 900)
    assert type(p.source_epochs) is int and type(p.width) is int and type(p.target_train) is int
    assert p.source_lr == 0.5 and type(p.source_lr) is float
    assert p.zoom_min == 0.0 and type(p.zoom_min) is float
    assert p.shared_prob == 0.25 and type(p.shared_prob) is float
    assert p.finetune_optimizer == "sgd" and type(p.finetune_optimizer) is str
    # an int for a float field is stored as a float, so the fingerprint does not depend on 1 vs 1.0
    assert get_profile("paper", "smoke", finetune_lr=1) == get_profile("paper", "smoke", finetune_lr=1.0)
    assert type(get_profile("paper", "smoke", finetune_lr=1).finetune_lr) is float


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
