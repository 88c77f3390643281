"""Hidden checks of the FCN assignment (notebooks/fcn/fcn.ipynb), one section per graded unit.

Every check sends probes to the student's worker and compares the plain data that comes
back with the same probe run on the reference solution here. Points per unit add up to
the unit's `points` in the solution notebook (a kit test verifies this).
"""

import torch

from assignments._shared.metric_checks import (
    check_confusion_counts,
    check_confusion_dtypes,
    check_iou_values,
    check_mean_iou,
)
from grader.harness import Feedback, assert_close, expect, expect_tensor, unit, uses
from grader.probes import backbone_keys, fingerprint, make_input, seed_params

N_CLASS = 5
# Tiny (the padding-100 trick), and a batch of two odd-H, even-W, non-square inputs (ceil-mode pools,
# crops, H/W mix-ups). Padded by 100 every input is a VGG16 forward at >= 200 px (about 0.3 s of CPU
# each), so the second is small too: 5 x 8 tells the same bugs apart as 37 x 50 did, at 70% of its cost.
SIZES = [(1, 3, 1, 1), (2, 3, 5, 8)]
RESNET_SIZES = [(1, 3, 64, 64), (2, 3, 32, 96), (1, 3, 50, 70), (1, 3, 7, 33)]


# --- probes -----------------------------------------------------------------------------------


def probe_kernel(ns, channels, k):
    return ns["get_upsampling_weight"](channels, channels, k)


def probe_ramp_upsampling(ns):
    import torch
    import torch.nn.functional as F

    ramp = torch.arange(8, dtype=torch.float32).view(1, 1, 1, 8).expand(1, 1, 8, 8).contiguous()
    weight = ns["get_upsampling_weight"](1, 1, 4)
    return F.conv_transpose2d(ramp, weight, stride=2, padding=1)


@uses(seed_params, backbone_keys, make_input)
def probe_fcn_model(ns, class_name, model_args, sizes, key_mode=None):
    """Build the model once; report parameter shapes, initial state and outputs under seeded weights.

    Student exceptions are caught per stage, so a broken forward does not hide a correct constructor.
    """
    import torch
    import torch.nn as nn

    def error(exc):
        return f"{type(exc).__name__}: {exc}"[:300]

    result = {"errors": {}}
    try:
        model = ns[class_name](*model_args)
    except Exception as exc:
        result["errors"]["build"] = error(exc)
        return result
    try:
        result["shapes"] = {name: list(p.shape) for name, p in model.named_parameters()}
        n_class = model_args[0]
        init = {"transposed": {}, "bilinear": {}, "score": {}, "trunk_std": {}}
        for name, module in model.named_modules():
            if isinstance(module, nn.ConvTranspose2d):
                init["transposed"][name] = module.weight.detach().clone()
                init["bilinear"][name] = ns["get_upsampling_weight"](n_class, n_class, module.kernel_size[0])
            elif name.startswith("score"):
                init["score"][name] = float(module.weight.detach().abs().sum() + module.bias.detach().abs().sum())
            elif isinstance(module, nn.Conv2d) and not name.startswith("backbone"):
                # A strided sample of at most 2**20 weights: a constant layer is constant in it too, and
                # fc6's 102 M weights cost no more than a conv's.
                flat = module.weight.detach().reshape(-1)
                init["trunk_std"][name] = float(flat[:: max(1, flat.numel() >> 20)].std())
        result["init"] = init
    except Exception as exc:
        result["errors"]["inspect"] = error(exc)
    try:
        seed_params(model, backbone_keys(model) if key_mode == "backbone" else None)
        model.eval()
        outputs = []
        with torch.no_grad():
            for i, size in enumerate(sizes):
                outputs.append(model(make_input(tuple(size), 1000 + i)))
        result["outputs"] = outputs
    except Exception as exc:
        result["errors"]["forward"] = error(exc)
    return result


def model_report(side, class_name, model_args, sizes, key_mode=None, stage=None):
    """One memoized probe per model; `stage` raises Feedback if that part of it failed."""
    report = side.call(probe_fcn_model, class_name, model_args, sizes, key_mode, timeout=90, memo=True)
    expect(type(report) is dict and type(report.get("errors")) is dict, f"{class_name} could not be probed")
    errors = report["errors"]
    if "build" in errors:
        raise Feedback(f"{class_name}{tuple(model_args)} raised {errors['build']}")
    if stage in errors:
        raise Feedback(f"{class_name} raised {errors[stage]}")
    return report


@uses(seed_params, fingerprint)
def probe_vgg_copy(ns):
    import torch.nn as nn
    import torchvision

    class FCNLayers(nn.Module):
        """Just the layers copy_params_from_vgg16 fills (independent of the student's FCN classes)."""

        def __init__(self):
            super().__init__()
            channels = [
                (3, 64),
                (64, 64),
                (64, 128),
                (128, 128),
                (128, 256),
                (256, 256),
                (256, 256),
                (256, 512),
                (512, 512),
                (512, 512),
                (512, 512),
                (512, 512),
                (512, 512),
            ]
            names = [
                "conv1_1",
                "conv1_2",
                "conv2_1",
                "conv2_2",
                "conv3_1",
                "conv3_2",
                "conv3_3",
                "conv4_1",
                "conv4_2",
                "conv4_3",
                "conv5_1",
                "conv5_2",
                "conv5_3",
            ]
            for name, (cin, cout) in zip(names, channels):
                setattr(self, name, nn.Conv2d(cin, cout, 3, padding=100 if name == "conv1_1" else 1))
            self.fc6 = nn.Conv2d(512, 4096, 7)
            self.fc7 = nn.Conv2d(4096, 4096, 1)
            self.score_fr = nn.Conv2d(4096, 3, 1)

    import torch

    # Built on the meta device and then given memory: skips PyTorch's (slow) default init.
    with torch.device("meta"):
        vgg = torchvision.models.vgg16(weights=None)
        target = FCNLayers()
    vgg = vgg.to_empty(device="cpu")
    seed_params(vgg, lambda name: "vgg." + name)
    target = target.to_empty(device="cpu")
    with torch.no_grad():
        for tensor in target.state_dict().values():
            tensor.fill_(0.5)  # a value no VGG weight has: anything left uncopied shows
    ns["copy_params_from_vgg16"](target, vgg)
    return {name: fingerprint(t) for name, t in target.state_dict().items()}


# --- fcn_bilinear (2 points) --------------------------------------------------------------------


@unit(
    "fcn_bilinear",
    points=1,
    message="get_upsampling_weight does not give the exact bilinear kernel "
    "for every kernel size (check factor and center for odd and even k).",
)
def test_bilinear_exact_kernels(sub, ref):
    """Is the kernel exact for every odd and even size k = 1..16 and for k = 64?"""
    for k in [*range(1, 17), 64]:
        assert_close(sub.call(probe_kernel, 2, k), ref.call(probe_kernel, 2, k), what=f"kernel for k={k}", rtol=1e-6)


@unit(
    "fcn_bilinear",
    points=0.5,
    message="The weight must be a float32 tensor (in, out, k, k) with the kernel "
    "only at [i, i] (one per channel) and zeros elsewhere.",
)
def test_bilinear_diagonal_shape_dtype(sub, ref):
    """Is the kernel placed on the channel diagonal only, with the right shape and dtype?"""
    for channels, k in ((3, 4), (5, 3), (1, 2)):
        actual = sub.call(probe_kernel, channels, k)
        expected = ref.call(probe_kernel, channels, k)
        expect_tensor(actual, what=f"weight for {channels} channels, k={k}", shape=expected.shape, dtype=expected.dtype)
        assert_close(actual, expected, what=f"weight for {channels} channels, k={k}", rtol=1e-6)


@unit(
    "fcn_bilinear",
    points=0.5,
    message="A transposed convolution initialised with your weights does not "
    "upsample a linear ramp like bilinear interpolation.",
)
def test_bilinear_upsamples_ramp(sub, ref):
    """Does a stride-2 transposed convolution with the k=4 kernel upsample a ramp bilinearly?"""
    assert_close(sub.call(probe_ramp_upsampling), ref.call(probe_ramp_upsampling), what="upsampled ramp")


# --- fcn_conv_size (2 points) ---------------------------------------------------------------------


def probe_conv_sizes(ns, cases):
    """conv_output_size on each case (a dict of keyword arguments): an int, or what else came back."""
    import operator

    results = []
    for case in cases:
        value = ns["conv_output_size"](**case)
        try:
            results.append("a bool" if isinstance(value, bool) else operator.index(value))
        except TypeError:
            results.append(f"a {type(value).__name__}")
    return results


def torch_output_size(case):
    """The output size PyTorch's own layer gives for a case, or None if PyTorch rejects it."""
    import torch
    import torch.nn as nn

    settings = {k: case[k] for k in ("stride", "padding", "dilation")}
    if case.get("transposed"):
        layer = nn.ConvTranspose2d(1, 1, case["kernel"], output_padding=case["output_padding"], **settings)
    elif "ceil_mode" in case:
        layer = nn.MaxPool2d(case["kernel"], ceil_mode=case["ceil_mode"], **settings)
    else:
        layer = nn.Conv2d(1, 1, case["kernel"], **settings)
    try:
        with torch.no_grad():
            return int(layer(torch.zeros(1, 1, case["size"], case["size"])).shape[-1])
    except RuntimeError:  # output size below 1, or settings PyTorch refuses
        return None


def conv_cases(seed, count=40):
    import random

    rng = random.Random(seed)
    cases = []
    while len(cases) < count:
        kernel = rng.randint(1, 11)
        case = {
            "size": rng.randint(1, 300),
            "kernel": kernel,
            "stride": rng.randint(1, 5),
            "padding": rng.randint(0, kernel + 2),
            "dilation": rng.randint(1, 3),
        }
        if torch_output_size(case) is not None:
            cases.append(case)
    return cases


def pool_cases(seed, count=40):
    """Max-pooling in both modes; at least a quarter of the ceil-mode cases hit PyTorch's rule that
    the last window must start inside the input or the left padding."""
    import random

    rng = random.Random(seed)
    cases, rule_cases = [], []
    while len(cases) < count or len(rule_cases) < count // 4:
        kernel = rng.randint(1, 7)
        case = {
            "size": rng.randint(1, 120),
            "kernel": kernel,
            "stride": rng.randint(1, kernel + 2),
            "padding": rng.randint(0, kernel // 2),
            "dilation": rng.randint(1, 2),
            "ceil_mode": rng.random() < 0.7,
        }
        expected = torch_output_size(case)
        if expected is None:
            continue
        span = case["dilation"] * (kernel - 1)
        rounded_up = -(-(case["size"] + 2 * case["padding"] - span - 1) // case["stride"]) + 1
        if case["ceil_mode"] and rounded_up != expected:
            rule_cases.append(case)
        elif len(cases) < count:
            cases.append(case)
    return cases + rule_cases[: count // 4]


def transposed_cases(seed, count=40):
    import random

    rng = random.Random(seed)
    cases = []
    while len(cases) < count:
        kernel, stride, dilation = rng.randint(1, 8), rng.randint(1, 5), rng.randint(1, 3)
        case = {
            "size": rng.randint(1, 100),
            "kernel": kernel,
            "stride": stride,
            "padding": rng.randint(0, kernel),
            "dilation": dilation,
            "transposed": True,
            "output_padding": rng.randint(0, max(stride, dilation) - 1),
        }
        if torch_output_size(case) is not None:
            cases.append(case)
    return cases


def _check_sizes(sub, cases, layer):
    actual = sub.call(probe_conv_sizes, cases)
    expect(type(actual) is list and len(actual) == len(cases), "conv_output_size could not be run on every case")
    for case, value in zip(cases, actual):
        arguments = ", ".join(f"{k}={v}" for k, v in case.items())
        expect(type(value) is int, f"conv_output_size({arguments}) returned {value}, not a Python int")
        expect(
            value == torch_output_size(case),
            f"conv_output_size({arguments}) returned {value}, which is not the size {layer} gives",
        )


@unit(
    "fcn_conv_size",
    points=0.75,
    message="conv_output_size differs from the output size of nn.Conv2d (check how the padding, the "
    "dilated kernel's span and the stride enter, and that the division rounds down).",
)
def test_conv_sizes(sub, ref):
    """Does conv_output_size give nn.Conv2d's output size for random sizes, kernels, strides, paddings and dilations?"""
    _check_sizes(sub, conv_cases(seed=1), "nn.Conv2d")


@unit(
    "fcn_conv_size",
    points=0.75,
    message="conv_output_size differs from the output size of nn.MaxPool2d (ceil_mode=True rounds up, but "
    "PyTorch drops a last window that would start in the right padding).",
)
def test_pool_sizes(sub, ref):
    """Does it give nn.MaxPool2d's output size in floor and ceil mode, including the last-window rule?"""
    _check_sizes(sub, pool_cases(seed=2), "nn.MaxPool2d")


@unit(
    "fcn_conv_size",
    points=0.5,
    message="conv_output_size(..., transposed=True) differs from the output size of nn.ConvTranspose2d "
    "(stride, padding on both sides, dilation and output_padding).",
)
def test_transposed_sizes(sub, ref):
    """Does it give nn.ConvTranspose2d's output size, with dilation and output_padding?"""
    _check_sizes(sub, transposed_cases(seed=3), "nn.ConvTranspose2d")


# --- fcn_crop (2 points) --------------------------------------------------------------------------


def probe_crop_offsets(ns, stacks):
    """crop_offset on each stack of (kind, kernel, stride, padding) layers: an int, or what else came back."""
    import operator

    results = []
    for layers in stacks:
        value = ns["crop_offset"]([tuple(layer) for layer in layers])
        try:
            results.append("a bool" if isinstance(value, bool) else operator.index(value))
        except TypeError:
            results.append(f"a {type(value).__name__}")
    return results


def offset_of(layers):
    """The check's own reference: walk back from the output, mapping an output coordinate y to the
    input coordinate x = a * y + b it lies over. Returns (a, -b): a == 1 when the strides cancel,
    and then output pixel i + c lies over input pixel i with c = -b."""
    from fractions import Fraction

    a, b = Fraction(1), Fraction(0)
    for kind, kernel, stride, padding in reversed(layers):
        centre = Fraction(kernel - 1, 2) - padding
        if kind == "transposed":  # output y of this layer lies over its input (y - centre) / stride
            a, b = a / stride, (b - centre) / stride
        else:  # output y lies over its input stride * y + centre
            a, b = a * stride, b * stride + centre
    return a, -b


def random_stacks(seed, count=30):
    """Random stacks whose strides cancel and whose offset is a whole number of pixels."""
    import random

    rng = random.Random(seed)
    stacks = []
    while len(stacks) < count:
        layers, total = [], 1
        for _ in range(rng.randint(1, 3)):
            stride = rng.choice([2, 2, 3])
            kernel = rng.choice([stride, stride + 1, 2 * stride - 1, 3])
            layers.append((rng.choice(["conv", "pool"]), kernel, stride, rng.randint(0, kernel // 2)))
            total *= stride
        ups = [total] if rng.random() < 0.5 else [s for s in (2, 3) for _ in range(_multiplicity(total, s))]
        for stride in ups:
            kernel = rng.choice([2 * stride, stride, 2 * stride + 1, stride + 1])
            layers.append(("transposed", kernel, stride, rng.randint(0, kernel // 2)))
        for _ in range(rng.randint(0, 4)):  # stride-1 layers anywhere
            kernel = rng.choice([1, 3, 5, 7])
            kind = rng.choice(["conv", "conv", "pool", "transposed"])
            layers.insert(rng.randint(0, len(layers)), (kind, kernel, 1, rng.randint(0, kernel)))
        scale, offset = offset_of(layers)
        if scale == 1 and offset.denominator == 1:
            stacks.append(layers)
    return stacks


def _multiplicity(number, factor):
    count = 0
    while number % factor == 0:
        number //= factor
        count += 1
    return count


def single_layer_stacks():
    """Stride-1 layers alone and in pairs: the sign convention and the role of kernel and padding."""
    stacks = [[("conv", k, 1, p)] for k in (1, 3, 5, 7) for p in (0, 1, 3, 10)]
    stacks += [[("pool", k, 1, p)] for k in (1, 3, 5) for p in range(k // 2 + 1)]
    stacks += [[("transposed", k, 1, p)] for k in (1, 3, 5) for p in (0, 1, 2)]
    stacks += [[("conv", 3, 1, 0), ("transposed", 5, 1, 0)], [("conv", 5, 1, 100), ("conv", 3, 1, 0)]]
    return stacks


def fcn_stacks():
    """The paths of FCN-32s/16s/8s (built here, independent of the notebook's tables)."""
    conv, pool, score, up2 = ("conv", 3, 1, 1), ("pool", 2, 2, 0), ("conv", 1, 1, 0), ("transposed", 4, 2, 0)
    to_pool3 = [("conv", 3, 1, 100), conv, pool, conv, conv, pool, conv, conv, conv, pool]
    pool3_to_pool4 = [conv, conv, conv, pool]
    pool4_to_fc7 = [conv, conv, conv, pool, ("conv", 7, 1, 0), ("conv", 1, 1, 0)]
    to_fc7 = to_pool3 + pool3_to_pool4 + pool4_to_fc7
    return [
        to_fc7 + [score, ("transposed", 64, 32, 0)],  # FCN-32s: 19
        pool4_to_fc7 + [score, up2],  # pool4 -> upscore2: -5
        to_fc7 + [score, up2, ("transposed", 32, 16, 0)],  # FCN-16s: 27
        pool3_to_pool4 + pool4_to_fc7 + [score, up2, up2],  # pool3 -> upscore_pool4: -9
        to_fc7 + [score, up2, up2, ("transposed", 16, 8, 0)],  # FCN-8s: 31
    ]


def _check_offsets(sub, stacks, what):
    actual = sub.call(probe_crop_offsets, stacks)
    expect(type(actual) is list and len(actual) == len(stacks), "crop_offset could not be run on every stack")
    for i, (layers, value) in enumerate(zip(stacks, actual)):
        expect(type(value) is int, f"crop_offset returned {value}, not a Python int")
        expect(value == int(offset_of(layers)[1]), f"{what} {i + 1} of {len(stacks)}: the offset is wrong")


@unit(
    "fcn_crop",
    points=0.5,
    message="crop_offset is wrong for single stride-1 layers: output pixel i + c must lie over input "
    "pixel i (a 3x3 convolution without padding gives -1; padding moves the output the other way; a "
    "transposed convolution moves it the opposite way to a convolution).",
)
def test_crop_single_layers(sub, ref):
    """Is the offset right for single convolutions, pools and transposed convolutions of stride 1?"""
    _check_offsets(sub, single_layer_stacks(), "stride-1 stack")


@unit(
    "fcn_crop",
    points=1,
    message="crop_offset is wrong on stacks that downsample and upsample: compose each layer's affine "
    "coordinate map in order (a stride divides coordinates, a transposed stride multiplies them).",
)
def test_crop_random_stacks(sub, ref):
    """Is the offset right on random stacks of convolutions, pools and transposed convolutions whose strides cancel?"""
    _check_offsets(sub, random_stacks(seed=4), "random stack")


@unit(
    "fcn_crop",
    points=0.5,
    message="crop_offset is wrong on the FCN paths: the FCN-32s stack must give 19, and the paths behind "
    "the crops 5, 27, 9 and 31 of FCN-16s and FCN-8s their offsets.",
)
def test_crop_fcn_stacks(sub, ref):
    """Does it give 19 for FCN-32s and the offsets behind FCN-16s's and FCN-8s's crops (5, 27, 9, 31)?"""
    _check_offsets(sub, fcn_stacks(), "FCN path")


# --- fcn32s / fcn16s / fcn8s (3 points each) ---------------------------------------------------


def _check_architecture(sub, ref, class_name):
    expected = model_report(ref, class_name, (N_CLASS,), SIZES)["shapes"]
    actual = model_report(sub, class_name, (N_CLASS,), SIZES, stage="inspect").get("shapes")
    expect(type(actual) is dict, "named_parameters could not be listed")
    missing = [n for n in expected if n not in actual]
    extra = [n for n in actual if n not in expected]
    expect(not missing, f"parameters missing or misnamed: {missing[:6]}")
    expect(not extra, f"unexpected parameters: {extra[:6]}")
    wrong = [n for n in expected if actual[n] != expected[n]]
    expect(not wrong, "wrong shapes: " + ", ".join(f"{n} {actual[n]} (expected {expected[n]})" for n in wrong[:4]))


def _check_outputs(sub, ref, class_name, model_args=(N_CLASS,), sizes=SIZES, key_mode=None, label=""):
    expected = model_report(ref, class_name, model_args, sizes, key_mode)["outputs"]
    actual = model_report(sub, class_name, model_args, sizes, key_mode, stage="forward").get("outputs")
    expect(type(actual) is list and len(actual) == len(expected), f"{label}forward did not return one output per input")
    for size, a, e in zip(sizes, actual, expected):
        expect_tensor(a, what=f"{label}output for input {size}", shape=e.shape)
    for size, a, e in zip(sizes, actual, expected):
        assert_close(a, e, what=f"{label}output for input {size} (same weights as the reference)", rtol=1e-3)


def _check_init(sub, ref, class_name):
    expected = model_report(ref, class_name, (N_CLASS,), SIZES)["init"]
    result = model_report(sub, class_name, (N_CLASS,), SIZES, stage="inspect").get("init")
    expect(type(result) is dict, f"{class_name}'s layers could not be inspected")
    expect(
        sorted(result["transposed"]) == sorted(expected["transposed"]),
        f"transposed convolutions {sorted(result['transposed'])}, expected {sorted(expected['transposed'])}",
    )
    for name, weight in result["transposed"].items():
        assert_close(
            weight, result["bilinear"][name], what=f"{name} initial weight vs get_upsampling_weight", rtol=1e-6
        )
    for name, total in result["score"].items():
        expect(total == 0, f"{name} should start at zero")
    expect(sorted(result["score"]) == sorted(expected["score"]), "score layers are missing or misnamed")
    zero = [name for name, std in result["trunk_std"].items() if not std > 0]
    expect(not zero, f"the trunk must keep PyTorch's default initialisation; these are constant: {zero[:4]}")


@unit("fcn32s", points=1, message="FCN32s's parameters do not match the specification (names and shapes).")
def test_fcn32s_architecture(sub, ref):
    """Does FCN32s have exactly the specified parameters (conv1_1..conv5_3, fc6, fc7, score_fr, upscore)?"""
    _check_architecture(sub, ref, "FCN32s")


@unit(
    "fcn32s",
    points=1.5,
    message="With the same weights as the reference, FCN32s gives different outputs "
    "(check the padding of conv1_1, ceil_mode of the pools and the final crop offset 19, which comes from "
    "crop_offset).",
)
def test_fcn32s_outputs(sub, ref):
    """With identical weights, does FCN32s give the reference output for tiny, odd and even input sizes?"""
    _check_outputs(sub, ref, "FCN32s")


@unit("fcn32s", points=0.5, message="FCN32s's initialisation is wrong: upscore bilinear, score_fr zero, trunk default.")
def test_fcn32s_init(sub, ref):
    """Does FCN32s start with a bilinear upscore, a zero score layer and a randomly initialised trunk?"""
    _check_init(sub, ref, "FCN32s")


@unit("fcn16s", points=1, message="FCN16s's parameters do not match the specification (names and shapes).")
def test_fcn16s_architecture(sub, ref):
    """Does FCN16s have exactly the specified parameters (trunk, score_pool4, upscore2, upscore16; no upscore)?"""
    _check_architecture(sub, ref, "FCN16s")


@unit(
    "fcn16s",
    points=1.5,
    message="With the same weights as the reference, FCN16s gives different outputs "
    "(check the pool4 crop offset 5, the fusion and the final crop offset 27).",
)
def test_fcn16s_outputs(sub, ref):
    """With identical weights, does FCN16s give the reference output for tiny, odd and even input sizes?"""
    _check_outputs(sub, ref, "FCN16s")


@unit(
    "fcn16s",
    points=0.5,
    message="FCN16s's initialisation is wrong: transposed convolutions bilinear, score layers zero.",
)
def test_fcn16s_init(sub, ref):
    """Does FCN16s start with bilinear upsampling and zero score layers?"""
    _check_init(sub, ref, "FCN16s")


@unit("fcn8s", points=1, message="FCN8s's parameters do not match the specification (names and shapes).")
def test_fcn8s_architecture(sub, ref):
    """Does FCN8s have exactly the specified parameters (score_pool3/4, upscore2, upscore_pool4, upscore8)?"""
    _check_architecture(sub, ref, "FCN8s")


@unit(
    "fcn8s",
    points=1.5,
    message="With the same weights as the reference, FCN8s gives different outputs "
    "(check the crop offsets 5 and 9, the fusions and the final crop offset 31).",
)
def test_fcn8s_outputs(sub, ref):
    """With identical weights, does FCN8s give the reference output for tiny, odd and even input sizes?"""
    _check_outputs(sub, ref, "FCN8s")


@unit(
    "fcn8s", points=0.5, message="FCN8s's initialisation is wrong: transposed convolutions bilinear, score layers zero."
)
def test_fcn8s_init(sub, ref):
    """Does FCN8s start with bilinear upsampling and zero score layers?"""
    _check_init(sub, ref, "FCN8s")


# --- fcn_vgg_copy (2 points) -----------------------------------------------------------------------


@unit(
    "fcn_vgg_copy",
    points=2,
    message="After copy_params_from_vgg16, some trunk or fc6/fc7 weights or biases "
    "differ from the VGG16 source (reshaped), or other layers were changed.",
)
def test_vgg_copy(sub, ref):
    """After copying a seeded random VGG16, does every conv and fc6/fc7 parameter equal its source?"""
    assert_close(
        sub.call(probe_vgg_copy, timeout=120), ref.call(probe_vgg_copy), what="parameters after the copy", rtol=1e-9
    )


# --- fcn_resnet (3 points) -------------------------------------------------------------------------


def _check_resnet_head(sub, ref, variant):
    args = (N_CLASS, variant)
    expected = model_report(ref, "FCNResNet18", args, RESNET_SIZES, "backbone")["shapes"]
    actual = model_report(sub, "FCNResNet18", args, RESNET_SIZES, "backbone", stage="inspect").get("shapes")
    expect(type(actual) is dict, "named_parameters could not be listed")
    head = {n: s for n, s in expected.items() if not n.startswith("backbone.")}
    actual_head = {n: s for n, s in actual.items() if not n.startswith("backbone.")}
    expect(
        actual_head == head,
        f"variant {variant}: head parameters {sorted(actual_head)} do not match the "
        f"specification {sorted(head)} (names and shapes)",
    )
    trunk = [s for n, s in expected.items() if n.startswith("backbone.") and ".fc." not in n]
    actual_trunk = [s for n, s in actual.items() if n.startswith("backbone.") and ".fc." not in n]
    expect(actual_trunk == trunk, f"variant {variant}: `backbone` is not a torchvision ResNet-18 trunk")
    init = model_report(sub, "FCNResNet18", args, RESNET_SIZES, "backbone", stage="inspect").get("init")
    expect(type(init) is dict, "the layers could not be inspected")
    for name, weight in init["transposed"].items():
        assert_close(
            weight,
            init["bilinear"][name],
            what=f"variant {variant}: {name} initial weight vs get_upsampling_weight",
            rtol=1e-6,
        )
    for name, total in init["score"].items():
        expect(total == 0, f"variant {variant}: {name} should start at zero")


def _check_resnet_outputs(sub, ref, variant):
    _check_outputs(sub, ref, "FCNResNet18", (N_CLASS, variant), RESNET_SIZES, "backbone", f"variant {variant}: ")


@unit(
    "fcn_resnet",
    points=1,
    message="FCNResNet18's layers do not match the specification (backbone, score_fr, "
    "upscore / score_pool4, upscore2, upscore16 with the given shapes), or do not start bilinear (transposed "
    "convolutions) and zero (score layers).",
)
def test_resnet_head(sub, ref):
    """Do both variants have a ResNet-18 `backbone` and exactly the specified head layers, starting bilinear and zero?"""
    _check_resnet_head(sub, ref, "32s")
    _check_resnet_head(sub, ref, "16s")


@unit(
    "fcn_resnet",
    points=1,
    message="With the same weights as the reference, the 32s variant gives different "
    "outputs (check the padding to a multiple of 32 at the bottom/right and the crop back).",
)
def test_resnet_32s_outputs(sub, ref):
    """With identical weights, does the 32s variant match the reference for sizes that are and are not multiples of 32?"""
    _check_resnet_outputs(sub, ref, "32s")


@unit(
    "fcn_resnet",
    points=1,
    message="With the same weights as the reference, the 16s variant gives different "
    "outputs (check the layer3 skip, its fusion, the padding and the crop).",
)
def test_resnet_16s_outputs(sub, ref):
    """With identical weights, does the 16s variant match the reference for sizes that are and are not multiples of 32?"""
    _check_resnet_outputs(sub, ref, "16s")


# --- fcn_confusion (2 points) ----------------------------------------------------------------------


@unit(
    "fcn_confusion",
    points=1,
    message="confusion_matrix differs from the expected counts (rows = ground truth, "
    "columns = prediction; skip ignore pixels and targets outside [0, n_class)).",
)
def test_confusion_counts(sub, ref):
    """Are the counts right on batched and unbatched labels with ignore pixels and absent classes?"""
    check_confusion_counts(sub, ref, n_class=6)


@unit(
    "fcn_confusion",
    points=1,
    message="confusion_matrix must return an int64 (n_class, n_class) tensor and accept uint8, int32 and int64 labels.",
)
def test_confusion_dtypes(sub, ref):
    """Does it return int64 counts for uint8, int32 and int64 inputs alike?"""
    check_confusion_dtypes(sub, ref)


# --- fcn_iou (2 points) ---------------------------------------------------------------------------


@unit(
    "fcn_iou",
    points=1.5,
    message="iou_per_class differs from diag / (row sum + column sum - diag), "
    "or NaN is not where the denominator is zero.",
)
def test_iou_values(sub, ref):
    """Are per-class IoUs right, with NaN exactly for classes absent from prediction and ground truth?"""
    check_iou_values(sub, ref, n_class=6, seed=11)


@unit("fcn_iou", points=0.5, message="mean_iou must be a Python float: the mean over classes whose IoU is defined.")
def test_mean_iou(sub, ref):
    """Is mean_iou a finite Python float that skips NaN classes?"""
    check_mean_iou(sub, ref, n_class=6, seed=11)


# --- fcn_rgb_to_index (2 points) ------------------------------------------------------------------

SPEED_SIZE = 2000  # the contract: a 2000 x 2000 mask in well under a second (on the course's machines)
# Time is judged against a plain vectorised lookup timed in the same worker, on the same mask, just
# before: a slow or loaded grading machine slows both alike. Honest vectorised code takes 1-5 times
# the lookup (a per-colour comparison about 4.5, a PyTorch broadcast about 3.5); a per-pixel loop with
# a tuple per pixel about 25, but a generator over packed integers only 3-5: time alone cannot tell
# every loop from vectorised code, the Python-line count below does.
SPEED_FACTOR = 10
SPEED_FLOOR_S = 0.25  # ... or this long, whichever is more (tiny times are mostly timer and pipe noise)
# A Python loop over pixels runs one or more Python lines per pixel, whatever the machine; vectorised
# code runs tens of lines per mask (hundreds with a loop over the palette, or over rows). Counted on a
# small mask, under a tracer that stops counting at the limit, so a loop costs little here.
LINES_CASE_SIZE = 300
PYTHON_LINES_LIMIT = LINES_CASE_SIZE * LINES_CASE_SIZE // 20


def colour_case(seed, height, width, n_colours, unknown_fraction=0.0, black_in_palette=False):
    """A random palette and a colour-coded mask drawn from it (runs on both sides, so both see the same input).

    The palette holds look-alikes: colours that differ from another one in a single channel by 1, channel
    permutations of another one, and colours with the same channel sum, so that any lossy way of comparing
    colours shows. Unknown pixels (``unknown_fraction``) get colours outside the palette, look-alikes among them.

    Returns:
        rgb uint8 (height, width, 3), palette as a list of (r, g, b) tuples of Python ints.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    palette, seen = [], set()

    def add(colour, into):
        colour = tuple(int(v) % 256 for v in colour)
        if colour not in seen:
            seen.add(colour)
            into.append(colour)

    if black_in_palette:
        add((0, 0, 0), palette)
    while len(palette) < n_colours:
        base = [int(v) for v in rng.integers(0, 256, size=3)]
        add(base, palette)
        kind = int(rng.integers(0, 3))
        if len(palette) < n_colours:
            if kind == 0:  # one channel off by one
                channel = int(rng.integers(0, 3))
                base[channel] += 1
                add(base, palette)
            elif kind == 1:  # a permutation
                add((base[1], base[2], base[0]), palette)
            else:  # the same channel sum
                add((base[0] + 1, base[1] - 1, base[2]), palette)
    palette = [palette[i] for i in rng.permutation(len(palette))]  # look-alikes not always neighbours
    table = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    rgb = table[rng.integers(0, len(palette), size=(height, width))]
    if unknown_fraction:
        unknown = []
        while len(unknown) < 8:
            r, g, b = palette[int(rng.integers(0, len(palette)))]
            for candidate in (
                (r ^ 1, g, b),
                (r, g, b ^ 128),
                (g, b, r),
                (r + 1, g - 1, b),
                tuple(rng.integers(0, 256, 3)),
            ):
                candidate = tuple(int(v) % 256 for v in candidate)
                if candidate not in seen and candidate not in unknown:
                    unknown.append(candidate)
        where = np.flatnonzero(rng.random(height * width) < unknown_fraction)
        if where.size == 0:  # at least one unknown pixel
            where = rng.integers(0, height * width, size=1)
        picks = np.asarray(unknown, dtype=np.uint8)[rng.integers(0, len(unknown), size=where.size)]
        rgb.reshape(-1, 3)[where] = picks
    return rgb, palette


@uses(colour_case)
def probe_rgb_to_index(ns, case, ignore_index=None):
    """rgb_to_index on a generated case: {type, dtype, shape, values (int64), input_unchanged}."""
    import numpy as np
    import torch

    rgb, palette = colour_case(**case)
    original = rgb.copy()
    if ignore_index is None:
        out = ns["rgb_to_index"](rgb, palette)
    else:
        out = ns["rgb_to_index"](rgb, palette, ignore_index=ignore_index)
    array = np.asarray(out)
    return {
        "type": type(out).__module__ + "." + type(out).__name__,
        "dtype": str(array.dtype),
        "shape": list(array.shape),
        "values": torch.from_numpy(array.astype(np.int64)) if array.dtype.kind in "iub" else None,
        "input_unchanged": bool(np.array_equal(rgb, original)),
    }


@uses(colour_case)
def probe_rgb_to_index_digest(ns, case):
    """rgb_to_index on a large case, returned as a digest: class counts and the ids on a fixed grid of pixels."""
    import numpy as np
    import torch

    rgb, palette = colour_case(**case)
    array = np.asarray(ns["rgb_to_index"](rgb, palette))
    if array.shape != rgb.shape[:2] or array.dtype.kind not in "iu":
        return {"shape": list(array.shape), "dtype": str(array.dtype)}
    ids = array.astype(np.int64)
    return {
        "shape": list(array.shape),
        "dtype": str(array.dtype),
        "counts": torch.from_numpy(np.bincount(np.clip(ids, 0, 256).reshape(-1), minlength=257)),
        "grid": torch.from_numpy(ids[::37, ::41].copy()),
    }


def probe_index_to_rgb(ns, seed, height, width, n_colours, dtype_name, extra_ids):
    """index_to_rgb on random ids (with ``extra_ids`` outside 0..n-1 mixed in): {type, dtype, shape, values}."""
    import numpy as np
    import torch

    rng = np.random.default_rng(seed)
    palette = [tuple(int(v) for v in rng.integers(1, 256, size=3)) for _ in range(n_colours)]
    ids = rng.integers(0, n_colours, size=(height, width))
    if extra_ids:
        where = rng.random((height, width)) < 0.3
        ids[where] = np.asarray(extra_ids)[rng.integers(0, len(extra_ids), size=int(where.sum()))]
    out = ns["index_to_rgb"](ids.astype(dtype_name), palette)
    array = np.asarray(out)
    return {
        "type": type(out).__module__ + "." + type(out).__name__,
        "dtype": str(array.dtype),
        "shape": list(array.shape),
        "values": torch.from_numpy(array.astype(np.int64)) if array.dtype.kind in "iub" else None,
    }


def _compare_ids(actual, expected, what):
    expect(type(actual) is dict and type(actual.get("shape")) is list, f"{what}: rgb_to_index could not be run")
    expect(
        actual["shape"] == expected["shape"],
        f"{what}: the result has shape {actual['shape']}, expected {expected['shape']}",
    )
    expect(actual["values"] is not None, f"{what}: the result holds {actual['dtype']} values, not integer class ids")
    expect_tensor(actual["values"], what=f"{what}: the class ids", shape=expected["values"].shape)
    wrong = int((actual["values"] != expected["values"]).sum())
    expect(wrong == 0, f"{what}: {wrong} of {expected['values'].numel()} pixels get the wrong id")


# Cases: (seed, height, width, colours); palettes of 1 to 40 colours, square and not, a single pixel.
RGB_CASES = [(21, 1, 1, 1), (22, 7, 13, 2), (23, 48, 64, 7), (24, 33, 17, 12), (25, 64, 64, 40)]


@unit(
    "fcn_rgb_to_index",
    points=0.75,
    message="rgb_to_index gives wrong class ids: a pixel gets i exactly when its colour equals palette[i] in all "
    "three channels (palette colours can differ in a single channel, by 1, or be permutations of each other; "
    "check how you combine the channels).",
)
def test_rgb_to_index_values(sub, ref):
    """Does every pixel whose colour is in the palette get that colour's index, for palettes of look-alike colours?"""
    for seed, height, width, n_colours in RGB_CASES:
        case = dict(seed=seed, height=height, width=width, n_colours=n_colours)
        _compare_ids(
            sub.call(probe_rgb_to_index, case),
            ref.call(probe_rgb_to_index, case),
            f"a {height}x{width} mask with {n_colours} palette colours",
        )


@unit(
    "fcn_rgb_to_index",
    points=0.25,
    message="rgb_to_index must give ignore_index (the argument, 255 by default) to every pixel whose colour is "
    "not in the palette, also colours one step away from a palette colour, and black (0, 0, 0) is a class like "
    "any other when it is in the palette.",
)
def test_rgb_to_index_unknown_colours(sub, ref):
    """Do colours outside the palette get ignore_index (default 255, or the one given), with black a class when listed?"""
    for seed, (height, width, n_colours), ignore_index, black in (
        (31, (40, 50, 6), None, False),
        (32, (40, 50, 6), -1, True),
        (33, (20, 30, 3), 99, True),
        (34, (9, 9, 1), 1000, False),
    ):
        case = dict(seed=seed, height=height, width=width, n_colours=n_colours, unknown_fraction=0.2)
        case["black_in_palette"] = black
        label = "ignore_index=" + ("255 (the default)" if ignore_index is None else str(ignore_index))
        _compare_ids(
            sub.call(probe_rgb_to_index, case, ignore_index),
            ref.call(probe_rgb_to_index, case, ignore_index),
            f"a mask with unknown colours, {label}" + (", black in the palette" if black else ""),
        )


@unit(
    "fcn_rgb_to_index",
    points=0.25,
    message="rgb_to_index must return an int64 NumPy array of shape (H, W) with the right ids, and leave its "
    "input unchanged.",
)
def test_rgb_to_index_type_and_shape(sub, ref):
    """Is the result an int64 NumPy array (H, W) of the right ids, with the input mask left unchanged?"""
    for seed, height, width in ((41, 5, 3), (42, 3, 8)):
        case = dict(seed=seed, height=height, width=width, n_colours=4, unknown_fraction=0.2)
        actual = sub.call(probe_rgb_to_index, case)
        _compare_ids(actual, ref.call(probe_rgb_to_index, case), f"a {height}x{width} mask")
        expect(actual["type"] == "numpy.ndarray", f"rgb_to_index returned a {actual['type']}, not a numpy.ndarray")
        expect(actual["dtype"] == "int64", f"rgb_to_index returned {actual['dtype']} ids, not int64")
        expect(actual["input_unchanged"], "rgb_to_index changed the mask it was given")


@unit(
    "fcn_rgb_to_index",
    points=0.25,
    message="index_to_rgb must return a uint8 NumPy array (H, W, 3) in which class i has colour palette[i], for "
    "masks of any integer dtype.",
)
def test_index_to_rgb_colours(sub, ref):
    """Does class i get colour palette[i], as a uint8 array (H, W, 3), for uint8, int32 and int64 masks?"""
    for seed, dtype_name in ((61, "uint8"), (62, "int32"), (63, "int64")):
        args = (seed, 6, 11, 5, dtype_name, [])
        actual, expected = sub.call(probe_index_to_rgb, *args), ref.call(probe_index_to_rgb, *args)
        expect(type(actual) is dict, "index_to_rgb could not be run")
        expect(
            actual["shape"] == expected["shape"],
            f"a 6x11 {dtype_name} mask gave shape {actual['shape']}, expected {expected['shape']}",
        )
        expect(actual["dtype"] == "uint8", f"index_to_rgb returned {actual['dtype']} colours, not uint8")
        expect(actual["type"] == "numpy.ndarray", f"index_to_rgb returned a {actual['type']}, not a numpy.ndarray")
        assert_close(actual["values"], expected["values"], what=f"the colours of a {dtype_name} mask")


@unit(
    "fcn_rgb_to_index",
    points=0.25,
    message="index_to_rgb must colour every id outside 0..len(palette)-1 black: the ignore index 255, ids "
    "equal to or above len(palette), and negative ids (beware: NumPy reads index -1 as the last row).",
)
def test_index_to_rgb_other_ids_black(sub, ref):
    """Are the ignore index, ids >= len(palette) and negative ids black, while classes keep their colours?"""
    for seed, dtype_name, extra in ((71, "uint8", [255, 5, 6]), (72, "int64", [255, -1, -7, 5, 1000])):
        args = (seed, 9, 10, 5, dtype_name, extra)
        actual, expected = sub.call(probe_index_to_rgb, *args), ref.call(probe_index_to_rgb, *args)
        expect(type(actual) is dict and actual.get("values") is not None, "index_to_rgb did not return integer colours")
        expect(
            actual["shape"] == expected["shape"],
            f"a 9x10 mask gave shape {actual['shape']}, expected {expected['shape']}",
        )
        assert_close(actual["values"], expected["values"], what=f"the colours of a {dtype_name} mask with ids {extra}")


def _compare_digests(actual, expected, what):
    expect(type(actual) is dict and type(actual.get("shape")) is list, f"{what}: rgb_to_index could not be run")
    expect(
        actual["shape"] == expected["shape"],
        f"{what}: the result has shape {actual['shape']}, expected {expected['shape']}",
    )
    expect("counts" in actual, f"{what}: the result holds {actual['dtype']} values, not integer class ids")
    for key in ("counts", "grid"):
        expect_tensor(actual[key], what=f"{what}: the class ids", shape=expected[key].shape)
        expect(torch.equal(actual[key], expected[key]), f"{what}: some pixels get the wrong id")


@uses(colour_case)
def probe_rgb_to_index_python_lines(ns, case, limit):
    """Python lines run while rgb_to_index maps a generated case, counted up to limit + 1 (an int).

    Lines of every Python frame it enters count (its own, its comprehensions and generators, helpers,
    NumPy's Python layer); C code (NumPy's loops) runs no Python lines. Past the limit the tracer
    switches itself off, so a loop over pixels finishes at full speed.
    """
    import sys

    rgb, palette = colour_case(**case)
    count = 0

    def local(frame, event, arg):
        nonlocal count
        if count > limit:
            frame.f_trace = None  # returning None alone keeps an active frame traced
            return None
        if event == "line":
            count += 1
        return local

    def on_call(frame, event, arg):
        if count > limit:
            sys.settrace(None)
            return None
        return local

    previous = sys.gettrace()
    sys.settrace(on_call)
    try:
        ns["rgb_to_index"](rgb, palette)
    finally:
        sys.settrace(previous)
    return count


def speed_case_arrays(ns, case):
    """The speed case's (rgb, palette), built once per worker and kept in its namespace: building a
    2000x2000 mask takes longer than a vectorised lookup of it, and is no part of either's time."""
    kept = ns.get("__segkit_speed_case__")
    if kept is None or kept[0] != case:
        kept = ns["__segkit_speed_case__"] = (dict(case), colour_case(**case))
    return kept[1]


def lookup_digest(array):
    """Class counts and the ids on a fixed grid of pixels of an id array (its shape and dtype when it is
    not an (H, W) integer array)."""
    import numpy as np
    import torch

    array = np.asarray(array)
    if array.ndim != 2 or array.dtype.kind not in "iu":
        return {"shape": list(array.shape), "dtype": str(array.dtype)}
    ids = array.astype(np.int64)
    return {
        "shape": list(array.shape),
        "dtype": str(array.dtype),
        "counts": torch.from_numpy(np.bincount(np.clip(ids, 0, 256).reshape(-1), minlength=257)),
        "grid": torch.from_numpy(ids[::37, ::41].copy()),
    }


@uses(colour_case, speed_case_arrays)
def probe_speed_case_ready(ns, case):
    """Build the speed case in the worker (untimed)."""
    speed_case_arrays(ns, case)


@uses(colour_case, speed_case_arrays, lookup_digest)
def probe_baseline_lookup(ns, case):
    """A plain vectorised lookup of the kept speed case (pack the channels, searchsorted), returned as the
    same digest as the student's, so that both timed calls carry the same overhead."""
    import numpy as np

    rgb, palette = speed_case_arrays(ns, case)
    keys = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    palette_keys = np.array([(r << 16) | (g << 8) | b for r, g, b in palette])
    order = np.argsort(palette_keys)
    slot = np.minimum(np.searchsorted(palette_keys[order], keys), len(order) - 1)
    return lookup_digest(np.where(palette_keys[order][slot] == keys, order[slot], 255))


@uses(colour_case, speed_case_arrays, lookup_digest)
def probe_student_lookup(ns, case):
    """The student's rgb_to_index on the kept speed case, as a digest."""
    rgb, palette = speed_case_arrays(ns, case)
    return lookup_digest(ns["rgb_to_index"](rgb, palette))


def speed_limit_s(baseline_s):
    """The time a lookup may take where the plain vectorised lookup takes baseline_s."""
    return max(SPEED_FLOOR_S, SPEED_FACTOR * baseline_s)


def timed_call(sub, probe, *args, timeout=None):
    """(result, wall seconds) of one probe call, timed here in the trusted process: student code in the
    worker cannot touch this clock."""
    import time

    started = time.perf_counter()
    result = sub.call(probe, *args, timeout=timeout)
    return result, time.perf_counter() - started


def time_against_baseline(sub, case):
    """(student's digest, student's seconds, baseline seconds) on the speed case kept in the worker."""
    sub.call(probe_speed_case_ready, case)
    baseline_s = min(timed_call(sub, probe_baseline_lookup, case)[1] for _ in range(2))
    limit = speed_limit_s(baseline_s)
    digest, seconds = timed_call(sub, probe_student_lookup, case, timeout=3 * limit + 5)
    return digest, seconds, baseline_s


@unit(
    "fcn_rgb_to_index",
    points=0.25,
    message="rgb_to_index is too slow: a 2000x2000 mask must take well under a second. Vectorise it: no Python "
    "loop over pixels (a loop over the palette's colours is fine), e.g. pack each pixel's channels into one "
    "integer and look those up. The check counts the Python lines your function runs and times it against a "
    "plain vectorised lookup on the same machine.",
)
def test_rgb_to_index_speed(sub, ref):
    """Does a 2000x2000 mask come back right, vectorised: few Python lines, and within 10 times a plain lookup?"""
    small = dict(seed=51, height=LINES_CASE_SIZE, width=LINES_CASE_SIZE, n_colours=8, unknown_fraction=0.05)
    big = dict(small, seed=52, height=SPEED_SIZE, width=SPEED_SIZE)
    # A loop over pixels shows on a small mask, whatever the machine, before the big one is timed.
    lines = sub.call(probe_rgb_to_index_python_lines, small, PYTHON_LINES_LIMIT)
    expect(type(lines) is int, "rgb_to_index could not be run on a 300x300 mask")
    expect(
        lines <= PYTHON_LINES_LIMIT,
        f"rgb_to_index ran more than {PYTHON_LINES_LIMIT} Python lines for a {LINES_CASE_SIZE}x{LINES_CASE_SIZE} "
        f"mask ({LINES_CASE_SIZE * LINES_CASE_SIZE} pixels): that is a Python loop over pixels",
    )
    # This check runs last in its unit: if the big mask hits the time limit, the worker is restarted.
    digest, seconds, baseline_s = time_against_baseline(sub, big)
    if speed_limit_s(baseline_s) < seconds <= 3 * speed_limit_s(baseline_s):
        # Near the limit: the machine may have been busy during one of the calls; measure again.
        digest, seconds, baseline_s = min(
            (digest, seconds, baseline_s), time_against_baseline(sub, big), key=lambda t: t[1] / t[2]
        )
    _compare_digests(digest, ref.call(probe_rgb_to_index_digest, big), "a 2000x2000 mask")
    expect(
        seconds <= speed_limit_s(baseline_s),
        f"a 2000x2000 mask took {seconds:.2f} s, {seconds / baseline_s:.0f} times as long as a plain vectorised "
        f"lookup of the same mask on the same machine ({baseline_s:.2f} s); at most {SPEED_FACTOR} times passes",
    )
