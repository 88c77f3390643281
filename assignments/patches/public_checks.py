"""Public self-checks of the patches assignment (see starter.checks)."""

import math

import torch

from starter.checks.core import expect as _expect
from starter.checks.core import register as _register
from starter.checks.shared import class_weights_check, confusion_matrix_check


@_register("patch_extract")
def _check_extract(extract_patches):
    image = torch.arange(3 * 10 * 7, dtype=torch.float32).reshape(3, 10, 7)
    result = extract_patches(image, 4, 4)
    _expect(isinstance(result, tuple) and len(result) == 2, "return a tuple (patches, positions)")
    patches, positions = result
    _expect(isinstance(positions, torch.Tensor) and positions.dtype == torch.int64, "positions must be an int64 tensor")
    expected = [[0, 0], [0, 3], [4, 0], [4, 3], [6, 0], [6, 3]]
    _expect(
        positions.tolist() == expected,
        f"for a 10x7 image, size 4, stride 4 the positions should be {expected} (rows 0, 4 and the "
        f"bottom-flush 6; columns 0 and the right-flush 3; row-major), got {positions.tolist()}",
    )
    _expect(tuple(patches.shape) == (6, 3, 4, 4), f"patches should have shape (6, 3, 4, 4), got {tuple(patches.shape)}")
    _expect(torch.equal(patches[3], image[:, 4:8, 3:7]), "patch 3 should be image[:, 4:8, 3:7]")
    mask_patches, _ = extract_patches(torch.zeros(1, 8, 8, dtype=torch.int64), 8, 3)
    _expect(
        tuple(mask_patches.shape) == (1, 1, 8, 8) and mask_patches.dtype == torch.int64,
        "a (1, 8, 8) int64 mask with size 8 should give one (1, 8, 8) int64 patch",
    )
    try:
        extract_patches(torch.zeros(3, 5, 20), 8, 4)
    except ValueError:
        pass
    else:
        raise AssertionError("an image smaller than the patch size must raise ValueError")


_register("patch_weights")(class_weights_check)


@_register("patch_stitch")
def _check_stitch(stitch_patches):
    patch_logits = torch.stack([torch.full((2, 3, 3), 1.0), torch.full((2, 3, 3), 3.0)])
    positions = torch.tensor([[0, 0], [0, 2]])
    logits = stitch_patches(patch_logits, positions, (3, 5))
    _expect(
        isinstance(logits, torch.Tensor) and tuple(logits.shape) == (2, 3, 5),
        "for 2 patches of (2, 3, 3) into out_size (3, 5) the result should have shape (2, 3, 5)",
    )
    expected = torch.tensor([1.0, 1.0, 2.0, 3.0, 3.0])
    _expect(
        torch.allclose(logits[0, 0], expected),
        f"two constant patches 1 and 3 overlapping in column 2 should give rows {expected.tolist()}, "
        f"got {logits[0, 0].tolist()} (overlaps are averaged)",
    )


@_register("patch_predict")
def _check_predict(predict_full):
    import torch.nn as nn

    model = nn.Conv2d(3, 4, 1)
    image = torch.randn(3, 16, 16)
    model.train()
    logits = predict_full(model, image, 8, 8, batch_size=3)
    _expect(
        isinstance(logits, torch.Tensor) and tuple(logits.shape) == (4, 16, 16),
        "a 1x1 convolution with 4 outputs on a (3, 16, 16) image should give (4, 16, 16) logits",
    )
    with torch.no_grad():
        expected = model(image[None])[0]
    _expect(
        torch.allclose(logits, expected, atol=1e-5),
        "with a 1x1 convolution the stitched logits should equal the convolution applied to the whole image",
    )
    _expect(not logits.requires_grad, "no gradients should be recorded (torch.no_grad())")
    _expect(model.training, "the model should be back in training mode after the call")


_register("patch_confusion")(confusion_matrix_check)


@_register("patch_prf")
def _check_prf(precision_recall_f1):
    conf = torch.tensor([[3, 1, 0], [0, 2, 0], [0, 0, 0]])
    result = precision_recall_f1(conf)
    _expect(isinstance(result, tuple) and len(result) == 3, "return a tuple (precision, recall, f1)")
    precision, recall, f1 = result
    for name, value in (("precision", precision), ("recall", recall), ("f1", f1)):
        _expect(
            isinstance(value, torch.Tensor) and tuple(value.shape) == (3,) and value.is_floating_point(),
            f"{name} should be a float tensor of shape (3,)",
        )
    _expect(
        abs(float(precision[1]) - 2 / 3) < 1e-6 and abs(float(recall[0]) - 0.75) < 1e-6,
        f"got precision {precision.tolist()}, recall {recall.tolist()}; here class 1 has precision 2/3 "
        "(column) and class 0 recall 3/4 (row)",
    )
    _expect(abs(float(f1[0]) - 6 / 7) < 1e-6, f"F1 of class 0 should be 2PR/(P+R) = 6/7, got {float(f1[0])}")
    _expect(
        all(math.isnan(float(v[2])) for v in (precision, recall, f1)),
        "class 2 occurs nowhere: its precision, recall and F1 are NaN",
    )


@_register("patch_aspp")
def _check_aspp(aspp_class):
    import torch.nn as nn

    aspp = aspp_class(16, 8).eval()
    names = {name.split(".")[0] for name, _ in aspp.named_parameters()}
    _expect(
        names == {"branches", "pool", "project"}, f"top-level layers {sorted(names)}, expected branches, pool, project"
    )
    _expect(
        isinstance(aspp.branches, nn.ModuleList) and len(aspp.branches) == 4,
        "branches should be an nn.ModuleList of 1 + len(rates) = 4 branches",
    )
    dilations = [branch[0].dilation for branch in aspp.branches]
    _expect(
        dilations == [(1, 1), (6, 6), (12, 12), (18, 18)],
        f"the branches' convolutions have dilations {dilations}: a 1x1 convolution, then rates 6, 12, 18",
    )
    _expect(
        tuple(aspp.project[0].weight.shape) == (8, 40, 1, 1), "project[0] is Conv2d(5 * out_channels, out_channels, 1)"
    )
    _expect(any(isinstance(m, nn.Dropout) for m in aspp.project), "project should end with nn.Dropout(0.5)")
    with torch.no_grad():
        for size in ((2, 16, 5, 7), (1, 16, 1, 1)):
            out = aspp(torch.randn(size))
            _expect(
                tuple(out.shape) == (size[0], 8, size[2], size[3]),
                f"features {size} gave {tuple(out.shape)}, expected {(size[0], 8, size[2], size[3])} "
                "(padding = rate keeps h x w; upsample the pooled branch to h x w)",
            )


@_register("patch_deeplab")
def _check_deeplab(model_class):
    import torchvision

    model = model_class(5).eval()
    _expect(
        isinstance(getattr(model, "backbone", None), torchvision.models.ResNet),
        "self.backbone must be torchvision's resnet18",
    )
    for name in ("aspp", "low_level", "decoder", "classifier"):
        _expect(hasattr(model, name), f"DeepLabV3Plus has no attribute {name!r}")
    sizes = {}
    hooks = [
        getattr(model.backbone, name).register_forward_hook(
            lambda module, inputs, output, name=name: sizes.__setitem__(name, tuple(output.shape[-2:]))
        )
        for name in ("layer1", "layer4")
    ]
    try:
        with torch.no_grad():
            out = model(torch.randn(1, 3, 64, 96))
    finally:
        for hook in hooks:
            hook.remove()
    _expect(
        tuple(out.shape) == (1, 5, 64, 96), f"a (1, 3, 64, 96) input gave {tuple(out.shape)}, expected (1, 5, 64, 96)"
    )
    _expect(
        sizes.get("layer1") == (16, 24),
        f"layer1's output should be 1/4 of the input (16x24), got {sizes.get('layer1')}",
    )
    _expect(
        sizes.get("layer4") == (4, 6),
        f"layer4's output should be 1/16 of the input (4x6: output stride 16), got {sizes.get('layer4')}",
    )
