"""Hidden checks of the instance segmentation assignment (notebooks/instance/instance.ipynb), one section per unit.

Every check sends probes to the student's worker and compares the plain data that comes back with the
same probe run on the reference solution here, or, where the contract leaves freedom (the watershed's
regions), with properties every correct answer has. The points of a unit's checks add up to the unit's
points in the solution notebook. Inputs are built here, in the trusted process, and sent as arguments.
"""

from grader.harness import Feedback, assert_close, expect, expect_tensor, unit

TIMEOUT = 30  # seconds; the first call may import SciPy / scikit-image / OpenCV in the worker

# --- probes -----------------------------------------------------------------------------------


def probe_targets(ns, objects, label_mask, classes):
    out = ns["instance_targets"]([dict(item) for item in objects], label_mask.clone(), list(classes))
    if type(out) is not dict:
        return {"type": type(out).__name__}
    return {"type": "dict", **{key: out[key] for key in ("boxes", "labels", "masks") if key in out}}


def probe_components(ns, class_mask, min_area):
    return ns["split_instances"](class_mask.clone(), min_area)


def probe_watershed(ns, class_mask, min_distance):
    return ns["watershed_instances"](class_mask.clone(), min_distance)


def probe_iou(ns, a, b):
    return ns["mask_iou"](a.clone(), b.clone())


def probe_match(ns, pred_masks, scores, gt_masks, iou_threshold):
    return ns["match_instances"](pred_masks.clone(), scores.clone(), gt_masks.clone(), iou_threshold)


def probe_ap(ns, tp, scores, n_gt):
    value = ns["average_precision"](tp.clone(), scores.clone(), n_gt)
    return {"type": type(value).__name__, "value": value if type(value) in (int, float) else None}


# --- inputs (built here and sent; never computed in the worker) ----------------------------------


def _generator(seed):
    import torch

    return torch.Generator().manual_seed(seed)


def _fraction(pixel, size, generator):
    """A fraction whose `round(fraction * size)` is `pixel`, off the pixel edge by 0.2-0.4 either way (no .5 ties)."""
    import torch

    offset = [-0.35, -0.25, 0.2, 0.3, 0.4][int(torch.randint(0, 5, (), generator=generator))]
    return (pixel + offset) / size


def _facade(seed, height=24, width=30, n_objects=7, classes=(2, 3, 6), extras=True):
    """A label mask with rectangles of instance classes (some partly hidden), and its objects.

    Returns: (objects, label_mask int64 (H, W), classes).
    """
    import torch

    generator = _generator(seed)
    label_mask = torch.randint(0, 2, (height, width), generator=generator)  # background / facade
    label_mask[torch.rand(height, width, generator=generator) < 0.05] = 255
    objects = []
    for _ in range(n_objects):
        label = classes[int(torch.randint(0, len(classes), (), generator=generator))]
        h, w = (int(v) for v in torch.randint(2, 8, (2,), generator=generator))
        top = int(torch.randint(0, height - h + 1, (), generator=generator))
        left = int(torch.randint(0, width - w + 1, (), generator=generator))
        # the painted pixels: most of the rectangle, sometimes with a few rows/columns hidden by another class
        label_mask[top : top + h, left : left + w] = label
        if torch.rand((), generator=generator) < 0.4:
            label_mask[top + h - 1, left : left + w] = 5  # a sill hides the lowest row
        # the annotated rectangle: a pixel larger or smaller on some sides
        grow = [int(v) for v in torch.randint(-1, 2, (4,), generator=generator)]
        t, lft = max(0, top - grow[0]), max(0, left - grow[1])
        b, r = min(height, top + h + grow[2]), min(width, left + w + grow[3])
        box = (_fraction(lft, width, generator), _fraction(t, height, generator))
        box += (_fraction(r, width, generator), _fraction(b, height, generator))
        objects.append({"label": label, "name": "thing", "box": box})
    if extras:
        objects.insert(2, {"label": 9, "name": "deco", "box": (0.1, 0.1, 0.6, 0.6)})  # not an instance class
        objects.append({"label": classes[0], "name": "off", "box": (-0.07, 0.8, 0.12, 1.09)})  # partly outside
    return objects, label_mask, list(classes)


def _targets(sub, ref, objects, label_mask, classes, what):
    actual = sub.call(probe_targets, objects, label_mask, classes, timeout=TIMEOUT)
    expected = ref.call(probe_targets, objects, label_mask, classes)
    expect(actual.get("type") == "dict", f"{what}: instance_targets must return a dict, got {actual.get('type')}")
    missing = [key for key in ("boxes", "labels", "masks") if key not in actual]
    expect(not missing, f"{what}: the dict lacks {missing}")
    return actual, expected


# --- inst_targets (2 points) ----------------------------------------------------------------------


@unit(
    "inst_targets",
    points=0.75,
    message="The masks or labels differ: an instance is the pixels of its class inside its rectangle, the "
    "rectangle spanning columns round(x1 * W) .. round(x2 * W) - 1 and rows round(y1 * H) .. round(y2 * H) - 1 "
    "(clipped to the image), its label 1 + the class's position in `classes`, in the order of `objects`.",
)
def test_targets_masks_and_labels(sub, ref):
    """Are the masks and labels right on facades with rough rectangles, hidden rows and several class lists?"""
    import torch

    for i, classes in enumerate(((2, 3, 6), (6, 2), (11, 2, 3, 6), (2,))):
        objects, label_mask, classes = _facade(10 + i, classes=classes)
        actual, expected = _targets(sub, ref, objects, label_mask, classes, f"case {i + 1}")
        labels = expect_tensor(actual["labels"], what=f"case {i + 1}: labels", shape=expected["labels"].shape)
        expect(torch.equal(labels.long(), expected["labels"]), f"case {i + 1}: the labels are wrong")
        masks = expect_tensor(actual["masks"], what=f"case {i + 1}: masks", shape=expected["masks"].shape)
        expect(torch.equal(masks.to(torch.uint8), expected["masks"]), f"case {i + 1}: the masks are wrong")


@unit(
    "inst_targets",
    points=0.5,
    message="The boxes differ: x1, y1 = first column and row of the instance's PIXELS (not of its rectangle), "
    "x2, y2 = last column and row + 1 (pixel edges, as COCO's x + w), float32 (N, 4).",
)
def test_targets_boxes(sub, ref):
    """Are the boxes tight around each instance's pixels, with x2/y2 one past the last column/row?"""
    for i in range(4):
        objects, label_mask, classes = _facade(20 + i, height=20 + 3 * i, width=26 + i)
        actual, expected = _targets(sub, ref, objects, label_mask, classes, f"case {i + 1}")
        boxes = expect_tensor(actual["boxes"], what=f"case {i + 1}: boxes", shape=expected["boxes"].shape)
        assert_close(boxes, expected["boxes"], what=f"case {i + 1}: boxes", rtol=0, atol=1e-4)


@unit(
    "inst_targets",
    points=0.5,
    message="Objects that must be left out are kept (or the reverse): classes not in `classes`, empty "
    "rectangles (round(x1 * W) == round(x2 * W)), rectangles without a pixel of their class; rectangles "
    "partly outside the image are clipped, not dropped.",
)
def test_targets_dropped(sub, ref):
    """Are empty rectangles, hidden instances and other classes left out, and rectangles partly outside clipped?"""
    import torch

    objects, label_mask, classes = _facade(30, n_objects=4)
    label_mask[0:4, 0:5] = 1  # facade: the rectangle below holds no window pixel
    objects += [
        {"label": 2, "name": "hidden", "box": (0.01, 0.01, 0.13, 0.13)},
        {"label": 2, "name": "empty", "box": (0.42, 0.3, 0.43, 0.9)},  # zero columns after rounding
        {"label": 3, "name": "flat", "box": (0.2, 0.51, 0.8, 0.52)},  # zero rows after rounding
        {"label": 6, "name": "outside", "box": (0.9, -0.2, 1.3, 0.2)},
    ]
    label_mask[0:5, 27:30] = 6
    actual, expected = _targets(sub, ref, objects, label_mask, classes, "case 1")
    labels = expect_tensor(actual["labels"], what="labels")
    expect(
        labels.shape == expected["labels"].shape,
        f"{labels.shape[0]} instances kept, but {expected['labels'].shape[0]} of the {len(objects)} objects are "
        "instances with pixels",
    )
    masks = expect_tensor(actual["masks"], what="masks", shape=expected["masks"].shape)
    expect(torch.equal(masks.to(torch.uint8), expected["masks"]), "the masks of the kept instances are wrong")


def probe_targets_types(ns, label_mask):
    import torch

    full = ns["instance_targets"]([{"label": 2, "name": "w", "box": (0.1, 0.1, 0.9, 0.9)}], label_mask.clone(), [2])
    empty = ns["instance_targets"]([], label_mask.clone(), [2])
    described = []
    for out in (full, empty):
        if type(out) is not dict:
            described.append(None)
            continue
        described.append(
            {
                key: [str(out[key].dtype), list(out[key].shape)] if isinstance(out.get(key), torch.Tensor) else None
                for key in ("boxes", "labels", "masks")
            }
        )
    return described


@unit(
    "inst_targets",
    points=0.25,
    message="Wrong dtypes or shapes: boxes float32 (N, 4), labels int64 (N,), masks uint8 (N, H, W); with no "
    "instance boxes (0, 4), labels (0,) and masks (0, H, W).",
)
def test_targets_types_and_empty(sub, ref):
    """Are the dtypes float32 / int64 / uint8, and are empty results shaped (0, 4), (0,), (0, H, W)?"""
    import torch

    label_mask = torch.full((9, 11), 2, dtype=torch.int64)
    actual = sub.call(probe_targets_types, label_mask, timeout=TIMEOUT)
    expected = ref.call(probe_targets_types, label_mask)
    for what, a, e in zip(("one instance", "no instance"), actual, expected):
        expect(a is not None, f"{what}: instance_targets must return a dict")
        for key in ("boxes", "labels", "masks"):
            expect(a.get(key) == e[key], f"{what}: {key} is {a.get(key)}, expected {e[key][0]} of shape {e[key][1]}")


# --- inst_components (2 points) ---------------------------------------------------------------------


def _blobs(seed, height=26, width=34, n=9, noise=0.03):
    """A bool map of random rectangles (some touching, some overlapping) and isolated noise pixels."""
    import torch

    generator = _generator(seed)
    class_mask = torch.rand(height, width, generator=generator) < noise
    for _ in range(n):
        h, w = (int(v) for v in torch.randint(1, 8, (2,), generator=generator))
        top = int(torch.randint(0, height - h + 1, (), generator=generator))
        left = int(torch.randint(0, width - w + 1, (), generator=generator))
        class_mask[top : top + h, left : left + w] = True
    return class_mask


def _compare_components(sub, ref, class_mask, min_area, what):
    import torch

    actual = sub.call(probe_components, class_mask, min_area, timeout=TIMEOUT)
    expected = ref.call(probe_components, class_mask, min_area)
    actual = expect_tensor(actual, what=f"{what}: masks", dtype=torch.bool)
    expect(
        actual.shape == expected.shape,
        f"{what}: {actual.shape[0] if actual.dim() == 3 else '?'} components, expected {expected.shape[0]} "
        f"(shape {tuple(expected.shape)})",
    )
    expect(torch.equal(actual, expected), f"{what}: the components or their order differ")


@unit(
    "inst_components",
    points=0.75,
    message="The components differ: every 4-connected group of True pixels is one mask, largest first, "
    "those under min_area dropped.",
)
def test_components_masks(sub, ref):
    """Are the components and their order right on random maps of touching and overlapping rectangles?"""
    for i, min_area in enumerate((1, 1, 3, 6)):
        _compare_components(sub, ref, _blobs(40 + i), min_area, f"case {i + 1} (min_area={min_area})")


@unit(
    "inst_components",
    points=0.5,
    message="Pixels that touch only at a corner must be separate components (4-connectivity: "
    "scipy.ndimage.label's default; cv2.connectedComponents needs connectivity=4).",
)
def test_components_four_connectivity(sub, ref):
    """Are pixels touching only diagonally kept apart (4-connectivity)?"""
    import torch

    staircase = torch.zeros(12, 12, dtype=torch.bool)
    for i in range(0, 10, 2):
        staircase[i : i + 2, i : i + 2] = True  # 2x2 squares touching at corners
    staircase[10, 0] = staircase[11, 1] = True
    _compare_components(sub, ref, staircase, 1, "a staircase of squares touching at corners")
    _compare_components(sub, ref, _blobs(50, noise=0.25, n=3), 1, "a noisy map")


@unit(
    "inst_components",
    points=0.5,
    message="min_area or the order is off: a component of exactly min_area pixels is kept; the largest comes "
    "first, and components of equal area keep the row-major order of their first pixel.",
)
def test_components_min_area_and_ties(sub, ref):
    """Is a component of exactly min_area kept, and are components of equal area in row-major order of their first pixel?"""
    import torch

    ties = torch.zeros(14, 16, dtype=torch.bool)
    for top, left in ((9, 1), (1, 10), (1, 1), (9, 10), (5, 6)):  # five 3x3 squares: equal areas
        ties[top : top + 3, left : left + 3] = True
    ties[12:14, 0] = True  # area 2
    for min_area in (1, 2, 3, 9, 10):
        _compare_components(sub, ref, ties, min_area, f"equal squares, min_area={min_area}")


@unit(
    "inst_components",
    points=0.25,
    message="An empty map must give a bool (0, H, W) tensor, a full map one component.",
)
def test_components_empty_and_full(sub, ref):
    """Does an empty map give (0, H, W) and a full one a single component?"""
    import torch

    _compare_components(sub, ref, torch.zeros(7, 9, dtype=torch.bool), 1, "an empty map")
    _compare_components(sub, ref, torch.ones(7, 9, dtype=torch.bool), 1, "a full map")


# --- inst_watershed (2 points) -----------------------------------------------------------------------
# Regions depend on how ties and plateaus are flooded, so these checks test what every correct answer
# shares (a partition of the class pixels, necks split, ridges kept whole), not the reference's pixels.


def _watershed_masks(sub, class_mask, min_distance, what):
    import torch

    masks = sub.call(probe_watershed, class_mask, min_distance, timeout=TIMEOUT)
    masks = expect_tensor(masks, what=f"{what}: masks", dtype=torch.bool)
    expect(
        masks.dim() == 3 and tuple(masks.shape[1:]) == tuple(class_mask.shape),
        f"{what}: masks should be (K, {class_mask.shape[0]}, {class_mask.shape[1]}), got {tuple(masks.shape)}",
    )
    return masks


def _expect_partition(masks, class_mask, what):
    import numpy as np
    import torch
    from scipy import ndimage

    expect(bool((masks.sum(0) <= 1).all()) if len(masks) else True, f"{what}: instances overlap")
    covered = masks.any(0) if len(masks) else torch.zeros_like(class_mask)
    expect(
        torch.equal(covered, class_mask),
        f"{what}: {int((class_mask & ~covered).sum())} class pixels are in no instance and "
        f"{int((covered & ~class_mask).sum())} instance pixels are not class pixels",
    )
    expect(bool((masks.flatten(1).sum(1) > 0).all()) if len(masks) else True, f"{what}: an instance is empty")
    for mask in masks:  # one connected piece (8-neighbours): a marker id reused in two components is not
        _, pieces = ndimage.label(mask.numpy(), structure=np.ones((3, 3)))
        expect(pieces == 1, f"{what}: an instance is made of {pieces} separate pieces")


def _best_iou(masks, shape):
    inter = (masks & shape).flatten(1).sum(1).float()
    union = (masks | shape).flatten(1).sum(1).float()
    return float((inter / union).max()) if len(masks) else 0.0


@unit(
    "inst_watershed",
    points=0.75,
    message="The instances must partition the class pixels: non-empty, disjoint, each one connected piece, "
    "together exactly the True pixels. A component without a peak of its own must become one instance, pixels "
    "on cv2.watershed's borders (-1) must join a region, and nothing may leave the class pixels.",
)
def test_watershed_partition(sub, ref):
    """Do the instances partition the class pixels on random maps (tiny components, blobs on the border)?"""
    import torch

    cases = [(_blobs(60 + i, noise=0.02 + 0.03 * i), 1 + i % 3) for i in range(4)]
    border = torch.zeros(20, 24, dtype=torch.bool)
    border[0:9, 0:12] = border[12:20, 15:24] = border[15, 2] = border[19, 0] = True
    cases += [(border, 3), (torch.ones(6, 8, dtype=torch.bool), 2), (torch.zeros(5, 6, dtype=torch.bool), 2)]
    # Peakless components last in raster order: two single pixels just below a square, within min_distance of
    # its higher ground (a range over the component ids that stops short leaves them out).
    tail = torch.zeros(16, 16, dtype=torch.bool)
    tail[0:9, 0:9] = tail[10, 4] = tail[10, 7] = True
    cases.append((tail, 4))
    for i, (class_mask, min_distance) in enumerate(cases):
        what = f"case {i + 1} (min_distance={min_distance})"
        _expect_partition(_watershed_masks(sub, class_mask, min_distance, what), class_mask, what)


def _necked(height, width, size, neck, gap, vertical=False):
    """Two size x size squares `gap` apart, joined by a `neck`-pixel-wide bridge. Returns: (map, square 1, square 2)."""
    import torch

    first = torch.zeros(height, width, dtype=torch.bool)
    second = first.clone()
    first[2 : 2 + size, 2 : 2 + size] = True
    second[2 : 2 + size, 2 + size + gap : 2 + 2 * size + gap] = True
    class_mask = first | second
    middle = 2 + size // 2 - neck // 2
    class_mask[middle : middle + neck, 2 + size : 2 + size + gap] = True
    if vertical:
        return class_mask.T.contiguous(), first.T.contiguous(), second.T.contiguous()
    return class_mask, first, second


@unit(
    "inst_watershed",
    points=0.5,
    message="Two blobs joined by a thin neck must become two instances (markers at the peaks of the distance "
    "transform, watershed of -distance restricted to the class pixels); separate blobs one instance each.",
)
def test_watershed_splits_necks(sub, ref):
    """Do two squares joined by a thin neck give two instances close to the squares, and separate squares one each?"""
    import torch

    for i, (size, neck, gap, vertical, min_distance) in enumerate(
        ((15, 3, 5, False, 3), (12, 2, 4, True, 2), (18, 4, 3, False, 4), (11, 1, 6, True, 3))
    ):
        class_mask, first, second = _necked(2 * size + gap + 6, 2 * size + gap + 6, size, neck, gap, vertical)
        what = f"case {i + 1}: two {size}x{size} squares joined by a {neck}-pixel neck (min_distance={min_distance})"
        masks = _watershed_masks(sub, class_mask, min_distance, what)
        expect(len(masks) == 2, f"{what}: expected 2 instances, got {len(masks)}")
        expect(
            min(_best_iou(masks, first), _best_iou(masks, second)) >= 0.8,
            f"{what}: the instances are not the two squares",
        )
    pair, _, _ = _necked(36, 36, 15, 3, 5)
    twice = torch.cat([pair, torch.zeros(36, 3, dtype=torch.bool), pair.flip(0)], dim=1)  # two components
    masks = _watershed_masks(sub, twice, 3, "two separate pairs of necked squares")
    expect(len(masks) == 4, f"two separate pairs of necked squares: expected 4 instances, got {len(masks)}")
    apart = torch.zeros(24, 30, dtype=torch.bool)
    squares = [(1, 1, 9), (1, 14, 7), (14, 3, 8), (15, 20, 5)]
    for top, left, size in squares:
        apart[top : top + size, left : left + size] = True
    masks = _watershed_masks(sub, apart, 2, "four separate squares")
    expect(len(masks) == 4, f"four separate squares: expected 4 instances, got {len(masks)}")
    for top, left, size in squares:
        square = torch.zeros_like(apart)
        square[top : top + size, left : left + size] = True
        expect(any(torch.equal(m, square) for m in masks), "four separate squares: each square should be one instance")


@unit(
    "inst_watershed",
    points=0.5,
    message="A single rectangle must stay one instance: its distance map has a whole ridge of equal maxima, "
    "and neighbouring peaks form ONE marker (label the connected groups of peak pixels; peak_local_max's "
    "single pixels, one every min_distance along the ridge, cut it into pieces).",
)
def test_watershed_ridges(sub, ref):
    """Does a rectangle of any aspect ratio (a ridge of equal peaks) stay one instance?"""
    import torch

    for height, width, min_distance in ((10, 31, 3), (30, 7, 2), (12, 12, 3), (9, 40, 4), (25, 14, 1)):
        class_mask = torch.zeros(height + 6, width + 5, dtype=torch.bool)
        class_mask[3 : 3 + height, 2 : 2 + width] = True
        masks = _watershed_masks(sub, class_mask, min_distance, f"a {height}x{width} rectangle")
        expect(
            len(masks) == 1, f"a {height}x{width} rectangle (min_distance={min_distance}) gave {len(masks)} instances"
        )
    row = torch.zeros(14, 44, dtype=torch.bool)
    for left in (1, 12, 23, 34):
        row[2:12, left : left + 9] = True  # four windows, two pixels apart
    masks = _watershed_masks(sub, row, 2, "a row of four separate windows")
    expect(len(masks) == 4, f"a row of four separate windows gave {len(masks)} instances")


def _discs(height=40, width=52):
    import torch

    rows = torch.arange(height)[:, None].float()
    cols = torch.arange(width)[None, :].float()
    large = (rows - 20) ** 2 + (cols - 18) ** 2 <= 81  # radius 9
    small = (rows - 20) ** 2 + (cols - 30) ** 2 <= 49  # radius 7, centres 12 apart
    return large | small


@unit(
    "inst_watershed",
    points=0.25,
    message="min_distance is not honoured: a pixel is a peak only when no pixel within min_distance of it "
    "(a square of 2 * min_distance + 1) lies farther from the background, so a larger min_distance merges "
    "close peaks.",
)
def test_watershed_min_distance(sub, ref):
    """Do two overlapping discs give two instances with a small min_distance and one with a large one?"""
    class_mask = _discs()
    for min_distance, expected in ((2, 2), (3, 2), (20, 1)):
        masks = _watershed_masks(sub, class_mask, min_distance, f"two overlapping discs, min_distance={min_distance}")
        expect(
            len(masks) == expected,
            f"two overlapping discs (centres 12 apart) with min_distance={min_distance}: expected {expected} "
            f"instance(s), got {len(masks)}",
        )


# --- inst_mask_iou (1 point) -----------------------------------------------------------------------


def _mask_stack(seed, n, height=9, width=11, empty=()):
    import torch

    generator = _generator(seed)
    masks = torch.zeros(n, height, width, dtype=torch.bool)
    for i in range(n):
        if i in empty:
            continue
        h, w = (int(v) for v in torch.randint(1, 7, (2,), generator=generator))
        top = int(torch.randint(0, height - h + 1, (), generator=generator))
        left = int(torch.randint(0, width - w + 1, (), generator=generator))
        masks[i, top : top + h, left : left + w] = True
        masks[i] ^= torch.rand(height, width, generator=generator) < 0.08
    return masks


@unit(
    "inst_mask_iou",
    points=0.5,
    message="mask_iou differs from |a_i & b_j| / |a_i | b_j| for every pair (N, M); the union counts the "
    "intersection once.",
)
def test_iou_values(sub, ref):
    """Is the IoU of every pair right on random masks?"""
    for i, (n, m) in enumerate(((4, 6), (1, 5), (7, 1), (5, 5))):
        a, b = _mask_stack(70 + i, n), _mask_stack(80 + i, m)
        if i == 3:
            b[:2] = a[:2]  # identical pairs: IoU 1
        actual = sub.call(probe_iou, a, b, timeout=TIMEOUT)
        expected = ref.call(probe_iou, a, b)
        actual = expect_tensor(actual, what=f"case {i + 1}: IoU", shape=expected.shape)
        expect(actual.is_floating_point(), f"case {i + 1}: the IoU must be a float tensor, got {actual.dtype}")
        assert_close(actual, expected, what=f"case {i + 1}: IoU", rtol=1e-5, atol=1e-6)


@unit(
    "inst_mask_iou",
    points=0.25,
    message="Empty masks: IoU 0 where both are empty (never NaN), and no mask on one side gives an (N, 0) or "
    "(0, M) tensor.",
)
def test_iou_empty(sub, ref):
    """Is the IoU 0 (not NaN) where both masks are empty, and are N = 0 or M = 0 handled?"""
    a, b = _mask_stack(90, 4, empty=(1, 3)), _mask_stack(91, 3, empty=(0,))
    for what, (x, y) in (("empty masks", (a, b)), ("N = 0", (a[:0], b)), ("M = 0", (a, b[:0]))):
        actual = sub.call(probe_iou, x, y, timeout=TIMEOUT)
        expected = ref.call(probe_iou, x, y)
        actual = expect_tensor(actual, what=f"{what}: IoU", shape=expected.shape)
        assert_close(actual, expected, what=f"{what}: IoU", rtol=1e-5, atol=1e-6)


@unit(
    "inst_mask_iou",
    points=0.25,
    message="mask_iou must accept uint8 masks of 0/1 (as Mask R-CNN's targets) as well as bool, and return floats.",
)
def test_iou_uint8(sub, ref):
    """Does mask_iou give the same float IoU for uint8 0/1 masks as for bool masks?"""
    import torch

    a, b = _mask_stack(92, 5), _mask_stack(93, 4)
    actual = sub.call(probe_iou, a.to(torch.uint8), b.to(torch.uint8), timeout=TIMEOUT)
    expected = ref.call(probe_iou, a, b)
    actual = expect_tensor(actual, what="IoU of uint8 masks", shape=expected.shape)
    expect(actual.is_floating_point(), f"the IoU must be a float tensor, got {actual.dtype}")
    assert_close(actual, expected, what="IoU of uint8 masks", rtol=1e-5, atol=1e-6)


# --- inst_match (2.5 points) ------------------------------------------------------------------------


def _predictions(seed, n_gt=6, n_false=3):
    """Ground truth, and predictions: shifted/trimmed copies (some twice), false ones, random scores."""
    import torch

    generator = _generator(seed)
    gt = _mask_stack(seed, n_gt, height=16, width=18)
    copies = []
    for i in range(n_gt):
        for _ in range(int(torch.randint(0, 3, (), generator=generator))):
            shift = [int(v) for v in torch.randint(-1, 2, (2,), generator=generator)]
            copy = torch.roll(gt[i], shifts=shift, dims=(0, 1))
            copy &= torch.rand(copy.shape, generator=generator) > 0.1
            copies.append(copy)
    preds = torch.cat([torch.stack(copies) if copies else gt[:0], _mask_stack(seed + 500, n_false, 16, 18)])
    preds = preds[torch.randperm(len(preds), generator=generator)]
    scores = torch.rand(len(preds), generator=generator)
    return preds, scores, gt


def _compare_match(sub, ref, preds, scores, gt, threshold, what):
    import torch

    actual = sub.call(probe_match, preds, scores, gt, threshold, timeout=TIMEOUT)
    expected = ref.call(probe_match, preds, scores, gt, threshold)
    actual = expect_tensor(actual, what=f"{what}: matches", shape=expected.shape)
    expect(actual.dtype == torch.int64, f"{what}: the matches must be int64, got {actual.dtype}")
    expect(torch.equal(actual, expected), f"{what}: the matches differ")


@unit(
    "inst_match",
    points=1,
    message="The matches differ: go through the predictions by descending score; each takes the unmatched "
    "ground truth with the highest IoU >= iou_threshold; return per prediction, in the input order, its ground "
    "truth's index or -1.",
)
def test_match_random(sub, ref):
    """Are the matches right on random predictions (duplicates, shifted copies, false ones) at IoU 0.5 and 0.75?"""
    for i in range(4):
        preds, scores, gt = _predictions(100 + i)
        for threshold in (0.5, 0.75):
            _compare_match(sub, ref, preds, scores, gt, threshold, f"case {i + 1} at IoU {threshold}")


def _boxes(shape, *boxes):
    import torch

    masks = torch.zeros(len(boxes), *shape, dtype=torch.bool)
    for mask, (top, left, bottom, right) in zip(masks, boxes):
        mask[top:bottom, left:right] = True
    return masks


@unit(
    "inst_match",
    points=0.5,
    message="Higher scores must be matched first: a lower-scored prediction with a better IoU does not take "
    "a ground truth from a higher-scored one (sort by score, not by IoU or input order).",
)
def test_match_score_order(sub, ref):
    """Does the higher-scored prediction win a ground truth even when a lower-scored one overlaps it better?"""
    import torch

    gt = _boxes((12, 12), (0, 0, 6, 6), (6, 6, 12, 12))
    preds = _boxes((12, 12), (0, 0, 6, 6), (0, 0, 6, 5), (6, 6, 12, 12), (6, 7, 12, 12))
    for scores in (torch.tensor([0.3, 0.9, 0.2, 0.8]), torch.tensor([0.9, 0.3, 0.8, 0.2])):
        _compare_match(sub, ref, preds, scores, gt, 0.5, f"scores {scores.tolist()}")


@unit(
    "inst_match",
    points=0.25,
    message="A pair whose IoU equals iou_threshold matches (IoU >= iou_threshold), one just below does not.",
)
def test_match_threshold_inclusive(sub, ref):
    """Does an IoU exactly at the threshold match?"""
    import torch

    gt = _boxes((8, 8), (0, 0, 2, 4))  # 8 pixels
    preds = _boxes((8, 8), (0, 0, 2, 2), (0, 0, 1, 3))  # IoU 4/8 = 0.5 and 3/8
    _compare_match(sub, ref, preds, torch.tensor([0.5, 0.9]), gt, 0.5, "an IoU of exactly 0.5")
    _compare_match(sub, ref, preds, torch.tensor([0.5, 0.9]), gt, 0.375, "an IoU of exactly 0.375")


@unit(
    "inst_match",
    points=0.25,
    message="When a prediction's best ground truth is already matched, it takes the best remaining one above "
    "the threshold (COCO), instead of becoming a false positive.",
)
def test_match_next_best(sub, ref):
    """Does a prediction whose best ground truth is taken fall back to its next best one above the threshold?"""
    import torch

    gt = _boxes((10, 10), (0, 0, 4, 6), (0, 3, 4, 9))
    preds = _boxes((10, 10), (0, 0, 4, 6), (0, 1, 4, 7))  # the second overlaps both, the first better
    _compare_match(sub, ref, preds, torch.tensor([0.9, 0.8]), gt, 0.3, "two overlapping ground truths")


@unit(
    "inst_match",
    points=0.25,
    message="Ties: predictions of equal score go in their input order (a stable sort), and of two ground "
    "truths with equal IoU the lower index is taken.",
)
def test_match_ties(sub, ref):
    """Are equal scores taken in input order and equal IoUs resolved to the lower ground-truth index?"""
    import torch

    gt = _boxes((8, 12), (0, 0, 4, 4), (0, 4, 4, 8))
    preds = _boxes((8, 12), (0, 2, 4, 6), (0, 2, 4, 6), (0, 3, 4, 7))  # IoU 1/3 with both
    _compare_match(sub, ref, preds, torch.tensor([0.5, 0.5, 0.5]), gt, 0.3, "equal scores and equal IoUs")


@unit(
    "inst_match",
    points=0.25,
    message="No prediction must give an empty int64 (0,) tensor, no ground truth all -1.",
)
def test_match_edges(sub, ref):
    """Are no predictions and no ground truth handled (shape (0,) / all -1, int64)?"""
    preds, scores, gt = _predictions(120)
    _compare_match(sub, ref, preds[:0], scores[:0], gt, 0.5, "no prediction")
    _compare_match(sub, ref, preds, scores, gt[:0], 0.5, "no ground truth")


# --- inst_ap (2.5 points) ---------------------------------------------------------------------------


def _compare_ap(sub, ref, tp, scores, n_gt, what):
    actual = sub.call(probe_ap, tp, scores, n_gt, timeout=TIMEOUT)
    expected = ref.call(probe_ap, tp, scores, n_gt)
    expect(actual["type"] == "float", f"{what}: return a Python float, got {actual['type']}")
    assert_close(actual["value"], expected["value"], what=f"{what}: AP", rtol=1e-6, atol=1e-9)


@unit(
    "inst_ap",
    points=1,
    message="The AP differs: sort by descending score, precision and recall (TP / n_gt) after every prediction, "
    "replace each precision by the best one at this recall or beyond, and sum (recall step) x (that precision).",
)
def test_ap_values(sub, ref):
    """Is the AP right on random detections, with ground truth never found (recall below 1)?"""
    import torch

    for i, (n, n_gt) in enumerate(((20, 12), (50, 30), (7, 3), (35, 60))):
        generator = _generator(140 + i)
        tp = torch.rand(n, generator=generator) < 0.5
        tp[tp.cumsum(0) > n_gt] = False  # a ground truth is found at most once
        scores = torch.rand(n, generator=generator)
        _compare_ap(sub, ref, tp, scores, n_gt, f"case {i + 1} ({n} detections, {n_gt} ground truths)")


@unit(
    "inst_ap",
    points=0.5,
    message="The precision must be interpolated: at each recall, the best precision at this recall OR ANY HIGHER "
    "one (all-point, VOC 2010+), not the raw precision and not 11 recall levels.",
)
def test_ap_interpolation(sub, ref):
    """Does the interpolated envelope lift precision dips (all points, not 11 levels)?"""
    import torch

    tp = torch.tensor([True, False, False, True, True, False, True, False, False, False, True])
    _compare_ap(sub, ref, tp, torch.linspace(1, 0, len(tp)), 7, "a ranking with dips")
    tp = torch.tensor([False, True, True, True, False, True])
    _compare_ap(sub, ref, tp, torch.linspace(1, 0, len(tp)), 4, "a false positive first")


@unit(
    "inst_ap",
    points=0.5,
    message="Edge cases: no ground truth or no prediction gives 0.0, only false positives 0.0, all true "
    "positives ranked first 1.0; never NaN.",
)
def test_ap_edge_cases(sub, ref):
    """Are no ground truth, no prediction, all false and perfect rankings handled?"""
    import torch

    cases = [
        ("no ground truth", torch.tensor([False, False]), torch.tensor([0.4, 0.2]), 0),
        ("no prediction", torch.zeros(0, dtype=torch.bool), torch.zeros(0), 5),
        ("only false positives", torch.zeros(4, dtype=torch.bool), torch.rand(4), 3),
        ("perfect", torch.tensor([True, True, True, False]), torch.tensor([0.9, 0.8, 0.7, 0.1]), 3),
    ]
    for what, tp, scores, n_gt in cases:
        _compare_ap(sub, ref, tp, scores, n_gt, what)


@unit(
    "inst_ap",
    points=0.5,
    message="Predictions of equal score must keep their input order (a stable sort, e.g. "
    "torch.sort(..., stable=True) or np.argsort(..., kind='stable')), and the order must come from the scores.",
)
def test_ap_ties_and_order(sub, ref):
    """Are equal scores kept in input order, and is the ranking taken from the scores, not the input order?"""
    import torch

    tp = torch.tensor([False, True, False, True, True, False])
    _compare_ap(sub, ref, tp, torch.tensor([0.5, 0.5, 0.5, 0.5, 0.9, 0.1]), 4, "equal scores")
    _compare_ap(sub, ref, tp, torch.tensor([0.1, 0.9, 0.2, 0.8, 0.7, 0.3]), 4, "shuffled scores")


# --- dwt_energy (2 points) ---------------------------------------------------------------------------


def probe_energy(ns, instance_ids, n_levels, step):
    return ns["energy_targets"](instance_ids.clone(), n_levels, step)


def _instance_ids(seed, height=22, width=27, n=8, margin=1):
    """Random rectangles of non-consecutive ids (touching, overlapping: later ones win), `margin` pixels from the edge."""
    import torch

    generator = _generator(seed)
    ids = torch.zeros(height, width, dtype=torch.int64)
    for k in range(n):
        h, w = (int(v) for v in torch.randint(2, 9, (2,), generator=generator))
        top = int(torch.randint(margin, height - margin - h + 1, (), generator=generator))
        left = int(torch.randint(margin, width - margin - w + 1, (), generator=generator))
        ids[top : top + h, left : left + w] = 3 * k + 5
    return ids


def _compare_energy(sub, ref, ids, n_levels, step, what):
    import torch

    actual = sub.call(probe_energy, ids, n_levels, step, timeout=TIMEOUT)
    expected = ref.call(probe_energy, ids, n_levels, step)
    actual = expect_tensor(actual, what=f"{what}: levels", shape=expected.shape)
    expect(actual.dtype == torch.int64, f"{what}: the levels must be int64, got {actual.dtype}")
    wrong = actual != expected
    expect(not bool(wrong.any()), f"{what}: {int(wrong.sum())} of {wrong.numel()} pixels have the wrong level")


@unit(
    "dwt_energy",
    points=0.75,
    message="The levels differ: on a pixel of instance k, d = the Euclidean distance to the nearest pixel not of "
    "instance k (the background OR another instance), level = floor(d / step) capped at n_levels - 1; the "
    "background is 0.",
)
def test_energy_touching_instances(sub, ref):
    """Are the levels right on random maps of touching and overlapping instances (step 1, no cap reached)?"""
    for i in range(4):
        _compare_energy(sub, ref, _instance_ids(200 + i), 16, 1.0, f"case {i + 1}")


@unit(
    "dwt_energy",
    points=0.5,
    message="The quantisation is off: level = floor(d / step) (not rounded), capped at n_levels - 1 (the deepest "
    "pixels share the last level).",
)
def test_energy_step_and_cap(sub, ref):
    """Are floor(d / step) and the cap at n_levels - 1 right for several steps and numbers of levels?"""
    ids = _instance_ids(210, height=30, width=34, n=5)
    for n_levels, step in ((16, 2.0), (16, 1.5), (3, 1.0), (4, 2.5), (2, 1.0), (16, 0.5)):
        _compare_energy(sub, ref, ids, n_levels, step, f"n_levels={n_levels}, step={step}")


@unit(
    "dwt_energy",
    points=0.5,
    message="Pixels outside the image count as outside the instance: a window cut by the image's edge has its "
    "boundary there (pad the mask before the distance transform).",
)
def test_energy_image_edge(sub, ref):
    """Is the image's edge a boundary for instances that touch it?"""
    for i in range(3):
        _compare_energy(
            sub, ref, _instance_ids(220 + i, n=10, margin=0), 16, 1.0, f"instances at the edge, case {i + 1}"
        )
    import torch

    full = torch.full((6, 9), 7, dtype=torch.int64)
    _compare_energy(sub, ref, full, 16, 1.0, "one instance covering the whole image")


@unit(
    "dwt_energy",
    points=0.25,
    message="Wrong dtype, or a map without instances / with an instance in two pieces gives the wrong levels: "
    "int64 (H, W), all 0 without instances; every pixel of an instance measures to the nearest pixel outside it.",
)
def test_energy_edge_cases(sub, ref):
    """Do an empty map, a single pixel, and one id in two separate pieces give the right int64 levels?"""
    import torch

    _compare_energy(sub, ref, torch.zeros(5, 7, dtype=torch.int64), 8, 1.0, "no instance")
    dot = torch.zeros(5, 7, dtype=torch.int64)
    dot[2, 3] = 9
    _compare_energy(sub, ref, dot, 8, 1.0, "a single pixel")
    pieces = torch.zeros(12, 16, dtype=torch.int64)
    pieces[1:8, 1:7] = 2
    pieces[3:11, 9:15] = 2  # the same id twice
    pieces[8:11, 2:5] = 40
    _compare_energy(sub, ref, pieces, 8, 1.0, "an instance in two pieces")


# --- dwt_loss (2 points) -------------------------------------------------------------------------------


def probe_loss(ns, logits, levels, object_mask, weights):
    import torch

    logits = logits.clone().requires_grad_(True)
    loss = ns["watershed_energy_loss"](logits, levels.clone(), object_mask.clone(), weights)
    if type(loss) is not torch.Tensor:
        return {"type": type(loss).__name__}
    out = {"type": "Tensor", "shape": list(loss.shape), "float": loss.is_floating_point()}
    if loss.numel() == 1 and loss.is_floating_point():
        out["value"] = float(loss.detach())
        if loss.grad_fn is not None:
            loss.sum().backward()
        out["grad"] = None if logits.grad is None else logits.grad.detach().clone()
    return out


def _loss_case(seed, batch=2, n_levels=5, height=7, width=9, out_of_range=True):
    """Logits, levels (255 outside the object where asked), an object mask with every level present."""
    import torch

    generator = _generator(seed)
    logits = torch.randn(batch, n_levels, height, width, generator=generator) * 2
    # Skewed levels: low ones common, high ones rare, as on windows.
    levels = (torch.rand(batch, height, width, generator=generator) ** 2 * n_levels).long().clamp(max=n_levels - 1)
    objects = torch.rand(batch, height, width, generator=generator) < 0.6
    if out_of_range:
        levels[~objects] = 255
    return logits, levels, objects


def _compare_loss(sub, ref, logits, levels, objects, weights, what, gradient=False):
    actual = sub.call(probe_loss, logits, levels, objects, weights, timeout=TIMEOUT)
    expected = ref.call(probe_loss, logits, levels, objects, weights)
    expect(actual.get("type") == "Tensor", f"{what}: return a torch.Tensor, got {actual.get('type')}")
    expect(actual["shape"] == [] and actual["float"], f"{what}: return a float scalar tensor (shape ())")
    assert_close(actual["value"], expected["value"], what=f"{what}: the loss", rtol=1e-4, atol=1e-6)
    if gradient:
        expect(actual["grad"] is not None, f"{what}: no gradient reaches logits (the loss must be differentiable)")
        assert_close(actual["grad"], expected["grad"], what=f"{what}: the gradient", rtol=1e-4, atol=1e-7)


@unit(
    "dwt_loss",
    points=0.75,
    message="The loss differs with given weights: sum_i w[y_i] * (-log softmax(logits_i)[y_i]) / sum_i w[y_i] "
    "over the object pixels only (cross_entropy(..., weight=w) of the object pixels).",
)
def test_loss_given_weights(sub, ref):
    """Is the weighted cross-entropy over the object pixels right with given weights?"""
    import torch

    for i, weights in enumerate(([1.0, 2.0, 3.0, 4.0, 5.0], [0.5, 0.1, 2.0, 0.0, 7.0], [1.0] * 5)):
        logits, levels, objects = _loss_case(230 + i, out_of_range=False)
        _compare_loss(sub, ref, logits, levels, objects, torch.tensor(weights), f"weights {weights}")


@unit(
    "dwt_loss",
    points=0.5,
    message="weights=None is wrong: w_k = 1 / (number of object pixels of the WHOLE batch at level k), for the "
    "levels present (K weights, also when the highest levels are absent); the loss is then the weighted mean as "
    "with given weights.",
)
def test_loss_inverse_frequency(sub, ref):
    """Are the default weights the inverse frequencies of the levels over the batch's object pixels?"""
    for i in range(4):
        logits, levels, objects = _loss_case(240 + i, batch=3, out_of_range=False)
        if i == 2:
            levels[levels == 3] = 4  # a level absent from the batch
        if i == 3:
            levels = levels.clamp(max=3)  # the highest level absent: still K weights (bincount's minlength)
        _compare_loss(sub, ref, logits, levels, objects, None, f"case {i + 1}")


@unit(
    "dwt_loss",
    points=0.5,
    message="Only the object pixels may count, and the loss must be differentiable: the gradient differs, or the "
    "pixels outside object_mask (whose levels may be anything, e.g. 255) changed or broke the loss.",
)
def test_loss_object_pixels_and_gradient(sub, ref):
    """Are levels outside the object ignored (even 255), and is the gradient with respect to the logits right?"""
    import torch

    logits, levels, objects = _loss_case(250)
    _compare_loss(
        sub, ref, logits, levels, objects, torch.tensor([1.0, 3.0, 2.0, 5.0, 4.0]), "given weights", gradient=True
    )
    _compare_loss(sub, ref, logits, levels, objects, None, "weights=None", gradient=True)


@unit(
    "dwt_loss",
    points=0.25,
    message="Without object pixels the loss must be 0 (not NaN), as a float scalar tensor still connected to "
    "logits (e.g. logits.sum() * 0).",
)
def test_loss_no_object(sub, ref):
    """Does a batch without object pixels give 0, differentiable, never NaN?"""
    import torch

    logits, levels, objects = _loss_case(260)
    none = torch.zeros_like(objects)
    for weights in (None, torch.ones(5)):
        _compare_loss(sub, ref, logits, levels, none, weights, f"no object pixel (weights {weights})", gradient=True)


# --- dwt_instances (2 points) ----------------------------------------------------------------------------
# The growth may break ties in different ways (a watershed, a breadth-first growth), so these checks test what
# every correct answer shares: one instance per seed, a partition of the seeded components, connected pieces.


def probe_energy_instances(ns, levels, object_mask, cut_level):
    return ns["energy_instances"](levels.clone(), object_mask.clone(), cut_level)


def _energy_masks(sub, levels, object_mask, cut_level, what):
    import torch

    masks = sub.call(probe_energy_instances, levels, object_mask, cut_level, timeout=TIMEOUT)
    masks = expect_tensor(masks, what=f"{what}: masks", dtype=torch.bool)
    expect(
        masks.dim() == 3 and tuple(masks.shape[1:]) == tuple(object_mask.shape),
        f"{what}: masks should be (K, {object_mask.shape[0]}, {object_mask.shape[1]}), got {tuple(masks.shape)}",
    )
    return masks


def _expect_seeded_partition(masks, levels, object_mask, cut_level, what):
    """One instance per 4-connected seed, holding it whole; disjoint, connected, exactly the seeded components."""
    import numpy as np
    import torch
    from scipy import ndimage

    mask = object_mask.numpy()
    seeds, n_seeds = ndimage.label(mask & (levels.numpy() >= cut_level))
    components, _ = ndimage.label(mask)
    seeded = torch.from_numpy(np.isin(components, np.unique(components[seeds > 0])) & mask)
    expect(
        len(masks) == n_seeds,
        f"{what}: {n_seeds} seeds (4-connected regions at the cut level or above), but {len(masks)} instances",
    )
    if not n_seeds:
        return
    expect(bool((masks.sum(0) <= 1).all()), f"{what}: instances overlap")
    covered = masks.any(0)
    expect(
        torch.equal(covered, seeded),
        f"{what}: {int((seeded & ~covered).sum())} object pixels of components with a seed are in no instance and "
        f"{int((covered & ~seeded).sum())} pixels outside them (background, or components without a seed) are in one",
    )
    seeds = torch.from_numpy(seeds)
    for k, region in enumerate(masks):
        inside = torch.unique(seeds[region])
        inside = inside[inside > 0]
        expect(len(inside) == 1, f"{what}: instance {k} holds {len(inside)} seeds instead of one")
        expect(bool(region[seeds == inside[0]].all()), f"{what}: instance {k} holds only part of its seed")
        expect(ndimage.label(region.numpy())[1] == 1, f"{what}: instance {k} is not one 4-connected piece")


def _random_energy(seed, height=26, width=32):
    """A random object map with a random (noisy, plateau-rich) energy on it."""
    import torch

    generator = _generator(seed)
    objects = _blobs(seed, height, width, n=10, noise=0.04)
    levels = torch.randint(0, 5, (height, width), generator=generator)
    levels = torch.where(torch.rand(height, width, generator=generator) < 0.6, levels.clamp(max=2), levels)
    return levels, objects


@unit(
    "dwt_instances",
    points=0.75,
    message="Not one instance per seed: the seeds are the 4-connected regions of object pixels at level >= "
    "cut_level; each instance holds one seed whole plus object pixels grown from it, is one 4-connected piece, "
    "the instances are disjoint and together cover exactly the object pixels of the components that hold a seed.",
)
def test_energy_instances_partition(sub, ref):
    """On random energies, is there one connected instance per seed, partitioning the seeded components?"""
    for i, cut_level in enumerate((1, 2, 3, 2, 4)):
        levels, objects = _random_energy(270 + i)
        what = f"random map {i + 1} (cut_level={cut_level})"
        masks = _energy_masks(sub, levels, objects, cut_level, what)
        _expect_seeded_partition(masks, levels, objects, cut_level, what)


def _touching_windows(ref):
    """Rows of windows touching along a side, their true energy (the reference's energy_targets), the truth."""
    import torch

    ids = torch.zeros(24, 40, dtype=torch.int64)
    boxes = [(2, 2, 11, 10), (2, 10, 11, 17), (2, 17, 11, 27), (13, 3, 22, 12), (13, 12, 22, 20), (13, 24, 22, 37)]
    for k, (top, left, bottom, right) in enumerate(boxes):
        ids[top:bottom, left:right] = k + 1
    levels = ref.call(probe_energy, ids, 8, 1.0)
    return levels, ids > 0, [ids == k + 1 for k in range(len(boxes))]


@unit(
    "dwt_instances",
    points=0.5,
    message="Touching windows with their true energy should give one instance each, close to the window (IoU >= "
    "0.8): cut at cut_level, label the seeds, grow each over the object pixels down the energy.",
)
def test_energy_instances_touching(sub, ref):
    """Do windows touching along a side, with their true energy, come out as one instance each?"""
    levels, objects, windows = _touching_windows(ref)
    for cut_level in (2, 3):
        what = f"six touching windows cut at {cut_level}"
        masks = _energy_masks(sub, levels, objects, cut_level, what)
        expect(len(masks) == len(windows), f"{what}: expected {len(windows)} instances, got {len(masks)}")
        for k, window in enumerate(windows):
            best = max(float((m & window).sum()) / float((m | window).sum()) for m in masks)
            if best < 0.8:
                raise Feedback(f"{what}: window {k + 1} is matched by no instance with IoU >= 0.8 (best {best:.2f})")


@unit(
    "dwt_instances",
    points=0.5,
    message="cut_level is not honoured: a higher cut keeps only the pixels at or above it as seeds, so two peaks "
    "joined by a ridge at a lower level are one instance below the ridge's level and two above it.",
)
def test_energy_instances_cut_level(sub, ref):
    """Do two peaks joined by a lower ridge give one instance when cut below the ridge and two above it?"""
    import torch

    levels = torch.zeros(9, 21, dtype=torch.int64)
    levels[1:8, 1:20] = 1
    levels[2:7, 2:19] = 2  # the ridge
    levels[3:6, 3:8] = 3
    levels[3:6, 13:18] = 3
    levels[4, 4:7] = 5
    levels[4, 14:17] = 4
    objects = levels > 0
    for cut_level, expected in ((1, 1), (2, 1), (3, 2), (4, 2), (5, 1), (6, 0)):
        what = f"two peaks joined by a ridge at level 2, cut at {cut_level}"
        masks = _energy_masks(sub, levels, objects, cut_level, what)
        expect(len(masks) == expected, f"{what}: expected {expected} instance(s), got {len(masks)}")
        _expect_seeded_partition(masks, levels, objects, cut_level, what)


@unit(
    "dwt_instances",
    points=0.25,
    message="Pixels outside object_mask must never seed nor be grown over, and diagonal neighbours are not "
    "connected (4-connectivity); no seed gives a bool (0, H, W) tensor.",
)
def test_energy_instances_outside_and_diagonal(sub, ref):
    """Are high levels outside the object ignored, diagonal seeds kept apart, and no seed (0, H, W)?"""
    import torch

    levels = torch.full((10, 12), 6, dtype=torch.int64)  # high everywhere, also off the object
    objects = torch.zeros(10, 12, dtype=torch.bool)
    objects[1:4, 1:4] = True
    objects[4:7, 4:7] = True  # touches the first square only at a corner: two instances
    objects[7:9, 8:11] = True
    what = "squares touching at a corner, high levels everywhere"
    masks = _energy_masks(sub, levels, objects, 3, what)
    _expect_seeded_partition(masks, levels, objects, 3, what)
    masks = _energy_masks(sub, levels, torch.zeros_like(objects), 1, "no object pixel")
    expect(len(masks) == 0, f"no object pixel: expected no instance, got {len(masks)}")
    masks = _energy_masks(sub, levels.clamp(max=1), objects, 2, "no pixel at the cut level")
    expect(len(masks) == 0, f"no pixel at the cut level: expected no instance, got {len(masks)}")
