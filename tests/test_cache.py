"""The cache follows the code: code_hash, fingerprint (no memory addresses), cached(), StageCache.

The end-to-end tests run Eq. 1 in subprocesses against an edited COPY of the package, so they see
exactly what a user sees after editing the code: a docstring or a comment changes nothing, a code
change in the module or in a module it imports recomputes, an unrelated module does not.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import importlib.util
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from lingerlab import cache as _cache
from lingerlab import codehash as _codehash
from lingerlab import features
from lingerlab.cache import StageCache, cached, code_hash, fingerprint

SRC = Path(_cache.__file__).resolve().parent  # src/lingerlab


# --------------------------------------------------------------------------------------------
# helpers: a copy of the package, source edits located with ast
# --------------------------------------------------------------------------------------------


def _copy_package(dest: Path) -> Path:
    shutil.copytree(SRC, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


def _offset(src: str, line: int, col: int) -> int:
    """Character offset of (1-based line, 0-based column) in ``src``."""
    lines = src.splitlines(keepends=True)
    return sum(len(s) for s in lines[: line - 1]) + len(lines[line - 1].encode()[:col].decode())  # col: utf-8 bytes


def _function(src: str, name: str) -> ast.FunctionDef:
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    raise AssertionError(f"no function {name} in the source")


def _replace(src: str, node: ast.AST, text: str) -> str:
    a = _offset(src, node.lineno, node.col_offset)
    b = _offset(src, node.end_lineno, node.end_col_offset)  # type: ignore[arg-type]
    return src[:a] + text + src[b:]


def _edit_docstring_and_comment(path: Path, func: str) -> None:
    """A new docstring for ``func``, a comment above it and blank lines: no code change."""
    src = path.read_text()
    fn = _function(src, func)
    doc = fn.body[0]
    assert isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant) and isinstance(doc.value.value, str)
    src = _replace(src, doc.value, '"""An edited docstring: only prose changed."""  # and a trailing comment')
    a = _offset(src, fn.lineno, 0)
    src = src[:a] + "# a comment added above the function\n\n" + src[a:]
    path.write_text(src)


def _edit_return_plus_one(path: Path, func: str) -> None:
    """``return EXPR`` -> ``return (EXPR) + 1`` for every value-returning ``return`` of ``func`` (one
    per code path: single-process and distributed), whatever EXPR is."""
    src = path.read_text()
    rets = [n for n in ast.walk(_function(src, func)) if isinstance(n, ast.Return) and n.value is not None]
    assert rets, f"{func} has no return statement"
    for ret in sorted(rets, key=lambda n: (n.lineno, n.col_offset), reverse=True):  # last first: offsets hold
        expr = ast.get_source_segment(src, ret.value)
        src = _replace(src, ret.value, f"({expr}) + 1")
    path.write_text(src)


def _append_code(path: Path) -> None:
    path.write_text(path.read_text() + "\n\ndef _cache_test_added() -> int:\n    return 1\n")


def _load_cache_of(pkg_dir: Path, pkg_name: str) -> ModuleType:
    """A fresh instance of the copy's code-identity module, as module ``<pkg_name>.codehash``: its
    code_hash reads the copy's files (and starts with empty per-process memos)."""
    spec = importlib.util.spec_from_file_location(f"{pkg_name}.codehash", pkg_dir / "codehash.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# --------------------------------------------------------------------------------------------
# end to end: Eq. 1 through StageCache, in subprocesses against an edited copy
# --------------------------------------------------------------------------------------------

EQ1_SCRIPT = textwrap.dedent("""
    import json, os, sys
    import torch
    from torch import nn
    import lingerlab
    from lingerlab import features
    from lingerlab.cache import StageCache

    assert os.path.dirname(lingerlab.__file__) == os.environ["EXPECT_PKG"], lingerlab.__file__
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 6)).eval()
    images = torch.rand(16, 3, 8, 8, generator=torch.Generator().manual_seed(1))  # [0, 1] images
    stages = StageCache("test")
    counts = stages.get("counts", {"model": model, "images": images, "k": 2},
                        lambda: features.source_class_counts(model, images, k=2))
    print(json.dumps({"computed": stages.computed["counts"], "counts": [int(c) for c in counts]}))
""")


def _run_script(script: str, pkg_parent: Path, cache: Path, **env: str) -> dict:
    full_env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(pkg_parent), os.environ.get("PYTHONPATH", "")]),
        "LINGERLAB_CACHE": str(cache),
        "EXPECT_PKG": str(pkg_parent / "lingerlab"),
        **env,
    }
    out = subprocess.run([sys.executable, "-c", script], env=full_env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_eq1_stage_follows_the_code_of_features_and_its_imports(tmp_path):
    # the premises of the closure checks, on the real package
    assert "lingerlab._validation" in _codehash._closure("lingerlab.features")
    assert "lingerlab.plotting" not in _codehash._closure("lingerlab.features")
    parent = tmp_path / "copy"
    pkg = _copy_package(parent / "lingerlab")
    cache = tmp_path / "cache"

    def run() -> dict:
        return _run_script(EQ1_SCRIPT, parent, cache)

    first = run()
    assert first["computed"] == 1 and sum(first["counts"]) == 2 * 16  # v.sum() == k * N
    assert run() == {"computed": 0, "counts": first["counts"]}  # warm: read from disk

    # prose only in features, and code in a module features does not import: still cached (one run
    # for both, to spare a subprocess; test_code_hash_ignores_prose_... checks them one by one)
    _edit_docstring_and_comment(pkg / "features.py", "source_class_counts")
    _append_code(pkg / "plotting.py")
    assert run() == {"computed": 0, "counts": first["counts"]}

    _append_code(pkg / "_validation.py")  # features imports it
    assert run() == {"computed": 1, "counts": first["counts"]}

    _edit_return_plus_one(pkg / "features.py", "source_class_counts")
    changed = run()
    assert changed["computed"] == 1
    assert changed["counts"] == [c + 1 for c in first["counts"]]


# --------------------------------------------------------------------------------------------
# code_hash on temporary copies (in process: a fresh cache module reading the copy)
# --------------------------------------------------------------------------------------------


def test_code_hash_ignores_prose_and_follows_code_and_imports(tmp_path):
    pkg = _copy_package(tmp_path / "llcopy")

    def hashes() -> dict[str, str]:
        c = _load_cache_of(pkg, "llcopy")
        return {m: c.code_hash(f"llcopy.{m}") for m in ("features", "plotting", "training")}

    h0 = hashes()
    assert h0 == hashes()  # deterministic
    _edit_docstring_and_comment(pkg / "features.py", "source_class_counts")
    (pkg / "features.py").write_text(
        (pkg / "features.py")
        .read_text()
        .replace('"""Source-only features', '"""An edited module docstring. Source-only features', 1)
        + "\n\n# trailing comment\n"
    )
    assert hashes() == h0
    _append_code(pkg / "plotting.py")
    h1 = hashes()
    assert h1["plotting"] != h0["plotting"] and h1["features"] == h0["features"]
    _append_code(pkg / "models.py")  # imported by features and training
    h2 = hashes()
    assert h2["features"] != h1["features"] and h2["training"] != h1["training"]
    _edit_return_plus_one(pkg / "features.py", "source_class_counts")
    h3 = hashes()
    assert h3["features"] != h2["features"] and h3["training"] == h2["training"]


def test_code_hash_import_resolution(tmp_path):
    pkg = _copy_package(tmp_path / "llcopy")
    (pkg / "_probe.py").write_text(
        textwrap.dedent("""
        import os
        import numpy as np


        def f():
            from . import features             # a submodule, not the package __init__
            import llcopy.plotting
            from .worlds import shapes          # a submodule of a subpackage
            from .models import eval_mode       # a name: its module
            return features, shapes, eval_mode, np, os
    """)
    )
    (pkg / "worlds" / "_probe2.py").write_text(
        "from .. import cache\nfrom ..training import evaluate\nfrom . import base\n"
    )
    c = _load_cache_of(pkg, "llcopy")
    direct = c._module_info("llcopy._probe")[1]
    assert direct == {"llcopy.features", "llcopy.plotting", "llcopy.worlds.shapes", "llcopy.models"}
    assert c._module_info("llcopy.worlds._probe2")[1] == {"llcopy.cache", "llcopy.training", "llcopy.worlds.base"}
    closure = c._closure("llcopy._probe")
    assert "llcopy" not in closure and "llcopy._validation" in closure and "llcopy.cache" in closure
    assert c.code_hash("llcopy._probe") == c.code_hash(*sorted(closure))
    with pytest.raises(ValueError, match="llcopy.nope"):
        c.code_hash("llcopy.nope")


def test_code_hash_targets():
    h = code_hash("lingerlab.features")
    assert code_hash(features) == h and code_hash(features.source_class_counts) == h
    assert code_hash(functools.partial(features.source_class_counts, k=1)) == h
    assert code_hash(features, np, "numpy", torch.relu) == h  # outside lingerlab: nothing
    assert code_hash() == code_hash("numpy") != h
    assert code_hash(features, "lingerlab.plotting") != h
    assert len(h) == 16 and int(h, 16) >= 0


# --------------------------------------------------------------------------------------------
# fingerprint
# --------------------------------------------------------------------------------------------


def test_fingerprint_refuses_unknown_objects_and_names_the_type():
    with pytest.raises(TypeError, match="object of type object"):
        fingerprint(object())

    class LocalThing:
        def __init__(self) -> None:
            self.x = 1

    with pytest.raises(TypeError, match=r"LocalThing.*cache_key"):
        fingerprint(LocalThing())
    with pytest.raises(TypeError, match=r"LocalThing.*\[0\]\['a'\]\[1\]"):  # where it was found
        fingerprint({"a": [1, LocalThing()]})
    with pytest.raises(TypeError, match="LocalThing"):  # inside a closure too
        thing = LocalThing()
        fingerprint(lambda: thing)


def test_fingerprint_values():
    assert fingerprint(np.int64(3)) == fingerprint(3) == fingerprint(np.int8(3))
    assert fingerprint(np.float32(0.5)) == fingerprint(0.5) == fingerprint(np.float64(0.5))
    assert fingerprint(np.bool_(True)) == fingerprint(True) != fingerprint(1)
    assert fingerprint(1) != fingerprint(1.0) != fingerprint("1")
    assert fingerprint(float("nan")) == fingerprint(np.float64("nan"))
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1}) != fingerprint({"a": 2, "b": 1})
    assert fingerprint({1, 2, 3}) == fingerprint({3, 2, 1}) != fingerprint({1, 2})
    assert fingerprint(("ab", "c")) != fingerprint(("a", "bc"))  # framed, not concatenated
    assert fingerprint(torch.zeros(2)) != fingerprint(torch.zeros(2, dtype=torch.float64))
    assert fingerprint(np.arange(3)) != fingerprint(np.arange(4))
    assert fingerprint(Path("a/b")) != fingerprint("a/b")
    assert fingerprint(torch.float32) != fingerprint(torch.float16)
    assert fingerprint(torch.device("cpu")) == fingerprint(torch.device("cpu"))
    lin = nn.Linear(2, 2)
    before = fingerprint(lin)
    with torch.no_grad():
        lin.weight.add_(1)
    assert fingerprint(lin) != before
    loop: list = [1]
    loop.append(loop)
    assert fingerprint(loop) == fingerprint(loop)  # cycles terminate


def test_fingerprint_callables_follow_code_and_captured_values():
    w1, w2 = 0.1, 0.2
    f1 = lambda x: w1 * x  # noqa: E731
    f2 = lambda x: w2 * x  # noqa: E731
    assert fingerprint(f1) != fingerprint(f2)  # closure cells
    assert fingerprint(functools.partial(pow, 2)) != fingerprint(functools.partial(pow, 3))

    def g(x, a=1):
        return x + a

    def g2(x, a=2):
        return x + a

    assert fingerprint(g) != fingerprint(g2)  # defaults
    # a lingerlab function: keyed by its module's code closure
    assert fingerprint(features.source_class_counts) == fingerprint(features.source_class_counts)
    assert fingerprint(features.source_class_counts) != fingerprint(features.source_only)

    class Scaled:
        def __init__(self, s: float) -> None:
            self.s = s

        def __call__(self, x):
            return self.s * x

        def method(self, x):
            return x + self.s

    assert fingerprint(Scaled(1.0)) == fingerprint(Scaled(1.0)) != fingerprint(Scaled(2.0))
    assert fingerprint(Scaled(1.0).method) != fingerprint(Scaled(2.0).method)

    class Keyed:
        cache_key = ("keyed", 1)

    class Keyed2:
        @property
        def cache_key(self):
            return ("keyed", 2)

    assert fingerprint(Keyed()) != fingerprint(Keyed2())
    assert fingerprint(Keyed()) == fingerprint(Keyed())


STABLE_SCRIPT = textwrap.dedent("""
    import dataclasses, enum, functools, json
    from pathlib import Path
    import numpy as np
    import torch
    from torch import nn
    from lingerlab.cache import fingerprint

    @dataclasses.dataclass(frozen=True)
    class Cfg:
        a: int
        b: tuple
        c: dict

    class Keyed:
        def __init__(self, w):
            self.cache_key = ("keyed", w, Cfg(1, (2,), {"z": None}))

    class Prop:
        @property
        def cache_key(self):
            return ("prop", {"set": {3, 1, 2}})

    class Color(enum.Enum):
        RED = 1

    class Call:
        def __init__(self):
            self.p = {"words": {"alpha", "beta", "gamma"}}
        def __call__(self, x):
            return x

    def f(x, k=3):
        return x * k

    torch.manual_seed(0)
    parts = {
        "dataclass": Cfg(1, (2.5, "x"), {"k": [1, 2], "s": frozenset({"p", "q", "r"})}),
        "cache_key": Keyed(0.1), "property": Prop(), "partial": functools.partial(f, 2), "function": f,
        "lambda": lambda x: x + 1, "callable": Call(), "enum": Color.RED, "path": Path("a/b"),
        "set": {"one", "two", "three", "four"}, "array": np.arange(3), "tensor": torch.arange(3.0),
        "dtype": torch.float32, "device": torch.device("cpu"), "module": nn.Linear(2, 2), "np": np.float32(1.5),
        "lingerlab": __import__("lingerlab.features").features.source_class_counts,
    }
    print(json.dumps({k: fingerprint(v) for k, v in parts.items()}))
""")


def test_fingerprint_is_stable_across_processes(tmp_path):
    repo_src = SRC.parent
    runs = [
        _run_script(STABLE_SCRIPT, repo_src, tmp_path / "cache", PYTHONHASHSEED=seed, EXPECT_PKG="")
        for seed in ("0", "12345")
    ]
    assert runs[0] == runs[1]
    assert len(set(runs[0].values())) == len(runs[0])


# --------------------------------------------------------------------------------------------
# cached() and StageCache
# --------------------------------------------------------------------------------------------


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_cached_writes_nothing_when_compute_raises(tmp_path):
    def boom():
        raise RuntimeError("no result")

    with pytest.raises(RuntimeError, match="no result"):
        cached("stage", "key", boom, root=tmp_path)
    assert _files(tmp_path) == []


def test_cached_recomputes_a_corrupt_entry(tmp_path):
    calls: list[int] = []

    def compute():
        calls.append(1)
        return {"v": torch.arange(3)}

    first = cached("stage", "key", compute, root=tmp_path)
    (entry,) = _files(tmp_path)
    assert torch.equal(cached("stage", "key", compute, root=tmp_path)["v"], first["v"]) and len(calls) == 1
    entry.write_bytes(b"not a torch file")
    with pytest.warns(RuntimeWarning, match=f"{entry.name}.*recomputed"):
        again = cached("stage", "key", compute, root=tmp_path)
    assert len(calls) == 2 and torch.equal(again["v"], first["v"])
    assert _files(tmp_path) == [entry]  # rewritten in place
    assert torch.equal(_cache.load(entry)["v"], first["v"])
    assert cached("stage", "key", compute, root=tmp_path, enabled=False) is not None and len(calls) == 3


def test_cached_keys_entries_by_the_code_of_compute(tmp_path):
    here = cached("stage", "key", lambda: 1, root=tmp_path)  # a test module: no lingerlab code
    in_features = cached("stage", "key", functools.partial(features.default_k, 1000), root=tmp_path)
    with_code = cached("stage", "key", lambda: 1, root=tmp_path, code=["lingerlab.plotting"])
    assert (here, in_features, with_code) == (1, 5, 1)
    names = sorted(p.name for p in _files(tmp_path))
    assert len(names) == 3 and all(n.startswith("key-") for n in names)
    assert f"key-{code_hash(features)}.pt" in names  # partial -> .func's module
    # a compute outside lingerlab that references lingerlab code is keyed by that code
    assert _cache._code_targets(lambda: features.default_k(3))[-1] == "lingerlab.features"


def test_stage_cache(tmp_path):
    calls: list[str] = []

    def compute():
        calls.append("x")
        return [1, 2, 3]

    a = StageCache("world-a", root=tmp_path)
    key = a.key("stage", {"k": 1})
    assert len(key) == 24 and key == StageCache("world-a", root=tmp_path).key("stage", {"k": 1})
    assert key != StageCache("world-b").key("stage", {"k": 1}) and key != a.key("stage", {"k": 2})
    assert key == fingerprint("stage", "world-a", {"k": 1}, length=24)
    r1 = a.get("stage", {"k": 1}, compute)
    r1_file = _files(tmp_path)
    assert a.get("stage", {"k": 1}, compute) is r1 and a.computed["stage"] == 1 and len(calls) == 1
    b = StageCache("world-a", root=tmp_path)
    assert b.get("stage", {"k": 1}, compute) == r1 and b.computed["stage"] == 0 and len(calls) == 1
    a.get("stage", {"k": 2}, compute)
    assert a.computed == {"stage": 2} and len(calls) == 2
    off = StageCache("world-a", root=tmp_path, enabled=False)
    r2 = off.get("stage", {"k": 1}, compute)
    assert off.get("stage", {"k": 1}, compute) is r2 and off.computed["stage"] == 1 and len(calls) == 3
    assert StageCache("world-a", root=tmp_path, enabled=False).get("stage", {"k": 1}, compute) == r1
    assert len(calls) == 4 and len(_files(tmp_path)) == 2 and set(r1_file) <= set(_files(tmp_path))
    with pytest.raises(TypeError, match="object"):
        StageCache(object())


@dataclasses.dataclass
class _Cfg:
    a: int
    b: list


def test_dataclass_and_cache_key_fingerprints_in_process():
    assert fingerprint(_Cfg(1, [2])) == fingerprint(_Cfg(1, [2])) != fingerprint(_Cfg(1, [3]))

    class K:
        def __init__(self, v):
            self.cache_key = ("k", v)

    assert fingerprint(K(1)) == fingerprint(K(1)) != fingerprint(K(2))

    class M:  # a cache_key method is called: its value, not the method, is the key
        def __init__(self, v):
            self.v = v

        def cache_key(self):
            return ("m", self.v)

    assert fingerprint(M(1)) == fingerprint(M(1)) != fingerprint(M(2))


def test_a_recipe_and_a_profile_fingerprint_by_their_values():
    """Every recipe value reaches the key, so a world built with other recipe settings is another world."""
    from lingerlab.profiles import get_profile
    from lingerlab.recipe import Recipe

    one, two = Recipe("a", epochs=1), Recipe("a", epochs=2)
    assert fingerprint(one) == fingerprint(Recipe("a", epochs=1)) != fingerprint(two)
    assert fingerprint(Recipe("a", lr=1e-3)) != fingerprint(Recipe("a", lr=3e-3))
    base = get_profile("shapes", "smoke").__dict__
    for change in ({"finetune": {"epochs": 2}}, {"scratch": {"lr": 1e-3}}, {"source": {"batch_size": 64}}):
        assert fingerprint(get_profile("shapes", "smoke", **change).__dict__) != fingerprint(base)


# --------------------------------------------------------------------------------------------
# the stored format: safe to load (weights_only), checked, written atomically
# --------------------------------------------------------------------------------------------


def _stage_values() -> dict:
    """One value of each kind the package stores (training, worlds, audit, comparison, arms)."""
    from lingerlab.composites import Composites

    g = torch.Generator().manual_seed(0)
    comp = Composites(
        images=torch.rand(2, 3, 4, 4, generator=g),
        masks=torch.rand(2, 4, 4, generator=g) > 0.5,
        target_index=torch.tensor([3, 1]),
        target_label=torch.tensor([0, -1]),
        source_index=torch.tensor([5, 7]),
        boxes=torch.zeros(2, 4, dtype=torch.long),
    )
    lingering = pd.DataFrame(
        {  # lingering.lingering's columns
            "class": pd.array([1, 4], dtype="int64"),
            "name": ["cat", "dog"],
            "v": pd.array([3, pd.NA], dtype="Int64"),
            "n_images": np.array([10, 0], dtype="int64"),
            "p_source": [0.25, np.nan],
            "lingering": [True, False],
        }
    )
    lingering.attrs["reference"] = "M^t"
    return {
        "finetune": {
            "state_dict": nn.Linear(2, 3).state_dict(),
            "key": "k" * 24,
            "history": {"epoch": [1, 2], "train_loss": [0.5, 0.25], "val_acc": [float("nan"), 0.75]},
        },
        "image_scan": [True, False, True],
        "shapes_data": {
            "x": torch.randint(0, 255, (2, 3, 4, 4), dtype=torch.uint8),
            "finetune_subset": [0, 2],
            "val_params": {"which": torch.tensor([1, -1])},
        },
        "logits": torch.randn(3, 2, generator=g, dtype=torch.float64),
        "class_probs": lingering,
        "composites": comp,
        "control_sets": {"source_only": comp, "neutral": comp.subset([1])},
        "matched_recipe": {
            "target_acc": 0.8,
            "n_images": 64,
            "within_tol": True,
            "train_subset": [0, 3],
            "tries": pd.DataFrame(
                [{"n_images": 128, "val_acc": 0.9, "gap": 0.1}, {"n_images": 64, "val_acc": 0.81, "gap": 0.01}]
            ),
        },
        "other": (
            np.arange(3.0),
            np.int64(7),
            np.float32(0.5),
            {(1, "a"): None},
            pd.Series([1.5, 2.5], index=["a", "b"], name="s"),
            b"raw",
        ),
    }


def _assert_same(a, b) -> None:
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b)
        assert a.attrs == b.attrs
    elif isinstance(a, pd.Series):
        pd.testing.assert_series_equal(a, b)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _assert_same(a[k], b[k])
    elif dataclasses.is_dataclass(a):
        _assert_same(dataclasses.asdict(a), dataclasses.asdict(b))
    elif isinstance(a, float) and a != a:
        assert b != b
    else:
        assert a == b


def test_every_stored_type_round_trips_through_weights_only_loading(tmp_path, monkeypatch):
    values = _stage_values()

    def compute(value, fail: bool):  # the same code and captured values both times: the same entry
        def run():
            if fail:
                raise AssertionError("recomputed")
            return value

        return run

    for stage, value in values.items():
        cached(stage, "key", compute(value, False), root=tmp_path)
    loads: list[dict] = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **kw: loads.append(kw) or real_load(*a, **kw))
    for stage, value in values.items():
        _assert_same(cached(stage, "key", compute(value, True), root=tmp_path), value)
    assert len(loads) == len(values) and all(kw["weights_only"] is True for kw in loads)
    state = cached("finetune", "key", compute(values["finetune"], True), root=tmp_path)["state_dict"]
    assert state._metadata == values["finetune"]["state_dict"]._metadata  # a state dict's versions
    allowed = [g[0] if isinstance(g, tuple) else g for g in torch.serialization.get_safe_globals()]
    assert not [g for g in allowed if str(getattr(g, "__module__", "")).startswith(("lingerlab", "pandas", "numpy"))]


def test_a_value_of_another_type_is_refused_and_nothing_is_written(tmp_path):
    with pytest.raises(TypeError, match="_Cfg"):
        cached("stage", "key", lambda: {"cfg": _Cfg(1, [2])}, root=tmp_path)
    with pytest.raises(TypeError, match="object"):
        _cache.save([object()], tmp_path / "x.pt")
    assert _files(tmp_path) == []


class _Evil:
    """Unpickling it creates the file ``marker``: what a malicious cache entry would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def test_a_malicious_entry_is_never_unpickled_but_reported_and_recomputed(tmp_path, monkeypatch):
    cached("stage", "key", lambda: {"v": torch.arange(3)}, root=tmp_path)
    (entry,) = _files(tmp_path / "stage")
    marker = tmp_path / "pwned"
    # the payloads really are malicious: an unsafe load would create the marker
    proof = tmp_path / "proof"
    buf = io.BytesIO()
    torch.save(_Evil(proof), buf)
    torch.load(io.BytesIO(buf.getvalue()), weights_only=False).close()
    assert proof.exists()

    buf = io.BytesIO()
    torch.save({"v": _Evil(marker)}, buf)
    as_torch_file = buf.getvalue()  # an old-format entry (torch.save, no header)
    with_header = _cache._FORMAT + b" " + hashlib.sha256(as_torch_file).hexdigest().encode() + b"\n" + as_torch_file
    loads: list[bool] = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **kw: loads.append(kw["weights_only"]) or real_load(*a, **kw))
    # a pickle, an old-format entry: not even opened with torch.load; with a valid header: refused
    for payload, opened in ((pickle.dumps(_Evil(marker)), []), (as_torch_file, []), (with_header, [True])):
        entry.write_bytes(payload)
        loads.clear()
        with pytest.warns(RuntimeWarning, match=f"cache entry .*{entry.name}.*recomputed"):
            value = cached("stage", "key", lambda: {"v": torch.arange(3)}, root=tmp_path)
        assert not marker.exists() and loads == opened
        assert torch.equal(value["v"], torch.arange(3))
        assert torch.equal(_cache.load(entry)["v"], torch.arange(3))  # rewritten in the safe format


def test_a_corrupt_entry_is_named_in_a_warning_and_recomputed(tmp_path):
    calls: list[int] = []

    def compute():
        calls.append(1)
        return {"t": torch.arange(1000), "df": pd.DataFrame({"a": [1.0, 2.0]})}

    cached("stage", "key", compute, root=tmp_path)
    (entry,) = _files(tmp_path)
    good = entry.read_bytes()
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF
    for bad in (b"", b"\x00garbage\xff" * 100, good[: len(good) // 2], good[:40], bytes(flipped), good + b"trailing"):
        entry.write_bytes(bad)
        with pytest.warns(RuntimeWarning, match=f"{entry.name}.*recomputed"):
            value = cached("stage", "key", compute, root=tmp_path)
        assert torch.equal(value["t"], torch.arange(1000)) and value["df"]["a"].tolist() == [1.0, 2.0]
        assert entry.read_bytes() == good  # rewritten whole
    assert len(calls) == 7
    with pytest.raises(_cache.CacheEntryError, match="checksum"):
        entry.write_bytes(bytes(flipped))
        _cache.load(entry)


def test_an_interrupted_write_leaves_no_entry_and_no_temporary_file(tmp_path, monkeypatch):
    real_save = torch.save

    def save_then_die(obj, f, *a, **kw):
        f.write(b"PK\x03\x04 partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        cached("stage", "key", lambda: {"v": torch.arange(3)}, root=tmp_path)
    assert _files(tmp_path) == []
    monkeypatch.setattr(torch, "save", real_save)

    cached("stage", "key", lambda: {"v": torch.arange(3)}, root=tmp_path)
    (entry,) = _files(tmp_path)
    good = entry.read_bytes()

    def die_in_write(fd, *a):  # killed after part of the bytes reached the disk
        os.write(fd, b"lingerlab-cache/2 partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", die_in_write)
    with pytest.raises(KeyboardInterrupt):
        _cache.save({"v": torch.arange(4)}, entry)
    monkeypatch.undo()
    assert _files(tmp_path) == [entry] and entry.read_bytes() == good  # the old entry, whole


KILLED_SCRIPT = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    import torch
    from lingerlab import cache
    os.replace = lambda *a: os._exit(3)                   # the process dies between write and rename
    cache.save({"v": torch.arange(3)}, Path(sys.argv[1]))
""")


def test_a_killed_write_leaves_no_entry_and_the_next_write_removes_its_temporary_file(tmp_path):
    entry = tmp_path / "stage" / "key-0123.pt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC.parent), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", KILLED_SCRIPT, str(entry)], env=env, capture_output=True, timeout=300)
    assert out.returncode == 3, out.stderr.decode()[-2000:]
    (tmp,) = _files(tmp_path)
    assert not entry.exists() and tmp.name.startswith(f".{entry.name}.") and tmp.name.endswith(".tmp")
    live = tmp.with_name(f".{entry.name}.another-writer.tmp")
    live.write_bytes(b"a write in progress")
    os.utime(tmp, (1e9, 1e9))  # left there long ago
    _cache.save({"v": torch.arange(3)}, entry)
    assert _files(tmp_path) == sorted([entry, live])  # stale one removed
    assert torch.equal(_cache.load(entry)["v"], torch.arange(3))
