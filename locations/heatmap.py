"""Where people stood in a camera's view: pure functions over stored person boxes."""

from collections.abc import Iterable, Sequence

Box = Sequence[float]  # [x1, y1, x2, y2, confidence] in frame pixels


def foot_point(box: Box) -> tuple[float, float]:
    """The middle of the box's bottom edge: where the person stands on the ground plane."""
    x1, _, x2, y2 = box[:4]
    return (x1 + x2) / 2, y2


def occupancy_grid(frames: Iterable[tuple[int, int, Sequence[Box]]], cols: int, rows: int) -> list[list[int]]:
    """Count foot points per cell of a `rows` x `cols` grid over the view.

    `frames` yields (width, height, boxes) per reading, so frames of different sizes (a camera
    whose resolution changed) still land on the same grid.
    """
    grid = [[0] * cols for _ in range(rows)]
    for width, height, boxes in frames:
        if width <= 0 or height <= 0:
            continue
        for box in boxes:
            x, y = foot_point(box)
            col = min(cols - 1, max(0, int(x / width * cols)))
            row = min(rows - 1, max(0, int(y / height * rows)))
            grid[row][col] += 1
    return grid
