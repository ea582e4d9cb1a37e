"""nbval settings for the notebooks: stderr carries progress bars and warnings, never results.

Training cells show tqdm progress (on stderr, or as an ipywidget inside a kernel) only when a model is
actually trained, so both differ between a warm and a cold cache and are left out of the comparison;
results go to stdout and rich outputs, which nbval still compares.
Errors are never hidden: an exception is an 'error' output, and nbval fails the cell on it.
"""
import nbval.plugin as _nbval

_transform = _nbval.transform_streams_for_comparison


def _is_widget(output) -> bool:
    return "application/vnd.jupyter.widget-view+json" in (output.get("data") or {})


def _without_stderr(outputs):
    """Drop stderr and progress-bar widgets (a cold cache shows tqdm as a widget in a kernel)."""
    return [o for o in _transform(outputs) if "stderr" not in o and not _is_widget(o)]


_nbval.transform_streams_for_comparison = _without_stderr
