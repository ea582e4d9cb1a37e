"""chapter: the notebooks' set-up, and the profile table of the "Run it yourself" page."""

from __future__ import annotations


import pytest

from lingerlab.chapter import profile_table
from lingerlab.profiles import PROFILES


def _setting(profile, dotted: str):
    for part in dotted.split("."):
        profile = getattr(profile, part)
    return profile


def test_profile_table_lists_exactly_the_settings_full_changes():
    t = profile_table(("shapes", "lite0"))
    assert set(t["world"]) == {"shapes", "lite0"}
    for w in ("shapes", "lite0"):
        smoke, full = PROFILES[w]["smoke"], PROFILES[w]["full"]
        rows = t[t.world == w].set_index("setting")
        for name, row in rows.iterrows():  # each row is a real setting, read from both profiles, that differs
            assert row["smoke"] == _setting(smoke, name) and row["full"] == _setting(full, name)
            assert row["smoke"] != row["full"]
    # a recipe's settings by their dotted names, and nothing full leaves as it is
    lite = set(t[t.world == "lite0"]["setting"])
    assert lite == {
        "image_size",
        "dc_per_class",
        "finetune.epochs",
        "finetune.batch_size",
        "scratch.epochs",
        "scratch.batch_size",
    }
    with pytest.raises(ValueError, match="worlds"):
        profile_table(("custom_nope",))
