"""nbval settings for the notebooks: stderr carries progress bars and warnings, never results.

Training cells print tqdm progress to stderr only when a model is actually trained, so stderr differs
between a warm and a cold cache; results go to stdout and rich outputs, which nbval still compares.
Errors are never hidden: an exception is an 'error' output, and nbval fails the cell on it.
"""
import nbval.plugin as _nbval

_transform = _nbval.transform_streams_for_comparison


def _without_stderr(outputs):
    return [o for o in _transform(outputs) if "stderr" not in o]


_nbval.transform_streams_for_comparison = _without_stderr
