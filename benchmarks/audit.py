"""The audit end to end: Eq. 1, Eq. 3, composites, Grad-CAM maps and Eq. 4 with its null, timed per stage
against the forward-only throughput of the same model measured in the same run.

    python benchmarks/audit.py --model resnet18 --size 224 --batch-size 32 --n 1000
    python benchmarks/audit.py --quick        # small run: N = 128, C = 32
    python benchmarks/audit.py --scaling      # N = 1k, 2k, 4k, 8k: wall time and peak RSS (64 px)

Random weights (no downloads). Images are synthetic and lazy: item i of a ``Dataset`` is rendered
from the seed ``(seed, i)`` when it is read, so the inputs never occupy N images of memory.

Models: M^s = ``--model`` with 1000 classes; M^t = ``models.replace_head(M^s, 2)``; M^b = a second
2-class network (other seed); M^st = ``models.source_target_model(M^t, M^s)`` and M^st with source
BatchNorm statistics. Stages and the image-passes (one forward, or one forward + partial backward
for a map) each one counts:

    eq1         ``features.source_class_counts(M^s, D^t)`` over N target images         N
    eq3         ``lingering.lingering(M^st, D^s, F, source_model=M^s, mst_source_bn=...)``
                over S source images of 10 classes (the three models ``Audit`` scores)  3 S
    composites  ``composites.make_composites``: C composites on the first C source images
                with a pool of P target images                                         0
    maps        ``attribution.gradcam``: A(x, M^t, c_t), A(x, M^s, c_s), A(x, M^b, c_t)  3 C
    eq4         ``distraction.distraction_with_null`` for M^t and M^b against M^s
                (q = 0.8, n_null = 20)                                                 0

    ratio = (N + 3 S + 3 C) / (sum of the stage times) / forward-only img/s

Forward-only: M^s on the first batches of D^t (rendered beforehand, so rendering is not timed),
the same batch size, ``torch.inference_mode``, contiguous and channels-last; one sample before the
audit and one after each stage (untimed, so a shared machine's load drifts into both alike), and
the faster layout's median is the reference. Peak memory is the process's peak
resident set size (Linux ``VmHWM``, reset per stage through ``/proc/self/clear_refs``): it sees every
page that tensors touch, not only Python objects. Where the reset is not allowed a background thread
samples the RSS (psutil, else ``/proc/self/statm``) every 2 ms.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import Dataset, Subset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from lingerlab._data import batches  # noqa: E402
from lingerlab.attribution import gradcam  # noqa: E402
from lingerlab.composites import make_composites  # noqa: E402
from lingerlab.distraction import distraction_with_null  # noqa: E402
from lingerlab.features import source_class_counts  # noqa: E402
from lingerlab.lingering import default_p_lo, lingering  # noqa: E402
from lingerlab.models import replace_head, source_target_model  # noqa: E402

MB = 2**20
STAGES = ("eq1", "eq3", "composites", "maps", "eq4")
SCALING_NS = (1000, 2000, 4000, 8000)


# --------------------------------------------------------------------------- data and models


class SyntheticImages(Dataset):
    """``n`` images ``[3, size, size]`` in [0, 1] with labels ``labels[i % len(labels)]``; item i is
    rendered from ``(seed, i)`` when read, so the dataset itself holds no pixels."""

    def __init__(self, n: int, size: int, labels: list[int], seed: int) -> None:
        self.n, self.size, self.labels, self.seed = n, size, list(labels), seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if not 0 <= i < self.n:
            raise IndexError(i)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        return torch.rand(3, self.size, self.size, generator=g), self.labels[i % len(self.labels)]


def build(name: str, num_classes: int, seed: int) -> torch.nn.Module:
    import torchvision

    torch.manual_seed(seed)
    if hasattr(torchvision.models, name):
        return getattr(torchvision.models, name)(weights=None, num_classes=num_classes).eval()
    import timm

    return timm.create_model(name, pretrained=False, num_classes=num_classes).eval()


def make_models(name: str) -> dict[str, torch.nn.Module]:
    ms = build(name, 1000, seed=0)
    mt = replace_head(ms, 2, generator=1)
    return {
        "M^s": ms,
        "M^t": mt,
        "M^b": build(name, 2, seed=2),
        "M^st": source_target_model(mt, ms),
        "M^st(source BN)": source_target_model(mt, ms, bn="source"),
    }


# --------------------------------------------------------------------------- peak memory


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _hwm() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmHWM in /proc/self/status")


class PeakRSS:
    """Peak resident set size since the last :meth:`reset`."""

    def __init__(self, sample_s: float = 0.002) -> None:
        try:
            self._reset_hwm()
            _hwm()
            self.method = "VmHWM reset through /proc/self/clear_refs"
            self._thread = None
        except OSError:
            try:
                import psutil

                proc = psutil.Process()
                self._read = lambda: proc.memory_info().rss
                self.method = f"RSS sampled every {sample_s * 1e3:g} ms (psutil)"
            except ImportError:
                self._read = _rss
                self.method = f"RSS sampled every {sample_s * 1e3:g} ms (/proc/self/statm)"
            self._max = self._read()
            self._sample_s = sample_s
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()

    @staticmethod
    def _reset_hwm() -> None:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")

    def _sample(self) -> None:
        while True:
            self._max = max(self._max, self._read())
            time.sleep(self._sample_s)

    def reset(self) -> int:
        """Start a new window; returns the current RSS (the window's baseline)."""
        if self._thread is None:
            self._reset_hwm()
            return _rss()
        now = self._read()
        self._max = now
        return now

    def peak(self) -> int:
        if self._thread is None:
            return max(_hwm(), _rss())
        return max(self._max, self._read())


# --------------------------------------------------------------------------- the audit


def run_audit(
    models: dict[str, torch.nn.Module],
    n: int,
    s: int,
    c: int,
    pool: int,
    size: int,
    bs: int,
    n_classes_src: int = 10,
    n_null: int = 20,
    mem: PeakRSS | None = None,
    between: Callable[[], None] | None = None,
) -> dict:
    """Every stage once; per stage its time, image-passes, items and peak RSS (absolute and above
    the RSS at its start). ``between`` runs before the first stage and after each one (untimed)."""
    ms, mt, mb = models["M^s"], models["M^t"], models["M^b"]
    k_src = 1000
    classes = [round(j * k_src / n_classes_src) for j in range(n_classes_src)]
    target = SyntheticImages(n, size, [0, 1], seed=1)
    source = SyntheticImages(s, size, classes, seed=2)
    out: dict[str, dict] = {}
    state: dict = {}

    def eq1():
        state["v"] = source_class_counts(ms, target, batch_size=bs)

    def eq3():
        state["table"] = lingering(
            models["M^st"],
            source,
            classes,
            p_lo=default_p_lo(k_src),
            source_model=ms,
            mst_source_bn=models["M^st(source BN)"],
            v=state["v"],
            batch_size=bs,
        )

    def comps():
        state["comp"] = make_composites(
            Subset(source, range(min(c, s))), Subset(target, range(min(pool, n))), scale=0.4, generator=0
        )

    def maps():
        comp = state["comp"]
        state["A_t"] = gradcam(mt, comp.images, comp.target_label, batch_size=bs)
        state["A_s"] = gradcam(ms, comp.images, comp.source_label, batch_size=bs)
        state["A_b"] = gradcam(mb, comp.images, comp.target_label, batch_size=bs)

    def eq4():
        masks = state["comp"].masks
        state["d_t"] = distraction_with_null(state["A_t"], state["A_s"], masks, 0.8, n_null, seed=0)
        state["d_b"] = distraction_with_null(state["A_b"], state["A_s"], masks, 0.8, n_null, seed=0)

    c_eff = min(c, s)
    plan = {
        "eq1": (eq1, n, n, "images"),
        "eq3": (eq3, 3 * s, s, "images x 3 models"),
        "composites": (comps, 0, c_eff, "composites"),
        "maps": (maps, 3 * c_eff, 3 * c_eff, "maps"),
        "eq4": (eq4, 0, 2 * c_eff, "composite-model pairs"),
    }
    if between is not None:
        between()
    for name, (fn, passes, items, unit) in plan.items():
        base = mem.reset() if mem is not None else 0
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        peak = mem.peak() if mem is not None else 0
        out[name] = {"s": dt, "passes": passes, "items": items, "unit": unit, "peak": peak, "base": base}
        if between is not None:
            between()
    return out


class ForwardOnly:
    """Forward-only throughput of ``model`` (inference mode) on the first ``n_batches`` batches of
    ``data``, rendered once beforehand, in both layouts; each call adds one sample per layout."""

    def __init__(self, model: torch.nn.Module, data: Dataset, bs: int, n_batches: int) -> None:
        xs = [x for x, _ in batches(Subset(data, range(min(len(data), n_batches * bs))), bs)]
        self.model = model
        cl = [x.contiguous(memory_format=torch.channels_last) for x in xs]
        self.layouts = {"contiguous": xs, "channels-last": cl}
        self.rates: dict[str, list[float]] = {k: [] for k in self.layouts}
        with torch.inference_mode():
            for b in self.layouts.values():
                model(b[0])  # warm-up

    def __call__(self) -> None:
        with torch.inference_mode():
            for k, b in self.layouts.items():
                t0 = time.perf_counter()
                for x in b:
                    self.model(x)
                self.rates[k].append(sum(len(x) for x in b) / (time.perf_counter() - t0))


def warm_up(models: dict[str, torch.nn.Module], size: int, bs: int) -> None:
    """One small run of every stage, so one-off costs (oneDNN primitives, allocator growth) land here."""
    run_audit(models, n=bs, s=bs, c=4, pool=4, size=size, bs=bs, n_null=2)


# --------------------------------------------------------------------------- output


def print_stages(r: dict, fwd: float) -> float:
    print(
        f"  {'stage':<11}{'time s':>9}{'passes':>8}  {'items/s':>9}  {'items':<22}{'passes/s':>9}"
        f"{'/ fwd':>7}{'peak RSS MB':>13}{'+ start':>9}"
    )
    for name in STAGES:
        st = r[name]
        pr = st["passes"] / st["s"]
        per = f"{pr:9.1f}{pr / fwd:7.1%}" if st["passes"] else f"{'-':>9}{'-':>7}"
        print(
            f"  {name:<11}{st['s']:9.2f}{st['passes']:8d}  {st['items'] / st['s']:9.1f}  {st['unit']:<22}{per}"
            f"{st['peak'] / MB:13.0f}{(st['peak'] - st['base']) / MB:9.0f}"
        )
    total_s = sum(r[k]["s"] for k in STAGES)
    passes = sum(r[k]["passes"] for k in STAGES)
    rate = passes / total_s
    print(
        f"  {'audit':<11}{total_s:9.2f}{passes:8d}  {'':9}  {'':22}{rate:9.1f}{rate / fwd:7.1%}"
        f"{max(r[k]['peak'] for k in STAGES) / MB:13.0f}"
    )
    return rate / fwd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet18", help="torchvision (or timm) architecture name")
    ap.add_argument("--size", type=int, default=None, help="image side in pixels (default 224; 64 for --scaling)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--n", type=int, default=1000, help="target images for Eq. 1 (N)")
    ap.add_argument("--s", type=int, default=None, help="source images for Eq. 3 (default N / 2)")
    ap.add_argument("--composites", type=int, default=128, help="composites C (three maps each)")
    ap.add_argument("--pool", type=int, default=512, help="target images the composites draw from (P)")
    ap.add_argument("--n-null", type=int, default=20)
    ap.add_argument(
        "--fwd-batches",
        type=int,
        default=2,
        help="batches per forward-only sample (one sample before the audit and after each stage)",
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="torch CPU threads (default: the CPUs this process may use)",
    )
    ap.add_argument("--quick", action="store_true", help="small run: N = 128, C = 32, 1 batch per forward sample")
    ap.add_argument(
        "--scaling",
        action="store_true",
        help="run N = 1k, 2k, 4k, 8k (each in a fresh process): wall time and peak RSS",
    )
    ap.add_argument("--ns", type=int, nargs="+", default=list(SCALING_NS), help="the N of --scaling")
    ap.add_argument("--profile", action="store_true", help="cProfile the audit and print the top functions")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.n, args.composites, args.fwd_batches = min(args.n, 128), min(args.composites, 32), 1
    size = args.size or (64 if args.scaling else 224)
    s = args.s if args.s is not None else max(1, args.n // 2)
    torch.set_num_threads(args.threads)

    if args.scaling:
        scaling(args, size)
        return

    mem = PeakRSS()
    models = make_models(args.model)
    warm_up(models, size, args.batch_size)
    target = SyntheticImages(args.n, size, [0, 1], seed=1)
    fwd_only = ForwardOnly(models["M^s"], target, args.batch_size, args.fwd_batches)
    if args.child:
        base = mem.reset()
        r = run_audit(
            models,
            args.n,
            s,
            args.composites,
            args.pool,
            size,
            args.batch_size,
            n_null=args.n_null,
            mem=mem,
            between=fwd_only,
        )
        print(
            "JSON "
            + json.dumps(
                {
                    "n": args.n,
                    "s": s,
                    "wall": sum(v["s"] for v in r.values()),
                    "base": base,
                    "peak": max(v["peak"] for v in r.values()),
                    "stages": {k: v["s"] for k, v in r.items()},
                    "stage_peaks": {k: v["peak"] for k, v in r.items()},
                    "passes": {k: v["passes"] for k, v in r.items()},
                    "fwd": max(statistics.median(v) for v in fwd_only.rates.values()),
                    "method": mem.method,
                }
            )
        )
        return

    prof = cProfile.Profile() if args.profile else None

    def between() -> None:
        if prof:
            prof.disable()
        fwd_only()
        if prof:
            prof.enable()

    r = run_audit(
        models,
        args.n,
        s,
        args.composites,
        args.pool,
        size,
        args.batch_size,
        n_null=args.n_null,
        mem=mem,
        between=between,
    )
    if prof:
        prof.disable()
    rates = {k: statistics.median(v) for k, v in fwd_only.rates.items()}
    ref_layout = max(rates, key=rates.get)
    fwd = rates[ref_layout]

    print(
        f"{args.model} @ {size}px, batch {args.batch_size}, cpu, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}; N = {args.n}, S = {s}, C = {min(args.composites, s)}, "
        f"P = {min(args.pool, args.n)}, n_null = {args.n_null}"
    )
    for k, v in rates.items():
        lo, hi = min(fwd_only.rates[k]), max(fwd_only.rates[k])
        print(
            f"  forward only, {k:<13}: {v:7.1f} img/s (median of {len(fwd_only.rates[k])} samples, "
            f"one before the audit and one after each stage: {lo:.1f} to {hi:.1f})"
            + ("  <- reference" if k == ref_layout else "")
        )
    ratio = print_stages(r, fwd)
    print(f"  ratio = (N + 3 S + 3 C) / audit time / forward-only img/s = {ratio:.1%}  (goal >= 25%)")
    print(f"  peak memory: {mem.method}; '+ start' = peak minus the RSS when the stage began")
    if prof:
        print("\ncProfile of the audit, top 25 by own time:")
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)


def scaling(args, size: int) -> None:
    rows = []
    cmd0 = [
        sys.executable,
        __file__,
        "--child",
        "--model",
        args.model,
        "--size",
        str(size),
        "--batch-size",
        str(args.batch_size),
        "--composites",
        str(args.composites),
        "--pool",
        str(args.pool),
        "--n-null",
        str(args.n_null),
        "--threads",
        str(args.threads),
        "--fwd-batches",
        str(args.fwd_batches),
    ]
    print(
        f"{args.model} @ {size}px, batch {args.batch_size}, cpu, {args.threads} threads; S = N / 2, "
        f"C = {args.composites}, P = {args.pool}, n_null = {args.n_null}; each N in a fresh process"
    )
    print(f"  {'':>6}{'':>8}{'':>8}{'eq1+eq3':>9}{'':>9}{'fixed':>7}{'eq1+eq3':>9}{'':>8}{'peak RSS MB':^29}")
    print(
        f"  {'N':>6}{'passes':>8}{'wall s':>8}{'s':>9}{'s / 1k N':>9}{'s':>7}{'/ fwd':>9}{'ratio':>8}"
        f"{'eq1':>7}{'eq3':>7}{'rest':>7}{'all':>8}"
    )
    for n in args.ns:
        cmd = cmd0 + ["--n", str(n)] + (["--s", str(args.s)] if args.s is not None else [])
        res = subprocess.run(cmd, capture_output=True, text=True)
        lines = [ln for ln in res.stdout.splitlines() if ln.startswith("JSON ")]
        if res.returncode != 0 or not lines:
            sys.exit(f"N = {n} failed (exit {res.returncode}):\n{res.stderr[-3000:]}")
        d = json.loads(lines[-1][5:])
        rows.append(d)
        st, pk, ps = d["stages"], d["stage_peaks"], d["passes"]
        grow = st["eq1"] + st["eq3"]
        rate = (ps["eq1"] + ps["eq3"]) / grow / d["fwd"]
        ratio = sum(ps.values()) / d["wall"] / d["fwd"]
        rest = max(pk[k] for k in STAGES[2:])
        print(
            f"  {n:6d}{sum(ps.values()):8d}{d['wall']:8.1f}{grow:9.1f}{grow / n * 1000:9.2f}{d['wall'] - grow:7.1f}"
            f"{rate:9.1%}{ratio:8.1%}{pk['eq1'] / MB:7.0f}{pk['eq3'] / MB:7.0f}{rest / MB:7.0f}{d['peak'] / MB:8.0f}",
            flush=True,
        )
    a, b = rows[0], rows[-1]
    ga, gb = a["stages"]["eq1"] + a["stages"]["eq3"], b["stages"]["eq1"] + b["stages"]["eq3"]
    pa, pb = (max(r["stage_peaks"]["eq1"], r["stage_peaks"]["eq3"]) for r in (a, b))
    print(
        f"  N x{b['n'] / a['n']:g}: eq1 + eq3 time x{gb / ga:.2f} (x{gb * b['fwd'] / (ga * a['fwd']):.2f} at "
        f"equal forward-only speed), their peak RSS {(pb - pa) / MB:+.0f} MB, "
        f"the whole audit's {(b['peak'] - a['peak']) / MB:+.0f} MB"
    )
    print(
        f"  peak memory: {rows[0]['method']}, per stage, after a warm-up. 'wall s': the stage times "
        "(forward-only samples excluded); 'rest': composites, maps and Eq. 4 (C and P do not grow with N); "
        "'eq1+eq3 / fwd': their passes/s over the forward-only img/s measured in the same process (constant: "
        "time linear in N at a given machine speed); 'ratio': as in the default run"
    )


if __name__ == "__main__":
    main()
