"""The command's entry point: check the arguments, load the models and the world, run the audit, exit status."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Sequence

from .args import Checked, ModelSpec, UsageError, check_folder_names, validate
from .loading import _first_line, _plain, check_cam_layer, load_model
from .outputs import data_inventory, write_outputs
from .parser import PROG, build_parser
from .run import AuditRun, StageBar


#: ``load_world``'s argument names as the command's flags (in its error messages)
_WORLD_FLAGS = (
    ("source_root", "--source-dir"),
    ("target_root", "--target-dir"),
    ("target_model", "--target-model"),
    ("baseline_model", "--baseline"),
)


def _new_warnings(caught: list[warnings.WarningMessage], seen: list[str], *, deprecations: bool = True) -> list[str]:
    """The texts of ``caught`` not in ``seen`` (on one line each), appended to ``seen``."""
    new = []
    for w in caught:
        text = " ".join(str(w.message).split())
        if text not in seen and (deprecations or not issubclass(w.category, (DeprecationWarning, FutureWarning))):
            seen.append(text)
            new.append(text)
    return new


def _load(checked: Checked) -> tuple[Any, dict[str, dict[str, Any]], list[str]]:
    """Models and world (every problem found here is a UsageError: exit 2)."""
    import torch

    a = checked.args
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device", f"{a.device!r} was asked for but CUDA is not available: use cpu or auto")
    if a.device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UsageError("--device", "'mps' was asked for but MPS is not available: use cpu or auto")
    from ..profiles import get_profile

    size = a.image_size if a.image_size is not None else get_profile("custom", a.profile).image_size
    opts: dict[str, Any] = dict(normalize=not a.no_normalize, image_size=size, trust_pickle=a.trust_pickle)

    def load(spec: ModelSpec, weights: str | None, flag: str, head: str | None = None, download: bool = False):
        wflag = flag.replace("-model", "") + "-weights"  # --source-weights, --target-weights, --baseline-weights
        return load_model(spec, weights, flag=flag, wflag=wflag, head=head, download=download, **opts)

    source, s_info = load(checked.source, a.source_weights, "--source-model", a.head, a.download)
    n_out = s_info["outputs"]
    if a.source_classes is None or a.source_classes == "imagenet":
        if a.source_classes is None and n_out != 1000:
            raise UsageError(
                "--source-classes",
                f"is needed: the source model has {n_out} outputs (pass a text file "
                "with one class name per line, in output order)",
            )
        from ..worlds.lite_models import imagenet_classes

        names = imagenet_classes()
        if n_out != len(names):
            raise UsageError(
                "--source-classes",
                f"'imagenet' has {len(names)} names but the source model has {n_out} "
                "outputs: pass a text file with one name per output",
            )
    else:
        names = checked.class_names or []
        if len(names) != n_out:
            raise UsageError(
                "--source-classes",
                f"{a.source_classes!r} has {len(names)} names but the source model has "
                f"{n_out} outputs: pass one name per line for every output, in order",
            )
    check_folder_names(list(checked.source_folders), names, a.source_dir)
    if a.k is not None and a.k > n_out:
        raise UsageError("--k", f"must be at most the number of source classes ({n_out}); got {a.k}")
    target, t_info = load(checked.target, a.target_weights, "--target-model", a.head)
    if _plain(target, t_info["head"]) != _plain(source, s_info["head"]):
        raise UsageError(
            "--head",
            f"the head found in the target model ({_plain(target, t_info['head'])!r}) is not "
            f"the source model's ({_plain(source, s_info['head'])!r}): pass --head NAME",
        )
    n_t = len(checked.target_dir["classes"])
    if t_info["outputs"] != n_t:
        raise UsageError(
            "--target-model",
            f"has {t_info['outputs']} outputs but --target-dir has {n_t} classes "
            f"{checked.target_dir['classes']}: M^t must have one output per target class folder",
        )
    models = {"source": source, "target": target}
    infos = {"M^s (source)": s_info, "M^t (target)": t_info}
    baseline = None
    if isinstance(checked.baseline, ModelSpec):
        baseline, b_info = load(checked.baseline, a.baseline_weights, "--baseline")
        if b_info["outputs"] != n_t:
            raise UsageError(
                "--baseline",
                f"has {b_info['outputs']} outputs but --target-dir has {n_t} classes: "
                "M^b must have one output per target class folder",
            )
        models["baseline"] = baseline
        infos["M^b (baseline, given)"] = b_info
    elif checked.baseline == "scratch":
        infos["M^b (baseline, scratch)"] = {
            "spec": "scratch: the source architecture, re-initialised",
            "format": "trained here",
            "architecture": s_info["architecture"],
            "head": s_info["head"],
            "outputs": n_t,
        }
    cam_layer, cam_choice = check_cam_layer(models, a.cam_layer, size)
    s_head = source.get_submodule(s_info["head"])
    checked.choices = {
        "head": {
            "name": _plain(source, s_info["head"]),
            "how": s_info["head_how"],
            "module": f"nn.Linear {s_head.in_features}->{s_head.out_features}",
        },
        "cam_layer": cam_choice,
    }
    from ..identities import weights_fingerprint

    for role, key in (("source", "M^s (source)"), ("target", "M^t (target)"), ("baseline", "M^b (baseline, given)")):
        if role in models:
            infos[key]["weights_fingerprint"] = weights_fingerprint(models[role])[:12]
    from ..worlds import load_world

    overrides: dict[str, Any] = {} if a.image_size is None else {"image_size": a.image_size}
    if a.batch_size is not None:
        overrides.update(scratch={"batch_size": a.batch_size}, finetune={"batch_size": a.batch_size})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            world = load_world(
                "custom",
                a.profile,
                a.seed,
                source_model=source,
                source_classes=names,
                target_root=checked.target_dir["root"],
                source_root=str(Path(a.source_dir).expanduser()),
                head=s_info["head"],
                cam_layer=cam_layer,
                device=a.device,
                progress=not a.quiet,
                cache=not a.no_cache,
                target_model=target,
                baseline_model=baseline,
                **overrides,
            )
        except (ValueError, FileNotFoundError) as e:
            msg = str(e)
            flag = next((f for k, f in (*_WORLD_FLAGS, ("head", "--head")) if k in msg), "")
            for old, new in (*_WORLD_FLAGS, ("source_classes", "--source-classes")):
                msg = msg.replace(old, new)
            raise UsageError(flag, msg) from None
    checked.models_info = infos
    return world, infos, _new_warnings(caught, [])


def audit_main(args: argparse.Namespace, command: str) -> int:
    prog = f"{PROG} audit"
    t0 = time.perf_counter()
    from .. import distributed as _dist

    _dist.init_from_env()  # under torchrun: the batched passes shard across the processes
    try:
        checked = validate(args)
        world, infos, seen = _load(checked)
    except UsageError as e:
        print(e.line(prog), file=sys.stderr)
        return 2
    for text in seen:
        print(f"{prog}: warning: {text}", file=sys.stderr)
    if _dist.rank() == 0:
        head, cam = checked.choices["head"], checked.choices["cam_layer"]
        print(f"{prog}: head: {head['name']} ({head['module']}, {head['how']})")
        shape = f"output {cam['output']}, " if cam["output"] else ""
        print(f"{prog}: cam layer: {cam['name']} ({shape}{cam['how']})", flush=True)
    stage = "setup"
    try:
        run = AuditRun(checked, world, infos, seen)
        bar = StageBar(run.stage_names(), enabled=not args.quiet)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                run.run(bar)
                stage = "report"
                bar.start("report")
                data_info = data_inventory(checked, world)
                # every process computed the same results: only the first writes them
                files = write_outputs(
                    run, checked, data_info, time.perf_counter() - t0, command, write=_dist.rank() == 0
                )
                bar.done()
            finally:
                stage = bar.current or stage
                bar.close()
        for text in _new_warnings(caught, seen, deprecations=False):
            print(f"{prog}: warning: {text}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - any failure of the audit: one line, exit 1
        if args.verbose:
            traceback.print_exc()
        print(
            f"{prog}: failed during {stage}: {_first_line(e)}"
            + ("" if args.verbose else " (rerun with --verbose for the traceback)"),
            file=sys.stderr,
        )
        return 1
    wall = time.perf_counter() - t0
    if _dist.rank() != 0:
        return 0
    det = run.results_json.get("detection") or {}
    print(
        f"{prog}: |F| = {len(run.F)}, |L| = {len(run.L)}, "
        f"Eq. 5 AUROC = {det.get('eq5_auroc', float('nan')) if det else 'n/a'}; "
        f"{len(files)} files in {checked.out} ({wall:.1f} s)"
    )
    print(f"{prog}: report: {checked.out / 'report.html'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lingerlab`` console script and of ``python -m lingerlab``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help (0) or a bad argument (2)
        return int(e.code or 0)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    command = " ".join(shlex.quote(x) for x in [PROG, *argv])
    return audit_main(args, command)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
