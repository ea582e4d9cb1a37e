"""chapter: the notebooks' set-up, and the profile table of the "Run it yourself" page."""

from __future__ import annotations

import dataclasses

import pytest

from lingerlab.chapter import profile_table
from lingerlab.profiles import PROFILES


def test_profile_table_lists_exactly_the_settings_full_changes():
    t = profile_table(("shapes", "lite0"))
    assert set(t["world"]) == {"shapes", "lite0"}
    for w in ("shapes", "lite0"):
        smoke, full = PROFILES[w]["smoke"], PROFILES[w]["full"]
        differ = {
            f.name
            for f in dataclasses.fields(smoke)
            if f.name != "name" and getattr(smoke, f.name) != getattr(full, f.name)
        }
        rows = t[t.world == w].set_index("setting")
        assert set(rows.index) == differ
        for name in differ:
            assert rows.loc[name, "smoke"] == getattr(smoke, name) and rows.loc[name, "full"] == getattr(full, name)
    with pytest.raises(ValueError, match="worlds"):
        profile_table(("custom_nope",))
