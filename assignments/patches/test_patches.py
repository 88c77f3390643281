"""Hidden checks of the patches assignment (notebooks/patches/patches.ipynb), one section per graded unit.

Every check sends probes to the student's worker and compares the plain data that comes back
with the same probe run on the reference solution here. Points per unit add up to the unit's
`points` in the solution notebook. Units are kept independent: stitching is checked on patches
the probe cuts itself, and prediction on grids where extraction and stitching are trivial.
"""

from assignments._shared.metric_checks import check_confusion_counts, check_confusion_dtypes
from grader.harness import assert_close, expect, expect_tensor, unit, uses
from grader.probes import make_input, seed_params

# --- probe helpers (sent to the worker together with the probes that use them) -------------


def grid_starts(length, size, stride):
    """Window starts along one axis: 0, stride, ... plus one flush with the far edge."""
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] != length - size:
        starts.append(length - size)
    return starts


def make_tensor(shape, seed, dtype="float"):
    import torch

    generator = torch.Generator().manual_seed(seed)
    if dtype == "float":
        return torch.randn(shape, generator=generator)
    return torch.randint(0, 6, shape, generator=generator)


# --- probes -----------------------------------------------------------------------------------


@uses(make_tensor)
def probe_extract(ns, shape, size, stride, seed, dtype="float"):
    image = make_tensor(tuple(shape), seed, dtype)
    patches, positions = ns["extract_patches"](image, size, stride)
    return {"patches": patches, "positions": positions}


def probe_extract_error(ns, shape, size, stride):
    import torch

    try:
        ns["extract_patches"](torch.zeros(tuple(shape)), size, stride)
    except ValueError:
        return "ValueError"
    except Exception as error:
        return type(error).__name__
    return "no error"


def probe_weights(ns, masks, n_class, ignore_index=None):
    if ignore_index is None:
        return ns["class_weights"](masks, n_class)
    return ns["class_weights"](masks, n_class, ignore_index=ignore_index)


@uses(grid_starts, make_tensor)
def probe_stitch_roundtrip(ns, channels, height, width, size, stride, seed, extra=0):
    """Cut a random (K, H, W) tensor on the grid (plus `extra` random windows) and stitch it back."""
    import torch

    full = make_tensor((channels, height, width), seed)
    positions = [(y, x) for y in grid_starts(height, size, stride) for x in grid_starts(width, size, stride)]
    generator = torch.Generator().manual_seed(seed + 1)
    for _ in range(extra):
        positions.append(
            (
                int(torch.randint(0, height - size + 1, (), generator=generator)),
                int(torch.randint(0, width - size + 1, (), generator=generator)),
            )
        )
    patches = torch.stack([full[:, y : y + size, x : x + size] for y, x in positions])
    # Only the patches stay in this frame while student code runs (it must not find the answer here);
    # the check compares with the reference run's copy of `full`.
    del full
    stitched = ns["stitch_patches"](patches, torch.tensor(positions), (height, width))
    return {"full": make_tensor((channels, height, width), seed), "stitched": stitched}


@uses(grid_starts, make_tensor)
def probe_stitch_patches(ns, channels, height, width, size, stride, seed, extra=0, constant=False):
    """Stitch independent random (or constant) patches: overlaps must average."""
    import torch

    positions = [(y, x) for y in grid_starts(height, size, stride) for x in grid_starts(width, size, stride)]
    generator = torch.Generator().manual_seed(seed + 1)
    for _ in range(extra):
        positions.append(
            (
                int(torch.randint(0, height - size + 1, (), generator=generator)),
                int(torch.randint(0, width - size + 1, (), generator=generator)),
            )
        )
    if constant:
        values = make_tensor((len(positions), channels), seed)
        patches = values[:, :, None, None].expand(-1, -1, size, size).contiguous()
    else:
        patches = make_tensor((len(positions), channels, size, size), seed)
    return ns["stitch_patches"](patches, torch.tensor(positions), (height, width))


@uses(make_tensor)
def probe_predict_identity(ns, shape, size, stride, batch_size):
    """A model returning its input (times one learnable scale of 1): stitched logits must equal the image."""
    import torch
    import torch.nn as nn

    class Identity(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(()))

        def forward(self, x):
            return x * self.scale

    image = make_tensor(tuple(shape), 7)
    return {"image": image, "logits": ns["predict_full"](Identity(), image, size, stride, batch_size=batch_size)}


@uses(make_tensor)
def probe_predict_recorded(ns, shape, size, stride, batch_sizes, start_training):
    """A conv + batch norm + dropout model that records how it is called."""
    import torch
    import torch.nn as nn

    class Recorder(nn.Module):
        def __init__(self, channels, n_class):
            super().__init__()
            self.conv = nn.Conv2d(channels, n_class, 1)
            self.bn = nn.BatchNorm2d(n_class)
            self.drop = nn.Dropout2d(0.5)
            self.calls = []

        def forward(self, x):
            self.calls.append(
                {
                    "training": bool(self.training),
                    "bn_training": bool(self.bn.training),
                    "grad": bool(torch.is_grad_enabled()),
                    "batch": int(x.shape[0]),
                    "patch": [int(v) for v in x.shape[1:]],
                }
            )
            return self.drop(self.bn(self.conv(x)))

    torch.manual_seed(0)
    model = Recorder(shape[0], 4)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
        model.bn.running_mean.copy_(torch.randn(4, generator=generator))
        model.bn.running_var.copy_(torch.rand(4, generator=generator) + 0.5)
    model.train(start_training)
    image = make_tensor(tuple(shape), 11)
    runs = []
    for batch_size in batch_sizes:
        model.calls = []
        logits = ns["predict_full"](model, image, size, stride, batch_size=batch_size)
        runs.append(
            {
                "logits": logits.detach(),
                "requires_grad": bool(logits.requires_grad),
                "calls": model.calls,
                "after": [bool(m.training) for m in model.modules()],
                "param_grads": [p.grad is not None for p in model.parameters()],
            }
        )
    return runs


def probe_prf(ns, conf):
    result = ns["precision_recall_f1"](conf)
    return {"type": type(result).__name__, "values": list(result) if type(result) in (tuple, list) else None}


# --- patch_extract (3 points) ----------------------------------------------------------------

EXTRACT_CASES = [
    # (shape, size, stride): even grids, uneven grids, overlap, stride > size, image == size, C = 1
    ((3, 16, 24), 8, 8),
    ((3, 16, 16), 8, 4),
    ((3, 23, 37), 8, 5),
    ((1, 19, 30), 6, 6),
    ((3, 30, 25), 4, 9),
    ((2, 8, 8), 8, 3),
    ((1, 9, 41), 9, 16),
    ((4, 33, 12), 12, 7),
]


@unit(
    "patch_extract",
    points=1,
    message="extract_patches returns the wrong positions: rows (and columns) start at "
    "0, stride, 2*stride, ... plus one flush with the far edge when the grid does not reach it; row-major "
    "order; int64 (N, 2) of (y, x).",
)
def test_extract_positions(sub, ref):
    """Are the positions right (grid, extra flush row/column, row-major order) for even and uneven grids, overlap, stride > size and C = 1?"""
    import torch

    for i, (shape, size, stride) in enumerate(EXTRACT_CASES):
        actual = sub.call(probe_extract, shape, size, stride, i)
        expected = ref.call(probe_extract, shape, size, stride, i)
        expect(type(actual) is dict, "extract_patches did not return (patches, positions)")
        positions = expect_tensor(
            actual["positions"], what=f"case {i + 1}: positions", shape=expected["positions"].shape, dtype=torch.int64
        )
        expect(torch.equal(positions, expected["positions"]), f"case {i + 1}: the positions are wrong")


@unit(
    "patch_extract",
    points=1,
    message="The patches do not hold the image content at their positions, or have "
    "the wrong shape (N, C, size, size) or dtype (keep the image's).",
)
def test_extract_content(sub, ref):
    """Do the patches equal the image windows at the reference positions, for float images and int64 masks?"""
    import torch

    for i, (shape, size, stride) in enumerate(EXTRACT_CASES):
        dtype = "int" if shape[0] == 1 else "float"
        actual = sub.call(probe_extract, shape, size, stride, 100 + i, dtype)
        expected = ref.call(probe_extract, shape, size, stride, 100 + i, dtype)
        patches = expect_tensor(
            actual["patches"],
            what=f"case {i + 1}: patches",
            shape=expected["patches"].shape,
            dtype=expected["patches"].dtype,
        )
        expect(torch.equal(patches, expected["patches"]), f"case {i + 1}: the patch content is wrong")


@unit(
    "patch_extract",
    points=0.5,
    message="Some pixels are not covered by any patch (the extra row/column flush "
    "with the bottom/right edge is missing?), or a patch lies outside the image.",
)
def test_extract_covers_every_pixel(sub, ref):
    """With stride <= size, does every pixel lie in at least one patch, every patch inside the image?"""
    import torch

    for i, (shape, size, stride) in enumerate(
        [((3, 37, 29), 8, 8), ((1, 50, 21), 16, 5), ((3, 20, 20), 7, 7), ((1, 13, 64), 13, 13)]
    ):
        actual = sub.call(probe_extract, shape, size, stride, 200 + i)
        positions = expect_tensor(actual["positions"], what=f"case {i + 1}: positions")
        expect(positions.dim() == 2 and positions.shape[1] == 2, f"case {i + 1}: positions must be (N, 2)")
        covered = torch.zeros(shape[1:], dtype=torch.bool)
        for y, x in positions.tolist():
            expect(
                0 <= y <= shape[1] - size and 0 <= x <= shape[2] - size, f"case {i + 1}: a patch lies outside the image"
            )
            covered[y : y + size, x : x + size] = True
        expect(bool(covered.all()), f"case {i + 1}: {int((~covered).sum())} pixels are not covered")


@unit(
    "patch_extract",
    points=0.5,
    message="An image smaller than the patch size (in height or width) must raise "
    "ValueError, and an image exactly the patch size must not.",
)
def test_extract_value_error(sub, ref):
    """Does an image smaller than `size` raise ValueError (and one of exactly `size` not)?"""
    for shape, size in (((3, 5, 20), 8), ((1, 20, 7), 8), ((3, 3, 3), 4)):
        result = sub.call(probe_extract_error, shape, size, 2)
        expect(
            result == "ValueError",
            f"an image of {shape[1]}x{shape[2]} with size {size} gave {result}, expected ValueError",
        )
    result = sub.call(probe_extract_error, (2, 6, 6), 6, 4)
    expect(result == "no error", f"an image of exactly the patch size raised {result}")


# --- patch_weights (1 point) -------------------------------------------------------------------


def _labels(seed, shape, n_class, *, ignore_fraction=0.1, absent=(), ignore_value=255, dtype=None):
    import torch

    generator = torch.Generator().manual_seed(seed)
    present = [c for c in range(n_class) if c not in absent]
    probabilities = torch.linspace(1, 4, len(present))  # unbalanced classes
    labels = torch.tensor(present)[
        torch.multinomial(probabilities, int(torch.tensor(shape).prod()), True, generator=generator).reshape(shape)
    ]
    ignore = torch.rand(shape, generator=generator) < ignore_fraction
    return labels.masked_fill(ignore, ignore_value).to(dtype or torch.int64)


@unit(
    "patch_weights",
    points=0.5,
    message="class_weights differs from labelled pixels / pixels of class c "
    "(labelled = not ignore_index), as a float (n_class,) tensor.",
)
def test_weights_values(sub, ref):
    """Are the weights right for batched and single masks with ignored pixels?"""
    for i, (shape, n_class) in enumerate((((4, 17, 13), 5), ((31, 29), 3), ((2, 1, 40), 6))):
        masks = _labels(i, shape, n_class)
        actual, expected = sub.call(probe_weights, masks, n_class), ref.call(probe_weights, masks, n_class)
        actual = expect_tensor(actual, what=f"case {i + 1}: weights", shape=expected.shape)
        expect(actual.is_floating_point(), f"case {i + 1}: weights must be floating point, got {actual.dtype}")
        assert_close(actual, expected, what=f"case {i + 1}: weights", rtol=1e-5)


@unit(
    "patch_weights",
    points=0.5,
    message="class_weights must give 0 (not inf or NaN) to a class that does not "
    "occur, honour the ignore_index argument and accept any integer dtype.",
)
def test_weights_absent_and_ignore(sub, ref):
    """Do absent classes get weight 0, with a custom ignore_index (also one that is a class id), a class seen once, and int32/uint8 masks?"""
    import torch

    # ignore_index 0 is a class id here: its pixels are unlabelled, so class 0 is absent; class 2 occurs once.
    once = _labels(13, (6, 7), 4, absent=(2,), ignore_fraction=0.2, ignore_value=0)
    once[3, 4] = 2
    cases = [
        (_labels(10, (3, 11, 11), 5, absent=(1, 3)), 5, None),
        (_labels(11, (20, 20), 4, absent=(0,), ignore_value=7, dtype=torch.int32), 4, 7),
        (_labels(12, (2, 9, 9), 5, absent=(4,), dtype=torch.uint8), 5, None),
        (once, 4, 0),
    ]
    for i, (masks, n_class, ignore_index) in enumerate(cases):
        actual = sub.call(probe_weights, masks, n_class, ignore_index)
        expected = ref.call(probe_weights, masks, n_class, ignore_index)
        actual = expect_tensor(actual, what=f"case {i + 1}: weights", shape=expected.shape)
        assert_close(actual, expected, what=f"case {i + 1}: weights", rtol=1e-5)


# --- patch_stitch (2 points) -------------------------------------------------------------------


@unit(
    "patch_stitch",
    points=1,
    message="Stitching the patches cut from a tensor does not give the tensor back: "
    "check the placement at (y, x) and that overlaps are averaged, not summed.",
)
def test_stitch_roundtrip(sub, ref):
    """Does stitching the patches of any tensor (even, uneven and overlapping grids) reproduce it exactly?"""
    for i, (channels, height, width, size, stride) in enumerate(
        ((5, 16, 16, 8, 8), (3, 23, 37, 8, 5), (1, 19, 30, 6, 6), (4, 20, 33, 10, 3), (2, 9, 9, 9, 4))
    ):
        result = sub.call(probe_stitch_roundtrip, channels, height, width, size, stride, i)
        expect(type(result) is dict, "stitch_patches did not return a tensor")
        # The original tensor comes from the reference run, never from the worker.
        full = ref.call(probe_stitch_roundtrip, channels, height, width, size, stride, i)["full"]
        assert_close(result["stitched"], full, what=f"case {i + 1}: stitched tensor", rtol=1e-5)


@unit(
    "patch_stitch",
    points=0.5,
    message="Where constant patches overlap, each pixel must be the mean of the values of the patches covering it.",
)
def test_stitch_constant_overlap(sub, ref):
    """Do overlapping constant patches average?"""
    for i, args in enumerate(((2, 12, 12, 8, 4), (3, 10, 17, 6, 5))):
        actual = sub.call(probe_stitch_patches, *args, 20 + i, 0, True)
        expected = ref.call(probe_stitch_patches, *args, 20 + i, 0, True)
        assert_close(actual, expected, what=f"case {i + 1}: stitched constant patches", rtol=1e-5)


@unit(
    "patch_stitch",
    points=0.5,
    message="With pixels covered by different numbers of patches, each pixel must be "
    "the mean over exactly the patches covering it.",
)
def test_stitch_nonuniform_counts(sub, ref):
    """Is the mean right where pixels are covered by different numbers of random patches?"""
    for i, args in enumerate(((3, 20, 26, 8, 6), (1, 15, 15, 5, 5))):
        actual = sub.call(probe_stitch_patches, *args, 30 + i, 9, False)
        expected = ref.call(probe_stitch_patches, *args, 30 + i, 9, False)
        assert_close(actual, expected, what=f"case {i + 1}: stitched random patches", rtol=1e-5)


# --- patch_predict (2 points) ------------------------------------------------------------------
# Grids with stride == size dividing the image: extraction and stitching are trivial there, so a
# bug in extract_patches' flush row or in stitch_patches' averaging does not fail these checks.


@unit(
    "patch_predict",
    points=0.5,
    message="With a model that returns its input, predict_full does not give the "
    "image back (check how patches are run and stitched into (K, H, W)).",
)
def test_predict_identity(sub, ref):
    """With an identity-like model, are the stitched logits equal to the input image?"""
    for i, (shape, size, batch_size) in enumerate((((3, 24, 32), 8, 5), ((2, 16, 16), 16, 4), ((5, 12, 36), 6, 16))):
        result = sub.call(probe_predict_identity, shape, size, size, batch_size)
        expect(type(result) is dict, "predict_full did not return a tensor")
        image = ref.call(probe_predict_identity, shape, size, size, batch_size)["image"]  # trusted copy
        assert_close(result["logits"], image, what=f"case {i + 1}: predicted logits", rtol=1e-5)


def _recorded(sub, ref, shape, size, stride, batch_sizes, start_training):
    actual = sub.call(probe_predict_recorded, shape, size, stride, batch_sizes, start_training)
    expected = ref.call(probe_predict_recorded, shape, size, stride, batch_sizes, start_training)
    expect(type(actual) is list and len(actual) == len(batch_sizes), "predict_full did not return logits")
    return actual, expected


@unit(
    "patch_predict",
    points=0.5,
    message="The model must be in eval mode during predict_full (batch norm running "
    "statistics, no dropout) and back in its previous mode afterwards.",
)
def test_predict_eval_mode_restored(sub, ref):
    """Is the model in eval mode during the call, and in its previous (train or eval) mode afterwards?"""
    for start_training in (True, False):
        actual, expected = _recorded(sub, ref, (3, 16, 24), 8, 8, [4], start_training)
        run, expected_run = actual[0], expected[0]
        expect(
            run["calls"] and not any(call["training"] or call["bn_training"] for call in run["calls"]),
            "the model was called in training mode",
        )
        expect(
            run["after"] == [start_training] * len(run["after"]),
            f"a model in {'training' if start_training else 'eval'} mode was not left in that mode",
        )
        assert_close(run["logits"], expected_run["logits"], what="logits of a batch-norm model", rtol=1e-4)


@unit(
    "patch_predict",
    points=0.5,
    message="predict_full must not record gradients (torch.no_grad()): the model was "
    "called with gradients enabled, or the result requires grad.",
)
def test_predict_no_grad(sub, ref):
    """Are no gradients recorded during the call?"""
    actual, _ = _recorded(sub, ref, (3, 16, 16), 8, 8, [2], True)
    run = actual[0]
    expect(run["calls"] and not any(call["grad"] for call in run["calls"]), "the model ran with gradients enabled")
    expect(not run["requires_grad"], "the returned logits require grad")
    expect(not any(run["param_grads"]), "parameters received gradients")


@unit(
    "patch_predict",
    points=0.5,
    message="predict_full must run the patches in batches of at most batch_size, "
    "cut with the given size and stride, and give the same result for every batch size.",
)
def test_predict_batches(sub, ref):
    """Are all patches run in batches of at most batch_size, with a result independent of the batch size?"""
    batch_sizes = [1, 5, 16, 64]
    actual, expected = _recorded(sub, ref, (3, 24, 40), 8, 4, batch_sizes, False)
    n_patches = sum(call["batch"] for call in expected[0]["calls"])
    for batch_size, run in zip(batch_sizes, actual):
        batches = [call["batch"] for call in run["calls"]]
        expect(
            batches and max(batches) <= batch_size,
            f"batch_size={batch_size}: a forward pass got {max(batches or [0])} patches",
        )
        expect(
            sum(batches) == n_patches,
            f"batch_size={batch_size}: the model saw {sum(batches)} patches in total, "
            "which does not match the grid for this size and stride",
        )
        expect(all(call["patch"][1:] == [8, 8] for call in run["calls"]), "patches of the wrong size were passed")
    for batch_size, run in zip(batch_sizes, actual):
        assert_close(
            run["logits"], actual[0]["logits"], what=f"logits with batch_size={batch_size} vs batch_size=1", rtol=1e-4
        )
    # stride == size, evenly divisible: independent of extract/stitch details
    actual, expected = _recorded(sub, ref, (3, 24, 40), 8, 8, [3, 64], False)
    for run, expected_run in zip(actual, expected):
        assert_close(run["logits"], expected_run["logits"], what="predicted logits", rtol=1e-4)


# --- patch_confusion (1 point) -------------------------------------------------------------------


@unit(
    "patch_confusion",
    points=0.5,
    message="confusion_matrix differs from the expected counts (rows = ground "
    "truth, columns = prediction; skip ignore pixels and targets outside [0, n_class)).",
)
def test_confusion_counts(sub, ref):
    """Are the counts right on batched and unbatched labels with ignore pixels and absent classes?"""
    check_confusion_counts(sub, ref, n_class=6)


@unit(
    "patch_confusion",
    points=0.5,
    message="confusion_matrix must return an int64 (n_class, n_class) tensor and accept int32, uint8 and int64 labels.",
)
def test_confusion_dtypes(sub, ref):
    """Does it return int64 counts for int32, uint8 and int64 inputs alike?"""
    check_confusion_dtypes(sub, ref)


# --- patch_prf (2 points) -----------------------------------------------------------------------


def _confusions():
    import torch

    generator = torch.Generator().manual_seed(5)
    confs = []
    conf = torch.randint(1, 60, (5, 5), generator=generator)
    conf[3, :] = 0
    conf[:, 3] = 0  # class 3 absent everywhere: all NaN
    confs.append(conf)
    conf = torch.randint(1, 20, (4, 4), generator=generator)
    conf[0, 1:] = 0  # recall 1 for class 0 ...
    conf[2, 2] += 40  # ... and a dominant class
    confs.append(conf)
    confs.append(torch.diag(torch.tensor([5, 0, 7])))
    return confs


def _check_prf_result(actual, expected, what):
    expect(
        type(actual) is dict and actual["values"] is not None and len(actual["values"]) == 3,
        f"{what}: precision_recall_f1 must return a tuple (precision, recall, f1)",
    )
    for name, a, e in zip(("precision", "recall", "f1"), actual["values"], expected["values"]):
        assert_close(a, e, what=f"{what}: {name}", rtol=1e-5)


@unit(
    "patch_prf",
    points=1,
    message="precision (diagonal / column sum), recall (diagonal / row sum) or F1 "
    "(harmonic mean) differ from the expected values, or NaN is not exactly where they are undefined.",
)
def test_prf_values(sub, ref):
    """Are per-class precision, recall and F1 right, with NaN for classes absent from both prediction and ground truth?"""
    for i, conf in enumerate(_confusions()):
        _check_prf_result(sub.call(probe_prf, conf), ref.call(probe_prf, conf), f"case {i + 1}")


@unit(
    "patch_prf",
    points=0.5,
    message="For a class that occurs but is never hit (TP = 0), precision / recall are 0 "
    "where their denominator is non-zero and NaN where it is zero, and F1 is 0.",
)
def test_prf_zero_hits(sub, ref):
    """Are precision, recall and F1 right for classes predicted but never present, present but never predicted, or never hit?"""
    import torch

    conf = torch.tensor([[4, 2, 0, 1], [0, 0, 0, 0], [3, 0, 0, 0], [0, 5, 0, 6]])
    # class 1: predicted, never in the ground truth; class 2: present, never predicted
    _check_prf_result(sub.call(probe_prf, conf), ref.call(probe_prf, conf), "zero-hit case")


@unit(
    "patch_prf",
    points=0.5,
    message="precision_recall_f1 must return a tuple of three floating-point (n_class,) tensors.",
)
def test_prf_types(sub, ref):
    """Does it return a tuple of three float (n_class,) tensors, also for an int64 confusion matrix?"""
    conf = _confusions()[1]
    actual = sub.call(probe_prf, conf)
    expect(
        type(actual) is dict and actual["type"] == "tuple" and len(actual["values"] or []) == 3,
        "return a tuple (precision, recall, f1)",
    )
    for name, value in zip(("precision", "recall", "f1"), actual["values"]):
        value = expect_tensor(value, what=name, shape=(conf.shape[0],))
        expect(value.is_floating_point(), f"{name} must be floating point, got {value.dtype}")


# --- patch_aspp (2 points) ----------------------------------------------------------------------
# Models are compared by parameter name: seed_params gives the student's model and the reference
# the same weights, so any difference in the outputs is a difference in the architecture.


def probe_state_shapes(ns, class_name, model_args):
    model = ns[class_name](*model_args)
    return {name: list(t.shape) for name, t in model.state_dict().items()}


@uses(seed_params, make_input)
def probe_model_outputs(ns, class_name, model_args, sizes):
    """Outputs in eval mode with weights seeded by parameter name."""
    import torch

    torch.manual_seed(0)
    model = ns[class_name](*model_args)
    seed_params(model)
    model.eval()
    with torch.no_grad():
        return [model(make_input(tuple(size), 3000 + i)) for i, size in enumerate(sizes)]


@uses(seed_params, make_input)
def probe_aspp_dropout(ns, model_args, size):
    """Two training-mode passes over the same input: the share of exact zeros, and whether they differ."""
    import torch

    torch.manual_seed(0)
    model = ns["ASPP"](*model_args)
    seed_params(model)
    model.train()
    x = make_input(tuple(size), 41)
    with torch.no_grad():
        first, second = model(x), model(x)
    return {
        "shape": list(first.shape),
        "zeros": float((first == 0).double().mean()),
        "differ": not torch.equal(first, second),
    }


def _compare_state_shapes(sub, ref, class_name, model_args, *, ignore=()):
    expected = ref.call(probe_state_shapes, class_name, model_args)
    actual = sub.call(probe_state_shapes, class_name, model_args, timeout=60)
    expect(type(actual) is dict, f"the state dict of {class_name}{tuple(model_args)} could not be listed")
    expected = {k: v for k, v in expected.items() if not k.startswith(ignore)}
    actual = {k: v for k, v in actual.items() if not k.startswith(ignore)}
    missing = [n for n in expected if n not in actual]
    extra = [n for n in actual if n not in expected]
    shown = f"{class_name}{tuple(model_args)}"
    expect(not missing, f"{shown}: entries missing or misnamed: {missing[:6]}")
    expect(not extra, f"{shown}: unexpected entries: {extra[:6]}")
    wrong = [n for n in expected if actual[n] != expected[n]]
    expect(
        not wrong,
        f"{shown}: wrong shapes: " + ", ".join(f"{n} {actual[n]} (expected {expected[n]})" for n in wrong[:4]),
    )


def _compare_outputs(sub, ref, class_name, model_args, sizes, *, timeout=60):
    actual = sub.call(probe_model_outputs, class_name, model_args, sizes, timeout=timeout)
    expected = ref.call(probe_model_outputs, class_name, model_args, sizes)
    shown = f"{class_name}{tuple(model_args)}"
    expect(type(actual) is list and len(actual) == len(expected), f"{shown} did not return one tensor per input")
    for size, a, e in zip(sizes, actual, expected):
        expect_tensor(a, what=f"{shown}: output for input {tuple(size)}", shape=e.shape)
    for size, a, e in zip(sizes, actual, expected):
        assert_close(a, e, what=f"{shown}: output for input {tuple(size)} (same weights as the reference)", rtol=1e-3)


ASPP_SMALL = (16, 8)
ASPP_RATES = (16, 8, (1, 2, 3))


@unit(
    "patch_aspp",
    points=0.5,
    message="ASPP's parameters and buffers do not match the specification (branches.0.0.weight, "
    "branches.1.1.running_mean, ..., pool.1.weight, pool.2.weight, project.0.weight, project.1.weight, and their "
    "shapes; bias=False in every convolution).",
)
def test_aspp_names_and_shapes(sub, ref):
    """Does ASPP have exactly the specified parameters and buffers, with the right shapes?"""
    for args in (ASPP_SMALL, ASPP_RATES, (512, 256)):
        _compare_state_shapes(sub, ref, "ASPP", args)


@unit(
    "patch_aspp",
    points=1,
    message="With the same weights as the reference (eval mode), ASPP gives different outputs: check the "
    "dilation and padding of each 3x3 branch (= its rate), the image-pooling branch upsampled to h x w, the "
    "concatenation order [1x1, rates..., pooling] and the projection.",
)
def test_aspp_outputs(sub, ref):
    """With identical weights, does ASPP give the reference output for 1x1 features (batch of 1) and larger maps?"""
    _compare_outputs(sub, ref, "ASPP", ASPP_SMALL, [(1, 16, 1, 1), (2, 16, 5, 7), (1, 16, 8, 8), (1, 16, 1, 6)])
    _compare_outputs(sub, ref, "ASPP", ASPP_RATES, [(2, 16, 6, 9)])
    _compare_outputs(sub, ref, "ASPP", (512, 256), [(1, 512, 4, 4)])


@unit(
    "patch_aspp",
    points=0.5,
    message="In training mode ASPP's output must go through nn.Dropout(0.5) after the projection's "
    "conv-BN-ReLU (two passes differ, about half of the values are dropped).",
)
def test_aspp_dropout(sub, ref):
    """In training mode, does the projection end with a dropout of rate 0.5?"""
    actual = sub.call(probe_aspp_dropout, ASPP_SMALL, (2, 16, 8, 8), timeout=60)
    expected = ref.call(probe_aspp_dropout, ASPP_SMALL, (2, 16, 8, 8))
    expect(type(actual) is dict and actual["shape"] == expected["shape"], "ASPP's output has the wrong shape")
    expect(actual["differ"], "two passes in training mode gave the same output: no dropout")
    expect(
        abs(actual["zeros"] - expected["zeros"]) < 0.06,
        f"{100 * actual['zeros']:.0f}% of the training-mode outputs are zero, "
        f"expected about {100 * expected['zeros']:.0f}% (ReLU, then dropout with p = 0.5)",
    )


# --- patch_deeplab (3 points) -------------------------------------------------------------------
# Checked on the reference ASPP (fair units): the engine places it under the student's cell.

# The sizes the notebook names for the output comparison (section 7), a batch of two among them.
DEEPLAB_OUTPUT_SIZES = [(1, 3, 64, 64), (2, 3, 48, 80), (1, 3, 32, 48), (1, 3, 40, 72)]


def probe_deeplab_strides(ns, sizes):
    """Output sizes of backbone.layer1, layer3, layer4 and of the model for each input size, read through hooks."""
    import torch

    torch.manual_seed(0)
    model = ns["DeepLabV3Plus"](3).eval()
    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, torch.nn.Module):
        return {"error": "no `backbone` module"}
    shapes = {}

    def record(name):
        def hook(module, inputs, output):
            shapes[name] = list(output.shape)

        return hook

    handles = [getattr(backbone, name).register_forward_hook(record(name)) for name in ("layer1", "layer3", "layer4")]
    runs = []
    try:
        with torch.no_grad():
            for size in sizes:
                shapes.clear()
                out = model(torch.zeros(tuple(size)))
                runs.append({"shapes": dict(shapes), "out": list(out.shape)})
    finally:
        for handle in handles:
            handle.remove()
    return {"error": None, "runs": runs}


@uses(seed_params)
def probe_deeplab_backbone(ns):
    """Does a torchvision ResNet-18 state dict load into `backbone` (fc aside)?"""
    import torch
    import torchvision

    model = ns["DeepLabV3Plus"](3)
    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, torch.nn.Module):
        return {"error": "no `backbone` module"}
    source = torchvision.models.resnet18(weights=None)
    seed_params(source)
    try:
        result = backbone.load_state_dict(source.state_dict(), strict=False)
    except Exception as error:
        return {"error": f"loading a ResNet-18 state dict failed ({type(error).__name__})"}
    missing = sorted(k for k in result.missing_keys if not k.startswith("fc."))
    unexpected = sorted(k for k in result.unexpected_keys if not k.startswith("fc."))
    return {"error": None, "missing": missing[:5], "unexpected": unexpected[:5]}


@unit(
    "patch_deeplab",
    points=0.5,
    message="DeepLabV3Plus's parameters and buffers do not match the specification (backbone.* as in "
    "torchvision's resnet18, aspp.*, low_level.0.weight, decoder.0.weight, decoder.3.weight, classifier.weight, "
    "and their shapes).",
)
def test_deeplab_names_and_shapes(sub, ref):
    """Does DeepLabV3Plus have exactly the specified parameters and buffers (backbone.fc aside), with the right shapes?"""
    _compare_state_shapes(sub, ref, "DeepLabV3Plus", (5,), ignore=("backbone.fc.",))


@unit(
    "patch_deeplab",
    points=1.5,
    message="With the same weights as the reference (eval mode), DeepLabV3Plus gives different outputs: "
    "check layer4 (stride 1, dilation and padding 2 in every 3x3 convolution), the low-level projection of layer1, "
    "the concatenation order [low-level, upsampled ASPP], the bilinear upsamplings (align_corners=False) and the "
    "decoder.",
)
def test_deeplab_outputs(sub, ref):
    """With identical weights, does DeepLabV3Plus give the reference output for 64x64, 48x80, 32x48 and 40x72 inputs?"""
    # 40x72 is not a multiple of 16 (the notebook's own example): ASPP's output upsampled x4 instead of to
    # layer1's size does not fit there, and the notebook counts that as a wrong output, not a side case.
    _compare_outputs(sub, ref, "DeepLabV3Plus", (5,), DEEPLAB_OUTPUT_SIZES, timeout=120)


@unit(
    "patch_deeplab",
    points=0.5,
    message="For inputs whose sides are not multiples of 4, DeepLabV3Plus must still return scores of the "
    "input's size: upsample the ASPP output to layer1's size and the scores to the input's size (size=..., not "
    "a scale factor).",
)
def test_deeplab_other_sizes(sub, ref):
    """With identical weights, does DeepLabV3Plus give the reference output, of the input's size, for 42x70 and 37x53?"""
    _compare_outputs(sub, ref, "DeepLabV3Plus", (4,), [(1, 3, 42, 70), (1, 3, 37, 53)], timeout=120)


@unit(
    "patch_deeplab",
    points=0.5,
    message="The backbone must be torchvision's resnet18 (its state dict loads into `backbone`) with layer1 "
    "at 1/4 and layer3 and layer4 at 1/16 of the input: output stride 16, layer4 not downsampling.",
)
def test_deeplab_backbone_and_stride(sub, ref):
    """Does a ResNet-18 state dict load into `backbone`, and do layer1 and layer4 run at 1/4 and 1/16 of the input?"""
    loaded = sub.call(probe_deeplab_backbone, timeout=60)
    expect(type(loaded) is dict, "the backbone could not be inspected")
    expect(loaded.get("error") is None, str(loaded.get("error")))
    expect(
        not loaded["missing"] and not loaded["unexpected"],
        f"keys missing from the backbone: {loaded['missing']}, unexpected: {loaded['unexpected']}",
    )
    sizes = [(1, 3, 64, 96), (1, 3, 48, 32)]
    actual = sub.call(probe_deeplab_strides, sizes, timeout=60)
    expected = ref.call(probe_deeplab_strides, sizes)
    expect(type(actual) is dict and actual.get("error") is None, str((actual or {}).get("error")))
    for size, run, expected_run in zip(sizes, actual["runs"], expected["runs"]):
        for name in ("layer1", "layer3", "layer4"):
            expect(
                run["shapes"].get(name) == expected_run["shapes"][name],
                f"input {size[2]}x{size[3]}: backbone.{name} gave {run['shapes'].get(name)}, "
                f"expected {expected_run['shapes'][name]}",
            )
        expect(run["out"] == expected_run["out"], f"input {size[2]}x{size[3]}: output {run['out']}")
