"""Profiles are data; load_world validates names, profiles and options up front."""
from __future__ import annotations

import dataclasses

import pytest

from lingerlab.profiles import PROFILES, ShapesProfile, get_profile, profile_names, split_overrides
from lingerlab.worlds import available_worlds, load_world


def test_every_world_has_smoke_and_full():
    assert set(available_worlds()) == {"shapes", "lite0", "paper", "custom"}
    for world, profiles in available_worlds().items():
        assert {"smoke", "full"} <= set(profiles)
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


@pytest.mark.parametrize("call, words", [
    (lambda: get_profile("nope"), ["world", "shapes", "lite0"]),
    (lambda: get_profile("shapes", "tiny"), ["profile", "smoke", "full"]),
    (lambda: get_profile("shapes", "smoke", epochs=3), ["epochs", "source_epochs"]),
    (lambda: get_profile("shapes", "smoke", source_epochs="3"), ["source_epochs", "int"]),
    (lambda: get_profile("shapes", "smoke", name="x"), ["name"]),
    (lambda: load_world("nope"), ["name", "shapes", "paper", "custom"]),
    (lambda: load_world("shapes", "huge"), ["profile", "smoke", "full"]),
    (lambda: load_world("shapes", "smoke", colour="red"), ["colour", "valid options", "profile fields"]),
])
def test_errors_name_what_is_valid(call, words):
    with pytest.raises(ValueError) as e:
        call()
    for w in words:
        assert w in str(e.value)


def test_split_overrides():
    fields, rest = split_overrides("paper", {"n_train": 10, "source_model": None})
    assert fields == {"n_train": 10} and rest == {"source_model": None}
    assert profile_names("lite0") == ["smoke", "full"]
    assert isinstance(PROFILES["shapes"]["full"], ShapesProfile)
