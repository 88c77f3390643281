"""Hidden checks of the CAM assignment (notebooks/cam/cam.ipynb), one section per graded unit.

Every check sends probes to the student's worker and compares the plain data that comes
back with the same probe run on the reference solution here. Points per unit add up to
the unit's `points` in the solution notebook (a kit test verifies this).

What the contract fixes, and so what is compared:
- cam_forward: logits and layer4 features (to float tolerance), parameters and every module's
  train/eval flag unchanged; in eval mode the batch-norm buffers too. In training mode net(x)
  itself updates the running statistics, so buffers are not compared there.
- cam_top1: the class exactly, the probability to float tolerance, the Python types.
- cam_compute / cam_overlay: uint8 results equal to the reference within one grey level
  (rounding versus truncation, float32 versus float64 and OpenCV's fixed-point bilinear
  interpolation may each move a value by one); two for cam_compute, where rounding before the
  resize and the resize's own rounding add up.
"""

from grader.harness import assert_close, expect, expect_tensor, unit, uses
from grader.probes import fingerprint, seed_params

FAST_TIMEOUT = 10  # seconds; these probes take milliseconds, so a hang fails quickly
FORWARD_TIMEOUT = 60


# --- probes -----------------------------------------------------------------------------------


@uses(seed_params, fingerprint)
def probe_forward(ns, batch, size, train):
    import torch
    import torchvision

    net = torchvision.models.resnet18(weights=None)
    seed_params(net)
    net.train(train)
    x = torch.randn((batch, 3, *size), generator=torch.Generator().manual_seed(17 + batch))

    def state():
        return {
            "params": torch.cat([fingerprint(p) for p in net.parameters()]),
            "buffers": torch.cat([fingerprint(b) for b in net.buffers()]),
            "modes": [bool(m.training) for m in net.modules()],
            "hooks": sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in net.modules()),
        }

    before = state()
    logits, features = ns["forward_with_features"](net, x)
    return {"logits": logits, "features": features, "before": before, "after": state()}


def probe_top1(ns, logits):
    idx, prob = ns["get_cls_pred"](logits.clone())
    return {"idx": idx, "prob": prob, "idx_type": type(idx).__name__, "prob_type": type(prob).__name__}


def probe_cam(ns, features, weights, idx, size):
    arguments = (features.numpy(), weights.numpy(), idx)
    cam = ns["return_cam"](*arguments) if size is None else ns["return_cam"](*arguments, size=tuple(size))
    return {"cam": cam, "type": f"{type(cam).__module__}.{type(cam).__name__}"}


def probe_overlay(ns, image, cam, alpha, beta):
    arguments = (image.numpy(), cam.numpy())
    if alpha is None:
        out = ns["overlay_cam"](*arguments)
    else:
        out = ns["overlay_cam"](*arguments, alpha=alpha, beta=beta)
    return {"out": out, "type": f"{type(out).__module__}.{type(out).__name__}"}


# --- comparisons --------------------------------------------------------------------------------


def _reply(value, what):
    expect(type(value) is dict, f"{what}: the result could not be read back")
    return value


def _expect_uint8_close(actual, expected, *, what, type_name, levels=1):
    """A uint8 NumPy result of the reference's shape, within `levels` grey levels of it."""
    import torch

    expect(type_name == "numpy.ndarray", f"{what} should be a NumPy array, got {type_name}")
    expect_tensor(actual, what=what, shape=expected.shape, dtype=torch.uint8)
    largest = int((actual.int() - expected.int()).abs().max()) if expected.numel() else 0
    expect(largest <= levels, f"{what} differs from the expected values (by up to {largest} grey levels)")


# --- cam_forward (2 points) ---------------------------------------------------------------------

FORWARD_CASES = ((1, (64, 96)), (3, (96, 64)))


def _check_forward(sub, ref, train):
    import torch

    mode = "training" if train else "eval"
    for batch, size in FORWARD_CASES:
        what = f"{mode} mode, batch of {batch}, input {size[0]}x{size[1]}"
        actual = _reply(sub.call(probe_forward, batch, size, train, timeout=FORWARD_TIMEOUT), what)
        expected = ref.call(probe_forward, batch, size, train)
        for key, name in (("logits", "logits"), ("features", "layer4 features")):
            expect_tensor(actual.get(key), what=f"{what}: {name}", shape=expected[key].shape)
            assert_close(actual[key], expected[key], what=f"{what}: {name} (same weights as the reference)", rtol=1e-4)
        before, after = actual["before"], actual["after"]
        expect(after["modes"] == before["modes"], f"{what}: the network's train/eval mode was changed")
        expect(
            after.get("hooks") == before.get("hooks"),
            f"{what}: a hook was left registered on the network (remove it, e.g. handle.remove() in a finally block)",
        )
        expect(torch.equal(after["params"], before["params"]), f"{what}: the network's parameters were changed")
        if not train:
            expect(
                torch.equal(after["buffers"], before["buffers"]),
                f"{what}: the batch-norm statistics were changed (was the network put in training mode?)",
            )


@unit(
    "cam_forward",
    points=1,
    message="For a network in eval mode, forward_with_features does not return net(x) "
    "and layer4's output, or it changes the network (parameters, buffers or mode).",
)
def test_forward_eval_mode(sub, ref):
    """In eval mode, for batches of 1 and 3, are the logits net(x), the features layer4's output, and the network untouched?"""
    _check_forward(sub, ref, train=False)


@unit(
    "cam_forward",
    points=1,
    message="For a network in training mode, the logits must still equal net(x) (batch "
    "statistics) and the network must stay in training mode with its parameters unchanged; do not call "
    "net.eval() or net.train() inside.",
)
def test_forward_training_mode(sub, ref):
    """In training mode, for batches of 1 and 3, are the logits net(x), the features layer4's output, and mode and parameters unchanged?"""
    _check_forward(sub, ref, train=True)


# --- cam_top1 (2 points) --------------------------------------------------------------------------


def _logits_cases():
    import torch

    generator = torch.Generator().manual_seed(5)
    cases = [torch.randn(1, 1000, generator=generator) * 3]  # ImageNet-like
    cases.append(-(torch.rand(1, 10, generator=generator) * 5 + 1))  # all negative
    cases.append(torch.tensor([[-2.0, -1.5, -3.0, -1.75]]))
    big = torch.randn(1, 20, generator=generator, dtype=torch.float64)
    big[0, 13] = 2.5
    cases.append(big)  # float64 logits
    return cases


def _near_tie_cases():
    import torch

    generator = torch.Generator().manual_seed(6)
    base = torch.randn(1, 50, generator=generator)
    base[0, 7], base[0, 31] = 4.0, 4.001  # the larger comes second: a near tie, not a tie
    pair = torch.tensor([[0.2, 0.2005]])
    negative = torch.tensor([[-7.0, -0.3001, -0.3, -5.0]])
    return [base, pair, negative]


def _number(value):
    """A class index or probability as a Python number (a one-element tensor is tolerated here)."""
    import torch

    if type(value) is torch.Tensor and value.numel() == 1:
        return value.item()
    return value


def _check_top1(sub, ref, cases, *, check_types):
    for i, logits in enumerate(cases):
        what = f"case {i + 1} ({logits.shape[1]} classes)"
        actual = _reply(sub.call(probe_top1, logits, timeout=FAST_TIMEOUT), what)
        expected = ref.call(probe_top1, logits)
        if check_types:
            expect(actual["idx_type"] == "int", f"{what}: idx is a {actual['idx_type']}, expected a Python int")
            expect(actual["prob_type"] == "float", f"{what}: prob is a {actual['prob_type']}, expected a Python float")
        idx, prob = _number(actual["idx"]), _number(actual["prob"])
        expect(type(idx) in (int, float) and idx == expected["idx"], f"{what}: wrong class")
        assert_close(prob, expected["prob"], what=f"{what}: probability", rtol=1e-5)


@unit(
    "cam_top1",
    points=1,
    message="get_cls_pred does not return the class with the highest softmax probability "
    "and that probability (softmax over the classes: the last axis of a (1, C) tensor).",
)
def test_top1_class_and_probability(sub, ref):
    """For many-class, all-negative and float64 logits, are the top-1 class and its probability right?"""
    _check_top1(sub, ref, _logits_cases(), check_types=False)


@unit(
    "cam_top1",
    points=1,
    message="get_cls_pred must return a Python int and a Python float (not tensors or NumPy "
    "scalars), and must pick the right class when two logits are very close.",
)
def test_top1_types_and_near_ties(sub, ref):
    """Are idx a Python int and prob a Python float, and right when the two best logits nearly tie?"""
    _check_top1(sub, ref, _near_tie_cases(), check_types=True)


# --- cam_compute (2 points) ----------------------------------------------------------------------


def _random_cam_inputs(seed, channels, height, width, n_class):
    import torch

    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(1, channels, height, width, generator=generator).abs()  # post-ReLU features
    weights = torch.randn(n_class, channels, generator=generator) * 0.05
    return features, weights


def _check_cams(sub, ref, cases):
    for i, (features, weights, idx, size) in enumerate(cases):
        shown = "the default size" if size is None else f"size={tuple(size)}"
        what = f"case {i + 1}: CAM of a {features.shape[2]}x{features.shape[3]} map at {shown}"
        actual = _reply(sub.call(probe_cam, features, weights, idx, size, timeout=FAST_TIMEOUT), what)
        expected = ref.call(probe_cam, features, weights, idx, size)
        # Rounding (not truncating) before cv2.resize moves a value by one, and the bilinear
        # resize's own fixed-point rounding by one more: two grey levels.
        _expect_uint8_close(actual.get("cam"), expected["cam"], what=what, type_name=actual.get("type"), levels=2)


@unit(
    "cam_compute",
    points=1,
    message="return_cam differs from the expected map: weight_fc[idx] @ features "
    "reshaped (C, h*w), reshaped (h, w), min-max scaled to [0, 255], uint8, then cv2.resize.",
)
def test_cam_square_sizes(sub, ref):
    """For random features and weights, is the CAM right at the default size and other square sizes?"""
    cases = [
        (*_random_cam_inputs(1, 64, 7, 7, 10), 3, None),
        (*_random_cam_inputs(2, 512, 7, 7, 1000), 281, (224, 224)),
        (*_random_cam_inputs(3, 32, 4, 4, 5), 0, (64, 64)),
        (*_random_cam_inputs(4, 16, 5, 3, 6), 5, (96, 96)),
    ]
    _check_cams(sub, ref, cases)


@unit(
    "cam_compute",
    points=0.5,
    message="For non-square sizes the CAM has the wrong shape or values: size is "
    "(height, width) of the result, and cv2.resize takes (width, height).",
)
def test_cam_non_square_sizes(sub, ref):
    """Is size read as (height, width) for non-square sizes, with the right values?"""
    cases = [
        (*_random_cam_inputs(5, 32, 3, 5, 8), 2, (100, 160)),
        (*_random_cam_inputs(6, 32, 6, 4, 8), 7, (90, 45)),
        (*_random_cam_inputs(7, 64, 7, 7, 10), 1, (37, 50)),
    ]
    _check_cams(sub, ref, cases)


@unit(
    "cam_compute",
    points=0.5,
    message="A constant CAM must give an all-zero uint8 map of the requested size (avoid dividing by zero).",
)
def test_cam_constant_map(sub, ref):
    """Does a constant map (zero features, or features constant over the image) give all zeros?"""
    import torch

    generator = torch.Generator().manual_seed(8)
    # Small integers make every position's dot product exact, so the map is exactly constant.
    channel_values = torch.randint(0, 4, (1, 16, 1, 1), generator=generator).float()
    spatially_constant = channel_values.expand(1, 16, 5, 6).contiguous()
    integer_weights = torch.randint(-3, 4, (4, 16), generator=generator).float()
    cases = [
        (torch.zeros(1, 32, 7, 7), torch.randn(5, 32, generator=generator), 1, (40, 24)),
        (spatially_constant, integer_weights, 2, None),
        (torch.rand(1, 16, 4, 4, generator=generator), torch.zeros(3, 16), 0, (20, 20)),
    ]
    _check_cams(sub, ref, cases)


# --- cam_overlay (2 points) ----------------------------------------------------------------------


def _overlay_inputs(seed, image_hw, cam_hw):
    import torch

    generator = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 256, (*image_hw, 3), generator=generator, dtype=torch.uint8)
    cam = torch.randint(0, 256, cam_hw, generator=generator, dtype=torch.uint8)
    return image, cam


def _check_overlays(sub, ref, cases):
    for i, (image, cam, alpha, beta) in enumerate(cases):
        weights = "default alpha, beta" if alpha is None else f"alpha={alpha}, beta={beta}"
        what = (
            f"case {i + 1}: overlay of a {cam.shape[0]}x{cam.shape[1]} CAM on a "
            f"{image.shape[0]}x{image.shape[1]} image ({weights})"
        )
        actual = _reply(sub.call(probe_overlay, image, cam, alpha, beta, timeout=FAST_TIMEOUT), what)
        expected = ref.call(probe_overlay, image, cam, alpha, beta)
        _expect_uint8_close(actual.get("out"), expected["out"], what=what, type_name=actual.get("type"))


@unit(
    "cam_overlay",
    points=1,
    message="With the default weights, overlay_cam differs from the expected blend: "
    "resize the cam to the image (cv2.resize, (width, height)), cv2.applyColorMap(..., COLORMAP_JET), "
    "heatmap * alpha + image * beta, clip, uint8.",
)
def test_overlay_default_weights(sub, ref):
    """With alpha=0.3 and beta=0.5, is the overlay right for images larger, smaller and not shaped like the cam?"""
    cases = [
        (*_overlay_inputs(1, (120, 90), (256, 256)), None, None),
        (*_overlay_inputs(2, (33, 47), (7, 7)), None, None),
        (*_overlay_inputs(3, (64, 200), (50, 20)), None, None),
    ]
    _check_overlays(sub, ref, cases)


@unit(
    "cam_overlay",
    points=1,
    message="With other weights, overlay_cam differs from heatmap * alpha + image * beta "
    "clipped to [0, 255] (values above 255 must saturate, not wrap around).",
)
def test_overlay_other_weights_and_clipping(sub, ref):
    """For other alpha/beta, including sums above 255 that must be clipped, is the overlay right?"""
    cases = [
        (*_overlay_inputs(4, (80, 60), (14, 14)), 0.6, 0.4),
        (*_overlay_inputs(5, (45, 70), (256, 256)), 1.0, 1.0),
        (*_overlay_inputs(6, (30, 30), (9, 12)), 0.0, 1.0),
    ]
    _check_overlays(sub, ref, cases)


# --- cam_features (2 points) ---------------------------------------------------------------------
# Checked on the reference forward_with_features when the reference uses it (fair units).


@uses(seed_params, fingerprint)
def probe_features(ns, n_images, size, batch_sizes, train, as_list, label_dtype):
    """cam_features on a seeded ResNet-18 for several batch sizes; the network's state before and after."""
    import torch
    import torchvision
    from torch.utils.data import DataLoader, TensorDataset

    net = torchvision.models.resnet18(weights=None)
    seed_params(net)
    net.train(train)
    generator = torch.Generator().manual_seed(23 + n_images)
    images = torch.randn((n_images, 3, *size), generator=generator)
    labels = torch.randint(0, 10, (n_images,), generator=generator).to(getattr(torch, label_dtype))
    grad_modes = []
    probe_hook = net.conv1.register_forward_hook(
        lambda module, inputs, output: grad_modes.append(torch.is_grad_enabled())
    )

    def state():
        return {
            "params": torch.cat([fingerprint(p) for p in net.parameters()]),
            "buffers": torch.cat([fingerprint(b) for b in net.buffers()]),
            "modes": [bool(m.training) for m in net.modules()],
            "hooks": sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in net.modules()),
            "fc": type(net.fc).__name__,
        }

    before = state()
    runs = []
    for batch_size in batch_sizes:
        if as_list:
            loader = [(images[i : i + batch_size], labels[i : i + batch_size]) for i in range(0, n_images, batch_size)]
        else:
            loader = DataLoader(TensorDataset(images, labels), batch_size=batch_size, shuffle=False)
        features, feature_labels = ns["cam_features"](net, loader)
        runs.append(
            {
                "features": features,
                "labels": feature_labels,
                "requires_grad": bool(getattr(features, "requires_grad", False)),
            }
        )
    after = state()
    probe_hook.remove()
    return {"runs": runs, "before": before, "after": after, "grad_modes": grad_modes}


def _features_reply(sub, ref, *args):
    what = "{} images of {}x{}, batches of {}, network in {} mode".format(
        args[0], args[1][0], args[1][1], "/".join(str(b) for b in args[2]), "training" if args[3] else "eval"
    )
    actual = _reply(sub.call(probe_features, *args, timeout=FORWARD_TIMEOUT), what)
    return what, actual, ref.call(probe_features, *args)


@unit(
    "cam_features",
    points=1,
    message="cam_features must return the input of net.fc (layer4's output averaged over h x w) as a float32 "
    "(N, 512) tensor and the labels as an int64 (N,) tensor, in the loader's order, computed in eval mode.",
)
def test_features_values(sub, ref):
    """Are the features the pooled layer4 output of every image (eval mode) and the labels the loader's, in order?"""
    import torch

    for args in ((7, (64, 64), [3], False, False, "int64"), (5, (64, 96), [2], False, True, "int32")):
        what, actual, expected = _features_reply(sub, ref, *args)
        for run, expected_run in zip(actual["runs"], expected["runs"]):
            features = expect_tensor(run["features"], what=f"{what}: features", shape=expected_run["features"].shape)
            expect(features.dtype == torch.float32, f"{what}: features should be float32, got {features.dtype}")
            assert_close(features, expected_run["features"], what=f"{what}: features", rtol=1e-4)
            labels = expect_tensor(run["labels"], what=f"{what}: labels", shape=expected_run["labels"].shape)
            expect(labels.dtype == torch.int64, f"{what}: labels should be int64, got {labels.dtype}")
            expect(torch.equal(labels, expected_run["labels"]), f"{what}: labels differ from the loader's (order?)")


@unit(
    "cam_features",
    points=0.5,
    message="The features must not depend on the batch size: run the network in eval mode (net.eval()), so "
    "batch norm uses its running statistics, even when it arrives in training mode.",
)
def test_features_batch_size_invariant(sub, ref):
    """For a network in training mode, are the features the same for batches of 1, 2 and 7 (and the reference's)?"""
    what, actual, expected = _features_reply(sub, ref, 7, (64, 64), [1, 2, 7], True, False, "int64")
    for batch_size, run, expected_run in zip((1, 2, 7), actual["runs"], expected["runs"]):
        expect_tensor(run["features"], what=f"{what}: features", shape=expected_run["features"].shape)
        assert_close(
            run["features"], expected_run["features"], what=f"{what}: features (batch {batch_size})", rtol=1e-4
        )


@unit(
    "cam_features",
    points=0.5,
    message="cam_features must leave the network as it was (every module back in its previous mode, "
    "parameters, batch-norm statistics and hooks unchanged) and record no gradients (torch.no_grad()).",
)
def test_features_network_untouched(sub, ref):
    """Is the network back in its mode (training or eval), with parameters, statistics and hooks unchanged, and no gradients recorded?"""
    import torch

    for train in (True, False):
        what, actual, _ = _features_reply(sub, ref, 4, (64, 64), [2], train, True, "int64")
        before, after = actual["before"], actual["after"]
        expect(after["modes"] == before["modes"], f"{what}: the network's modules were not put back in their modes")
        expect(after["hooks"] == before["hooks"], f"{what}: a hook was left registered on the network")
        expect(after["fc"] == before["fc"], f"{what}: net.fc was replaced")
        expect(torch.equal(after["params"], before["params"]), f"{what}: the network's parameters were changed")
        expect(
            torch.equal(after["buffers"], before["buffers"]),
            f"{what}: the batch-norm statistics were changed (was the network run in training mode?)",
        )
        expect(
            actual["grad_modes"] and not any(actual["grad_modes"]), f"{what}: the network ran with gradients enabled"
        )
        expect(not any(run["requires_grad"] for run in actual["runs"]), f"{what}: the features require grad")
