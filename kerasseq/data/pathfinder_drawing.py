"""How a Pathfinder image is drawn, by the rules that
`kerasseq.data.pathfinder`'s docstring states: a contour is a walk of
one-pixel steps in exact integer arithmetic, cut into dashes, and placed
where it keeps the separation and marker rules; `draw_image` places the
two main contours and the distractors of one image.
"""

import numpy as np

MARKER_VALUE = 255
GAP = 1
MIN_CONTOUR_DISTANCE = 3
MARGIN = 1

# positions are integers in units of 1 / _SCALE pixel, so the walk is
# exact integer arithmetic: the same pixels on every machine
_SCALE = 1024
# one attempt draws a contour; `draw_image` gives up (and `generate`
# starts the image again) after this many failed attempts at one contour
_TRIES_PER_CONTOUR = 100


def _direction_table():
    """One walk step for each whole-degree heading, `(360, 2)` int64
    `(row, col)` in 1 / _SCALE pixel: one pixel along the dominant axis.

    No entry is within 1e-3 of a rounding tie, so the last-bit differences
    of `sin` and `cos` between machines cannot change the table.
    """
    angles = np.deg2rad(np.arange(360))
    steps = np.stack([np.sin(angles), np.cos(angles)], axis=-1)
    steps /= np.max(np.abs(steps), axis=-1, keepdims=True)
    return np.rint(_SCALE * steps).astype(np.int64)


_STEPS = _direction_table()


def disc(radius):
    """Offsets `(K, 2)` of the pixels within `radius` of a pixel centre."""
    reach = int(np.floor(radius))
    grid = np.arange(-reach, reach + 1)
    rows, cols = np.meshgrid(grid, grid, indexing="ij")
    inside = rows**2 + cols**2 <= radius**2
    return np.stack([rows[inside], cols[inside]], axis=-1)


def _dilate(mask, reach):
    """Pixels within Chebyshev distance `reach` of a `True` pixel."""
    size = mask.shape[0]
    padded = np.pad(mask, reach)
    out = np.zeros_like(mask)
    for dr in range(2 * reach + 1):
        for dc in range(2 * reach + 1):
            out |= padded[dr : dr + size, dc : dc + size]
    return out


def _chebyshev(a, b):
    """Chebyshev distances between pixel sets `(A, 2)` and `(B, 2)`."""
    return np.max(np.abs(a[:, None, :] - b[None, :, :]), axis=-1)


def _walk(rng, num_dashes, paddle_length, max_turn):
    """Draws the shape of one contour, from a start near pixel `(0, 0)`.

    Returns:
        `(pixels, dashes)`: the lit pixels `(L, 2)` (row, col) in walk
        order and the dash index of each `(L,)`.
    """
    period = paddle_length + GAP
    num_points = (num_dashes - 1) * period + paddle_length
    turns = rng.integers(-max_turn, max_turn + 1, num_dashes - 1)
    headings = rng.integers(360) + np.concatenate([[0], np.cumsum(turns)])
    # step s leaves point s; it keeps the heading of the dash point s is in
    # or follows, so the heading turns at the first pixel of a dash
    step_headings = np.repeat(headings % 360, period)[: num_points - 1]
    start = rng.integers(-(_SCALE // 2), _SCALE // 2, 2)
    positions = start + np.cumsum(
        np.concatenate([np.zeros((1, 2), np.int64), _STEPS[step_headings]]),
        axis=0,
    )
    pixels = (positions + _SCALE // 2) // _SCALE
    index = np.arange(num_points)
    lit = index % period < paddle_length
    return pixels[lit], index[lit] // period


def _try_contour(rng, num_dashes, marked_ends, state, settings):
    """Draws one contour's shape and a place for it that keeps the rules.

    Args:
        rng: the generator's `np.random.Generator`.
        num_dashes: dashes in the contour.
        marked_ends: the indices of the lit pixels that carry a marker:
            `()`, `(0,)` or `(0, -1)`.
        state: dict of the image so far: `"blocked"`, `(S, S)` bool, the
            pixels too close to the contours placed, and `"markers"`,
            `(M, 2)`, their marker centres.
        settings: dict of the generator's arguments.

    Returns:
        `(footprint, centres)`: the contour's pixels `(F, 2)`, markers
        included, and its marker centres `(len(marked_ends), 2)`; or
        `None` when the shape breaks a rule or has no free place.
    """
    size = settings["image_size"]
    min_distance = settings["min_marker_distance"]
    pixels, dashes = _walk(
        rng, num_dashes, settings["paddle_length"], settings["max_turn"]
    )
    centres = pixels[list(marked_ends)]
    disc = settings["disc"]
    footprint = np.concatenate([pixels] + [c + disc for c in centres])
    # the shifts that keep the shape inside the margins
    low = MARGIN - footprint.min(axis=0)
    high = size - 1 - MARGIN - footprint.max(axis=0)
    if (low > high).any():
        return None
    if len(centres) == 2 and _chebyshev(centres[:1], centres[1:]) < (
        min_distance
    ):
        return None
    # a marker counts with the dash it sits on
    owners = np.concatenate(
        [dashes] + [np.full(len(disc), dashes[end]) for end in marked_ends]
    )
    other_dash = owners[:, None] != owners[None, :]
    if (_chebyshev(footprint, footprint)[other_dash] < 2).any():
        return None
    rows = np.arange(low[0], high[0] + 1)[:, None, None]
    cols = np.arange(low[1], high[1] + 1)[None, :, None]
    # free[i, j]: the shape moved by (rows[i], cols[j]) keeps its distance
    # from the contours and markers placed
    free = ~state["blocked"][
        rows + footprint[:, 0], cols + footprint[:, 1]
    ].any(axis=-1)
    for centre in centres:
        for other in state["markers"]:
            row_gap = np.abs(rows[:, :, 0] + centre[0] - other[0])
            col_gap = np.abs(cols[:, :, 0] + centre[1] - other[1])
            free &= np.maximum(row_gap, col_gap) >= min_distance
    places = np.argwhere(free)
    if len(places) == 0:
        return None
    row, col = places[rng.integers(len(places))]
    shift = np.array([rows[row, 0, 0], cols[0, col, 0]])
    return footprint + shift, centres + shift


def draw_image(rng, label, settings):
    """One image `(S, S)` uint8 with its markers placed for `label`, or
    `None` when a contour found no place."""
    size = settings["image_size"]
    main_ends = [(0, -1), ()] if label == 1 else [(0,), (0,)]
    plan = [(settings["contour_length"], ends) for ends in main_ends]
    plan += [(settings["distractor_length"], ())] * settings["num_distractors"]
    state = {
        "blocked": np.zeros((size, size), bool),
        "markers": np.zeros((0, 2), np.int64),
    }
    image = np.zeros((size, size), np.uint8)
    marker_pixels = []
    for num_dashes, ends in plan:
        for _ in range(_TRIES_PER_CONTOUR):
            found = _try_contour(rng, num_dashes, ends, state, settings)
            if found is not None:
                break
        else:
            return None
        footprint, centres = found
        image[footprint[:, 0], footprint[:, 1]] = settings["contour_value"]
        mask = np.zeros((size, size), bool)
        mask[footprint[:, 0], footprint[:, 1]] = True
        state["blocked"] |= _dilate(mask, MIN_CONTOUR_DISTANCE - 1)
        state["markers"] = np.concatenate([state["markers"], centres])
        marker_pixels += [c + settings["disc"] for c in centres]
    for disc in marker_pixels:
        image[disc[:, 0], disc[:, 1]] = MARKER_VALUE
    return image
