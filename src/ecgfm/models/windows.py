"""The sliding-window rule shared by training (validation scoring), prediction and ensembles, defined once."""
from __future__ import annotations


def window_starts(length: int, window: int, stride: int | None = None) -> list[int]:
    """Start samples of sliding windows covering ``length`` samples; the last window ends at the record's end.

    ``stride`` defaults to half a window.
    """
    stride = stride or max(window // 2, 1)
    if length <= window:
        return [0]
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts
