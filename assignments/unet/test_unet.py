"""Hidden checks of the U-Net assignment (notebooks/unet/unet.ipynb), one section per graded unit.

Every check sends probes to the student's worker and compares the plain data that comes
back with the same probe run on the reference solution here. Points per unit add up to
the unit's `points` in the solution notebook (a kit test verifies this).
"""

from assignments._shared.metric_checks import (
    check_confusion_counts,
    check_confusion_dtypes,
    check_iou_values,
    check_mean_iou,
    random_labels,
)
from grader.harness import assert_close, expect, expect_tensor, unit, uses
from grader.probes import make_input, seed_params

# Time limit (s) of probes on small tensors: a correct answer needs well under a second.
FAST_S = 20

# --- probe helpers (sent to the worker together with the probes that use them) -------------


def coordinate_pair(height, width):
    """Image whose channels hold (row, column, 0.5) of each pixel; mask holding row * width + column."""
    import torch

    rows = torch.arange(height).view(-1, 1).expand(height, width)
    cols = torch.arange(width).view(1, -1).expand(height, width)
    image = torch.stack([rows.float(), cols.float(), torch.full((height, width), 0.5)])
    return image, (rows * width + cols).long().contiguous()


# --- probes -----------------------------------------------------------------------------------


@uses(coordinate_pair)
def probe_augment_draws(ns, height, width, size, flip_p, n_draws, seed):
    """Where each draw's crop came from, as read back from the coordinates in the image and the mask."""
    import torch

    torch.manual_seed(seed)
    image, mask = coordinate_pair(height, width)
    draws = []
    for _ in range(n_draws):
        out_image, out_mask = ns["random_crop_flip"](image.clone(), mask.clone(), size, flip_p=flip_p)
        if type(out_image) is not torch.Tensor or type(out_mask) is not torch.Tensor:
            return {"error": "random_crop_flip must return two tensors"}
        if out_image.dim() != 3 or out_mask.dim() != 2:
            return {"error": f"got image {tuple(out_image.shape)} and mask {tuple(out_mask.shape)}"}
        rows, cols = out_image[0].double(), out_image[1].double()
        mask_rows = torch.div(out_mask, width, rounding_mode="floor").double()
        mask_cols = (out_mask % width).double()
        aligned = (
            bool(out_image.shape[-2:] == out_mask.shape)
            and torch.equal(rows, mask_rows)
            and torch.equal(cols, mask_cols)
        )
        h, w = out_mask.shape
        top, left = float(rows.min()), float(cols.min())
        expected_rows = torch.arange(h, dtype=torch.float64).view(-1, 1) + top
        forward_cols = torch.arange(w, dtype=torch.float64).view(1, -1) + left
        contiguous = bool(torch.equal(rows, expected_rows.expand(h, w)))
        flipped = bool(torch.equal(cols, forward_cols.flip(-1).expand(h, w)))
        straight = bool(torch.equal(cols, forward_cols.expand(h, w)))
        draws.append(
            {
                "image_shape": list(out_image.shape),
                "mask_shape": list(out_mask.shape),
                "image_dtype": str(out_image.dtype),
                "mask_dtype": str(out_mask.dtype),
                "aligned": aligned,
                "window": contiguous and (flipped or straight),
                "flipped": flipped and not straight,
                "top": int(top),
                "left": int(left),
                "untouched_third": bool((out_image[2] == 0.5).all()),
            }
        )
    return {"error": None, "draws": draws}


def probe_augment_errors(ns, height, width, sizes):
    import torch

    image, mask = torch.zeros(3, height, width), torch.zeros(height, width, dtype=torch.long)
    outcomes = []
    for size in sizes:
        try:
            ns["random_crop_flip"](image, mask, tuple(size))
            outcomes.append("no error")
        except ValueError:
            outcomes.append("ValueError")
        except Exception as error:
            outcomes.append(type(error).__name__)
    return outcomes


def probe_prior(ns, masks, n_class, ignore_index=None):
    if ignore_index is None:
        prior = ns["fit_pixel_prior"](masks, n_class)
    else:
        prior = ns["fit_pixel_prior"](masks, n_class, ignore_index=ignore_index)
    return prior


def probe_predict_prior(ns, prior, n):
    return ns["predict_prior"](prior.clone(), n)


def probe_weights(ns, masks, n_class, ignore_index=None):
    if ignore_index is None:
        return ns["class_weights"](masks, n_class)
    return ns["class_weights"](masks, n_class, ignore_index=ignore_index)


def probe_wce(ns, logits, target, weight, ignore_index=None):
    import torch

    logits = logits.clone().requires_grad_(True)
    if ignore_index is None:
        loss = ns["weighted_cross_entropy"](logits, target.clone(), weight.clone())
    else:
        loss = ns["weighted_cross_entropy"](logits, target.clone(), weight.clone(), ignore_index=ignore_index)
    if type(loss) is not torch.Tensor or loss.numel() != 1:
        return {"loss_type": type(loss).__name__}
    loss.reshape(()).backward()
    grad = logits.grad if logits.grad is not None else torch.zeros_like(logits)
    return {"loss_type": "Tensor", "loss": loss.detach().reshape(()).double(), "grad": grad.double()}


def probe_state_shapes(ns, class_name, model_args=()):
    model = ns[class_name](*model_args)
    return {name: list(t.shape) for name, t in model.state_dict().items()}


@uses(seed_params, make_input)
def probe_outputs(ns, class_name, sizes, model_args=()):
    import torch

    torch.manual_seed(0)
    model = ns[class_name](*model_args)
    seed_params(model)
    model.eval()
    outputs = []
    with torch.no_grad():
        for i, size in enumerate(sizes):
            outputs.append(model(make_input(tuple(size), 2000 + i)))
    return outputs


def probe_resnet_shapes(ns, sizes, n_class):
    import torch

    torch.manual_seed(0)
    model = ns["ResNetUNet"](n_class).eval()
    with torch.no_grad():
        return [list(model(torch.randn(tuple(size))).shape) for size in sizes]


@uses(seed_params)
def probe_resnet_encoder(ns, n_class):
    import torch
    import torchvision

    model = ns["ResNetUNet"](n_class)
    encoder = getattr(model, "encoder", None)
    if not isinstance(encoder, torch.nn.Module):
        return {"error": "no `encoder` module"}
    source = torchvision.models.resnet18(weights=None)
    seed_params(source, lambda name: "resnet." + name)
    try:
        result = encoder.load_state_dict(source.state_dict(), strict=False)
    except Exception as error:
        return {"error": f"loading a ResNet-18 state dict failed ({type(error).__name__})"}
    missing = sorted(k for k in result.missing_keys if not k.startswith("fc."))
    unexpected = sorted(k for k in result.unexpected_keys if not k.startswith("fc."))
    loaded = encoder.state_dict()
    same = all(torch.equal(loaded[k], v) for k, v in source.state_dict().items() if k in loaded)
    return {"error": None, "missing": missing[:5], "unexpected": unexpected[:5], "same": bool(same)}


@uses(make_input)
def probe_resnet_skips(ns, n_class, keep, size):
    """Replace encoder outputs through forward hooks: zeroed everywhere except `keep`, whose output is
    replaced by two different random maps. Returns the largest output change (0 = `keep` not used)."""
    import torch

    torch.manual_seed(0)
    model = ns["ResNetUNet"](n_class).eval()
    encoder = model.encoder
    names = ["bn1", "layer1", "layer2", "layer3", "layer4"]
    replacement = {"seed": 0}

    def make_hook(name):
        def hook(module, inputs, output):
            if name == keep:
                return make_input(tuple(output.shape), replacement["seed"]) * 3
            return torch.zeros_like(output)

        return hook

    handles = [getattr(encoder, name).register_forward_hook(make_hook(name)) for name in names]
    x = make_input(tuple(size), 77)
    try:
        with torch.no_grad():
            first = model(x).double()
            replacement["seed"] = 1
            second = model(x).double()
    finally:
        for handle in handles:
            handle.remove()
    return {"shape": list(first.shape), "change": float((first - second).abs().max())}


@uses(make_input)
def probe_resnet_variation(ns, n_class, size):
    import torch

    torch.manual_seed(0)
    model = ns["ResNetUNet"](n_class).eval()
    with torch.no_grad():
        first = model(make_input(tuple(size), 5)).double()
        second = model(make_input(tuple(size), 6)).double()
    return {"pixel_std": float(first.std(dim=(2, 3)).min()), "input_change": float((first - second).abs().max())}


# --- unet_augment (2 points) ---------------------------------------------------------------------


def _draws(sub, height, width, size, flip_p, n_draws, seed):
    result = sub.call(probe_augment_draws, height, width, size, flip_p, n_draws, seed, timeout=30)
    expect(type(result) is dict, "random_crop_flip did not return plain tensors")
    expect(result.get("error") is None, str(result.get("error")))
    return result["draws"]


@unit(
    "unet_augment",
    points=0.5,
    message="The image and mask crops must come from the same window of the input "
    "(one window for both), with shapes (3, h, w) and (h, w) and the input dtypes.",
)
def test_augment_alignment_shapes_dtypes(sub, ref):
    """Are image and mask cropped at the same place, to the requested size, keeping their dtypes?"""
    for height, width, size in ((12, 15, (5, 7)), (9, 9, (9, 9)), (20, 11, (1, 11))):
        for draw in _draws(sub, height, width, size, 0.5, 12, 3):
            expect(
                draw["image_shape"] == [3, *size] and draw["mask_shape"] == list(size),
                f"a crop of {size} gave image {draw['image_shape']} and mask {draw['mask_shape']}",
            )
            expect(
                draw["image_dtype"] == "torch.float32" and draw["mask_dtype"] == "torch.int64",
                f"dtypes changed to {draw['image_dtype']} / {draw['mask_dtype']}",
            )
            expect(draw["window"] and draw["untouched_third"], "the image crop is not one window of the input")
            expect(draw["aligned"], "image and mask crops do not come from the same pixels")


@unit(
    "unet_augment",
    points=0.5,
    message="flip_p must be the flip probability: flip_p=0 never flips, flip_p=1 "
    "always flips (image and mask together), flip_p=0.5 about half the time.",
)
def test_augment_flip_probability(sub, ref):
    """Does flip_p=0 never flip, flip_p=1 always flip, and flip_p=0.5 flip about half of the draws?"""
    for flip_p, low, high in ((0.0, 0, 0), (1.0, 1, 1), (0.5, 0.3, 0.7)):
        draws = _draws(sub, 10, 14, (6, 8), flip_p, 100, 11)
        expect(all(d["aligned"] and d["window"] for d in draws), "image and mask crops do not match after flipping")
        fraction = sum(d["flipped"] for d in draws) / len(draws)
        expect(low <= fraction <= high, f"with flip_p={flip_p}, {100 * fraction:.0f}% of 100 draws were flipped")


@unit(
    "unet_augment",
    points=0.5,
    message="Crop windows must be drawn at random over every valid position (all "
    "tops 0..H-h and lefts 0..W-w), independently on each call.",
)
def test_augment_positions_cover_the_range(sub, ref):
    """Over many draws, are all valid top and left positions used, and nothing outside them?"""
    height, width, size = 11, 13, (6, 7)
    draws = _draws(sub, height, width, size, 0.0, 300, 5)
    tops = {d["top"] for d in draws}
    lefts = {d["left"] for d in draws}
    expect(
        tops == set(range(height - size[0] + 1)),
        f"tops drawn: {sorted(tops)} for an image of height {height} and crops of height {size[0]}",
    )
    expect(
        lefts == set(range(width - size[1] + 1)),
        f"lefts drawn: {sorted(lefts)} for an image of width {width} and crops of width {size[1]}",
    )
    pairs = {(d["top"], d["left"]) for d in draws}
    expect(len(pairs) >= 25, "top and left positions are not drawn independently")


@unit(
    "unet_augment",
    points=0.5,
    message="A crop larger than the image (in height or width) must raise ValueError; "
    "a crop of exactly the image size must work.",
)
def test_augment_value_error(sub, ref):
    """Does a crop larger than the image raise ValueError, and the full-size crop not?"""
    outcomes = sub.call(probe_augment_errors, 8, 10, [(9, 4), (3, 11), (9, 11), (8, 10)], timeout=FAST_S)
    expect(type(outcomes) is list and len(outcomes) == 4, "could not run random_crop_flip")
    expect(outcomes[:3] == ["ValueError"] * 3, f"crops too large gave {outcomes[:3]}")
    expect(outcomes[3] == "no error", f"a crop of exactly the image size gave {outcomes[3]}")


# --- unet_prior (2 points) ------------------------------------------------------------------------


def _prior_cases():
    masks, _ = random_labels(21, (7, 9, 11), 5, ignore_fraction=0.3, absent=(3,))
    masks[:, 0, :4] = 255  # pixels never labelled
    masks[:, 4, 4] = 1  # a pixel always of one class
    few, _ = random_labels(22, (2, 6, 5), 4, ignore_fraction=0.5)
    return [(masks, 5, None), (few, 4, None)]


@unit(
    "unet_prior",
    points=1.5,
    message="fit_pixel_prior differs from the per-pixel class fractions over the "
    "labelled masks (ignore pixels do not count; a never-labelled pixel gets 1/n_class; float tensor (n_class, H, W)).",
)
def test_prior_values(sub, ref):
    """With ignore pixels, absent classes and never-labelled pixels, is the prior right everywhere?"""
    import torch

    for i, (masks, n_class, ignore_index) in enumerate(_prior_cases()):
        expected = ref.call(probe_prior, masks, n_class, ignore_index)
        actual = sub.call(probe_prior, masks, n_class, ignore_index, timeout=FAST_S)
        expect_tensor(actual, what=f"case {i + 1}: prior", shape=expected.shape)
        expect(actual.is_floating_point(), f"case {i + 1}: the prior must be a float tensor")
        assert_close(actual, expected, what=f"case {i + 1}: prior", rtol=1e-5)
    masks, _ = random_labels(23, (5, 4, 6), 3, ignore_fraction=0.2)
    masks[masks == 255] = 2
    expected = ref.call(probe_prior, masks, 4, 2)
    actual = sub.call(probe_prior, masks, 4, 2, timeout=FAST_S)
    assert_close(actual, expected, what="prior with ignore_index=2", rtol=1e-5)
    expect(bool(torch.isfinite(actual).all()), "the prior holds NaN or inf")


@unit(
    "unet_prior", points=0.5, message="predict_prior must return the prior repeated for n images: (n, n_class, H, W)."
)
def test_predict_prior(sub, ref):
    """Does predict_prior repeat the prior for every image of a batch?"""
    import torch

    prior = torch.rand(4, 5, 3, generator=torch.Generator().manual_seed(3))
    prior /= prior.sum(0, keepdim=True)
    for n in (1, 3):
        expected = ref.call(probe_predict_prior, prior, n)
        actual = sub.call(probe_predict_prior, prior, n, timeout=FAST_S)
        expect_tensor(actual, what=f"prediction for n={n}", shape=expected.shape)
        assert_close(actual, expected, what=f"prediction for n={n}", rtol=1e-6)


# --- unet_confusion (1 point) ------------------------------------------------------------------------


@unit(
    "unet_confusion",
    points=0.5,
    message="confusion_matrix differs from the expected counts (rows = ground truth, "
    "columns = prediction; skip ignore pixels and targets outside [0, n_class)).",
)
def test_confusion_counts(sub, ref):
    """Are the counts right on batched and unbatched labels with ignore pixels and absent classes?"""
    check_confusion_counts(sub, ref, n_class=9, timeout=FAST_S)


@unit(
    "unet_confusion",
    points=0.5,
    message="confusion_matrix must return an int64 (n_class, n_class) tensor and accept int32, int64 and uint8 labels.",
)
def test_confusion_dtypes(sub, ref):
    """Does it return int64 counts for int32, int64 and uint8 inputs alike?"""
    check_confusion_dtypes(sub, ref, timeout=FAST_S)


# --- unet_iou (1 point) ---------------------------------------------------------------------------


@unit(
    "unet_iou",
    points=0.75,
    message="iou_per_class differs from diag / (row sum + column sum - diag), "
    "or NaN is not where the denominator is zero.",
)
def test_iou_values(sub, ref):
    """Are per-class IoUs right, with NaN exactly for classes absent from prediction and ground truth?"""
    check_iou_values(sub, ref, n_class=9, seed=12, timeout=FAST_S)


@unit("unet_iou", points=0.25, message="mean_iou must be a Python float: the mean over classes whose IoU is defined.")
def test_mean_iou(sub, ref):
    """Is mean_iou a finite Python float that skips NaN classes?"""
    check_mean_iou(sub, ref, n_class=9, seed=12, timeout=FAST_S)


# --- unet_weights (1 point) ---------------------------------------------------------------------------


@unit(
    "unet_weights",
    points=1,
    message="class_weights differs from (labelled pixels) / (pixels of class c), with 0 "
    "for absent classes, ignore pixels and labels outside [0, n_class) not counted; float tensor (n_class,).",
)
def test_class_weights(sub, ref):
    """With ignore pixels and absent classes, are the inverse-frequency weights right?"""
    import torch

    masks, _ = random_labels(31, (3, 14, 17), 9, ignore_fraction=0.25, absent=(2, 6))
    masks[0, 0, :3] = 9  # outside [0, n_class): not labelled
    masks[1, 2, :4] = -1  # negative: not labelled either
    few, _ = random_labels(32, (40,), 3, ignore_fraction=0.1)
    once = torch.tensor([[0, 0, 1, 2], [2, 2, 255, -1]])  # class 1 seen exactly once
    cases = [(masks, 9, None), (few, 3, None), (few.clone().masked_fill(few == 255, 1), 3, 1), (once, 3, None)]
    for i, (labels, n_class, ignore_index) in enumerate(cases):
        expected = ref.call(probe_weights, labels, n_class, ignore_index)
        actual = sub.call(probe_weights, labels, n_class, ignore_index, timeout=FAST_S)
        expect_tensor(actual, what=f"case {i + 1}: weights", shape=expected.shape)
        expect(actual.is_floating_point(), f"case {i + 1}: the weights must be a float tensor")
        assert_close(actual, expected, what=f"case {i + 1}: weights", rtol=1e-5)


# --- unet_wce (2 points) -----------------------------------------------------------------------------


def _wce_cases():
    import torch

    generator = torch.Generator().manual_seed(41)
    cases = []
    logits = torch.randn(2, 5, 6, 7, generator=generator) * 3
    target, _ = random_labels(42, (2, 6, 7), 5, ignore_fraction=0.2)
    weight = torch.tensor([0.5, 2.0, 0.0, 4.0, 1.0])  # class 2 has weight zero
    cases.append((logits, target, weight, None))
    logits = torch.randn(1, 3, 4, 9, generator=generator)
    target, _ = random_labels(43, (1, 4, 9), 3, ignore_fraction=0.0, absent=(1,))
    cases.append((logits, target, torch.tensor([3.0, 0.25, 1.5]), None))
    logits = torch.randn(3, 4, 5, 5, generator=generator) * 2
    target, _ = random_labels(44, (3, 5, 5), 4, ignore_fraction=0.3)
    target[target == 255] = 3  # ignore_index 3: class 3 never counted
    cases.append((logits, target, torch.tensor([1.0, 7.0, 0.5, 2.0]), 3))
    return cases


@unit(
    "unet_wce",
    points=1,
    message="The loss value differs from the weighted cross-entropy: sum of w_y * "
    "(-log softmax) over non-ignored pixels divided by the sum of their weights w_y (not by the pixel count).",
)
def test_wce_value(sub, ref):
    """With ignore pixels and zero weights, is the loss value the reference's (= F.cross_entropy with weight)?"""
    for i, (logits, target, weight, ignore_index) in enumerate(_wce_cases()):
        actual = sub.call(probe_wce, logits, target, weight, ignore_index, timeout=FAST_S)
        expected = ref.call(probe_wce, logits, target, weight, ignore_index)
        expect(
            type(actual) is dict and actual.get("loss_type") == "Tensor",
            "weighted_cross_entropy must return a scalar tensor",
        )
        assert_close(actual["loss"], expected["loss"], what=f"case {i + 1}: loss", rtol=1e-4)


@unit(
    "unet_wce",
    points=1,
    message="The gradient of the loss with respect to the logits differs from the reference "
    "(ignore pixels and zero-weight classes get no gradient; the loss must stay differentiable).",
)
def test_wce_gradient(sub, ref):
    """Is the gradient w.r.t. the logits the reference's, with ignore pixels and zero weights?"""
    for i, (logits, target, weight, ignore_index) in enumerate(_wce_cases()):
        actual = sub.call(probe_wce, logits, target, weight, ignore_index, timeout=FAST_S)
        expected = ref.call(probe_wce, logits, target, weight, ignore_index)
        expect(
            type(actual) is dict and actual.get("loss_type") == "Tensor",
            "weighted_cross_entropy must return a scalar tensor",
        )
        assert_close(actual["grad"], expected["grad"], what=f"case {i + 1}: gradient", rtol=1e-4, atol=1e-7)


# --- unet_model (4 points) -----------------------------------------------------------------------

UNET_SIZES = [(1, 3, 16, 16), (2, 3, 17, 23), (1, 3, 40, 56)]


@unit(
    "unet_model",
    points=1.5,
    message="UNet's parameters and buffers do not match the specification (names such as "
    "inc.double_conv.0.weight, down1.maxpool_conv.1.double_conv.0.weight, up1.up.weight, up1.conv.double_conv.0."
    "weight, outc.conv.weight, and their shapes).",
)
def test_unet_names_and_shapes(sub, ref):
    """Does UNet have exactly the specified parameters and buffers, with the right shapes?"""
    for args in ((4,), (2, 1)):
        expected = ref.call(probe_state_shapes, "UNet", args)
        actual = sub.call(probe_state_shapes, "UNet", args, timeout=60)
        expect(type(actual) is dict, "the state dict could not be listed")
        missing = [n for n in expected if n not in actual]
        extra = [n for n in actual if n not in expected]
        expect(not missing, f"UNet{args}: entries missing or misnamed: {missing[:6]}")
        expect(not extra, f"UNet{args}: unexpected entries: {extra[:6]}")
        wrong = [n for n in expected if actual[n] != expected[n]]
        expect(
            not wrong,
            f"UNet{args}: wrong shapes: " + ", ".join(f"{n} {actual[n]} (expected {expected[n]})" for n in wrong[:4]),
        )


@unit(
    "unet_model",
    points=2,
    message="With the same weights as the reference (eval mode), UNet gives different "
    "outputs: check the order of the layers, the concatenation order [skip, upsampled] and the zero-padding "
    "of the upsampled map (left/top diff // 2, the rest right/bottom).",
)
def test_unet_outputs(sub, ref):
    """With identical weights, does UNet give the reference output for even and odd input sizes (16x16, 17x23, 40x56)?"""
    actual = sub.call(probe_outputs, "UNet", UNET_SIZES, (4,), timeout=180)
    expected = ref.call(probe_outputs, "UNet", UNET_SIZES, (4,))
    expect(type(actual) is list and len(actual) == len(expected), "UNet did not return one tensor per input")
    for size, a, e in zip(UNET_SIZES, actual, expected):
        expect_tensor(a, what=f"output for input {size}", shape=e.shape)
    for size, a, e in zip(UNET_SIZES, actual, expected):
        assert_close(a, e, what=f"output for input {size} (same weights as the reference)", rtol=1e-3)


@unit(
    "unet_model",
    points=0.5,
    message="UNet(n_class, in_channels) must accept in_channels other than 3 and give the reference output for it.",
)
def test_unet_in_channels(sub, ref):
    """With one input channel and two classes, does UNet match the reference?"""
    sizes = [(1, 1, 24, 20)]
    actual = sub.call(probe_outputs, "UNet", sizes, (2, 1), timeout=120)
    expected = ref.call(probe_outputs, "UNet", sizes, (2, 1))
    expect(type(actual) is list and len(actual) == 1, "UNet did not return a tensor")
    assert_close(actual[0], expected[0], what="output for a 1-channel input", rtol=1e-3)


# --- unet_resnet (3 points) ------------------------------------------------------------------------


@unit(
    "unet_resnet",
    points=0.5,
    message="ResNetUNet must return (N, n_class, H, W) for inputs whose H and W are multiples of 32.",
)
def test_resnet_unet_shapes(sub, ref):
    """Is the output (N, n_class, H, W) for square and non-square inputs, batched or not?"""
    sizes = [(1, 3, 32, 32), (2, 3, 64, 96), (1, 3, 96, 64)]
    actual = sub.call(probe_resnet_shapes, sizes, 6, timeout=120)
    expect(type(actual) is list and len(actual) == len(sizes), "ResNetUNet did not return one output per input")
    for size, shape in zip(sizes, actual):
        expect(shape == [size[0], 6, size[2], size[3]], f"input {list(size)} gave output {shape}")


@unit(
    "unet_resnet",
    points=0.5,
    message="`encoder` must be torchvision's ResNet-18: a resnet18 state dict must load "
    "into it (only `fc` may be missing).",
)
def test_resnet_unet_encoder(sub, ref):
    """Does a torchvision resnet18 state dict load into `encoder` (strictly, except `fc`)?"""
    result = sub.call(probe_resnet_encoder, 4, timeout=120)
    expect(type(result) is dict, "the encoder could not be inspected")
    expect(result.get("error") is None, str(result.get("error")))
    expect(
        not result["missing"] and not result["unexpected"],
        f"keys missing from the encoder: {result['missing']}, unexpected: {result['unexpected']}",
    )
    expect(result["same"], "after loading, the encoder does not hold the loaded weights")


@unit(
    "unet_resnet",
    points=1.5,
    message="A skip connection does not carry information: with layer4 (and the other "
    "encoder stages) zeroed, changing layer3, layer2, layer1 or the stem (bn1/relu) output must change the "
    "prediction. Concatenate each of them in the decoder and call the encoder's own modules.",
)
def test_resnet_unet_skips(sub, ref):
    """With the bottleneck zeroed, does each of layer3, layer2, layer1 and the stem still reach the output?"""
    for stage, what in (
        ("layer3", "layer3 (1/16)"),
        ("layer2", "layer2 (1/8)"),
        ("layer1", "layer1 (1/4)"),
        ("bn1", "the stem (1/2)"),
    ):
        result = sub.call(probe_resnet_skips, 4, stage, (1, 3, 64, 64), timeout=120)
        expect(
            type(result) is dict and result.get("shape") == [1, 4, 64, 64], "ResNetUNet's output has the wrong shape"
        )
        expect(result["change"] > 1e-6, f"the output does not depend on {what} when the other stages are zeroed")


@unit(
    "unet_resnet",
    points=0.5,
    message="The decoder must start with PyTorch's default (random) initialisation: "
    "the output should vary over pixels and with the input.",
)
def test_resnet_unet_not_constant(sub, ref):
    """At initialisation, does the output vary over the pixels and with the input?"""
    result = sub.call(probe_resnet_variation, 3, (2, 3, 64, 64), timeout=120)
    expect(type(result) is dict, "ResNetUNet could not be run")
    expect(result["pixel_std"] > 1e-6, "the output is constant over the pixels of an image")
    expect(result["input_change"] > 1e-6, "the output does not depend on the input")


# --- unet_train_epoch (2 points) ---------------------------------------------------------------------
# A tiny deterministic model (no dropout: the student's run and the reference's draw nothing random),
# an SGD optimiser that records the gradients it sees at every step, parameters that start with stale
# gradients and a model that starts in eval mode.


def probe_train_epoch(ns, kind, n_samples, batch_size, seed):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, TensorDataset

    class Recorded(nn.Module):
        """Wraps a model; records the mode of every module and whether gradients are on at each call."""

        def __init__(self, body):
            super().__init__()
            self.body = body
            self.calls = []

        def forward(self, x):
            modes = [bool(m.training) for m in self.modules()]
            self.calls.append(
                {"all_training": all(modes), "grad": bool(torch.is_grad_enabled()), "batch": int(x.shape[0])}
            )
            return self.body(x)

    class RecordingSGD(torch.optim.SGD):
        def __init__(self, params):
            super().__init__(params, lr=0.5)
            self.steps = []

        def step(self, closure=None):
            grads = [p.grad for group in self.param_groups for p in group["params"]]
            self.steps.append([torch.zeros(0) if g is None else g.detach().clone() for g in grads])
            return super().step(closure)

    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    if kind == "segmentation":
        body = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
        images = torch.randn(n_samples, 3, 5, 6, generator=generator)
        targets = torch.randint(0, 4, (n_samples, 5, 6), generator=generator)
    else:
        body = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
        images = torch.randn(n_samples, 3, 4, 4, generator=generator)
        targets = torch.randint(0, 5, (n_samples,), generator=generator)
    model = Recorded(body)
    model.eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.grad = torch.full_like(parameter, 3.0)  # stale gradients left by earlier code
    optimizer = RecordingSGD(model.parameters())
    losses = []

    def loss_fn(logits, target):
        loss = F.cross_entropy(logits, target)
        losses.append({"value": float(loss.detach()), "batch": int(target.shape[0])})
        return loss

    loader = DataLoader(TensorDataset(images, targets), batch_size=batch_size, shuffle=False)
    result = ns["unet_train_epoch"](model, loader, optimizer, loss_fn, "cpu")
    return {
        "result": result if type(result) in (int, float) else None,
        "result_type": type(result).__name__,
        "result_requires_grad": bool(getattr(result, "requires_grad", False)),
        "steps": optimizer.steps,
        "calls": model.calls,
        "losses": losses,
        "params": [p.detach().clone() for p in model.parameters()],
        "buffers": [b.detach().clone().double() for b in model.buffers()],
        "training_after": bool(model.training),
    }


# (kind, samples, batch size, seed): the last batch is smaller in every case
TRAIN_EPOCH_CASES = [("segmentation", 7, 3, 1), ("classifier", 10, 4, 2), ("segmentation", 5, 2, 3)]


def _train_runs(sub, ref):
    for kind, n_samples, batch_size, seed in TRAIN_EPOCH_CASES:
        what = f"{kind} model, {n_samples} samples in batches of {batch_size}"
        actual = sub.call(probe_train_epoch, kind, n_samples, batch_size, seed, timeout=FAST_S)
        expected = ref.call(probe_train_epoch, kind, n_samples, batch_size, seed)
        expect(type(actual) is dict, f"{what}: unet_train_epoch could not be run")
        yield what, actual, expected


@unit(
    "unet_train_epoch",
    points=1,
    message="The optimiser steps do not see the right gradients: call optimizer.zero_grad() before every "
    "backward pass (the parameters may arrive holding old gradients), loss.backward() on the batch's loss, then "
    "optimizer.step(), once per batch.",
)
def test_train_epoch_steps(sub, ref):
    """Does every batch give one optimiser step on exactly that batch's gradient, ending with the reference's parameters?"""
    for what, actual, expected in _train_runs(sub, ref):
        expect(
            len(actual["steps"]) == len(expected["steps"]),
            f"{what}: {len(actual['steps'])} optimiser steps, expected one per batch ({len(expected['steps'])})",
        )
        for i, (grads, expected_grads) in enumerate(zip(actual["steps"], expected["steps"])):
            assert_close(grads, expected_grads, what=f"{what}: gradients at step {i + 1}", rtol=1e-4, atol=1e-6)
        assert_close(actual["params"], expected["params"], what=f"{what}: parameters after the epoch", rtol=1e-4)


@unit(
    "unet_train_epoch",
    points=0.5,
    message="The model must be in training mode for every batch (model.train(): batch norm uses batch "
    "statistics), with gradients enabled, and stay in training mode.",
)
def test_train_epoch_training_mode(sub, ref):
    """Starting from eval mode, does every forward pass run in training mode with gradients on, every batch once?"""
    for what, actual, expected in _train_runs(sub, ref):
        calls = actual["calls"]
        expect(
            [c["batch"] for c in calls] == [c["batch"] for c in expected["calls"]],
            f"{what}: the model saw batches of {[c['batch'] for c in calls]}, "
            f"expected {[c['batch'] for c in expected['calls']]}",
        )
        expect(all(c["all_training"] for c in calls), f"{what}: the model was called in eval mode")
        expect(all(c["grad"] for c in calls), f"{what}: the model was called with gradients disabled")
        expect(actual["training_after"], f"{what}: the model was not left in training mode")
        assert_close(actual["buffers"], expected["buffers"], what=f"{what}: batch-norm running statistics", rtol=1e-4)


@unit(
    "unet_train_epoch",
    points=0.5,
    message="unet_train_epoch must return the mean loss per sample as a Python float: add loss.item() times "
    "the batch size and divide by the number of samples (not by the number of batches).",
)
def test_train_epoch_mean_loss(sub, ref):
    """Is the result a Python float equal to the mean of the batch losses weighted by the batch sizes?"""
    for what, actual, expected in _train_runs(sub, ref):
        expect(
            actual["result_type"] in ("float", "int"),
            f"{what}: returned a {actual['result_type']}"
            + (" that requires grad" if actual["result_requires_grad"] else "")
            + ", expected a Python float (use loss.item())",
        )
        assert_close(actual["result"], expected["result"], what=f"{what}: mean loss", rtol=1e-5)
