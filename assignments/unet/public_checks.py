"""Public self-checks of the U-Net assignment (see starter.checks)."""

import torch
import torch.nn.functional as F

from starter.checks.core import expect as _expect
from starter.checks.core import expect_differentiable as _expect_differentiable
from starter.checks.core import register as _register
from starter.checks.shared import class_weights_check, confusion_matrix_check, iou_check


def _coordinate_pair(height, width):
    """An image whose channels hold each pixel's row and column, and a mask holding row * width + column."""
    rows = torch.arange(height).view(-1, 1).expand(height, width)
    cols = torch.arange(width).view(1, -1).expand(height, width)
    image = torch.stack([rows, cols, rows + cols]).float()
    return image, (rows * width + cols).long()


@_register("unet_augment")
def _check_augment(random_crop_flip):
    image, mask = _coordinate_pair(10, 12)
    torch.manual_seed(0)
    for flip_p in (0.0, 1.0):
        out_image, out_mask = random_crop_flip(image, mask, (4, 6), flip_p=flip_p)
        _expect(isinstance(out_image, torch.Tensor) and isinstance(out_mask, torch.Tensor), "return two tensors")
        _expect(
            tuple(out_image.shape) == (3, 4, 6) and tuple(out_mask.shape) == (4, 6),
            f"size (4, 6) gave image {tuple(out_image.shape)} and mask {tuple(out_mask.shape)}",
        )
        _expect(out_image.dtype == torch.float32 and out_mask.dtype == torch.int64, "keep the dtypes")
        _expect(
            torch.equal(out_image[0].long() * 12 + out_image[1].long(), out_mask),
            "image and mask crops come from different places (or only one of them was flipped)",
        )
        step = int(out_image[1, 0, 1] - out_image[1, 0, 0])
        _expect(
            step == (-1 if flip_p == 1.0 else 1),
            f"with flip_p={flip_p} the crop should {'' if flip_p == 1.0 else 'not '}be flipped left-right",
        )
    try:
        random_crop_flip(image, mask, (11, 4))
    except ValueError:
        pass
    else:
        raise AssertionError("a crop taller than the image must raise ValueError")


@_register("unet_prior")
def _check_prior(fit_pixel_prior, predict_prior):
    masks = torch.tensor([[[0, 1], [255, 2]], [[0, 2], [255, 2]]])
    prior = fit_pixel_prior(masks, 3)
    _expect(isinstance(prior, torch.Tensor) and tuple(prior.shape) == (3, 2, 2), "the prior is (n_class, H, W)")
    _expect(prior.is_floating_point(), "the prior must be a float tensor")
    _expect(torch.allclose(prior[:, 0, 0], torch.tensor([1.0, 0, 0])), "pixel (0, 0) is class 0 in both masks")
    _expect(torch.allclose(prior[:, 0, 1], torch.tensor([0, 0.5, 0.5])), "pixel (0, 1) is class 1 once, 2 once")
    _expect(
        torch.allclose(prior[:, 1, 0], torch.full((3,), 1 / 3)),
        "a pixel never labelled gets 1 / n_class for every class",
    )
    batch = predict_prior(prior, 4)
    _expect(
        isinstance(batch, torch.Tensor) and tuple(batch.shape) == (4, 3, 2, 2), "predict_prior gives (n, n_class, H, W)"
    )
    _expect(torch.allclose(batch[3], prior), "every image of the batch gets the prior")


_register("unet_confusion")(confusion_matrix_check)


_register("unet_iou")(iou_check)


_register("unet_weights")(class_weights_check)


@_register("unet_wce")
def _check_wce(weighted_cross_entropy):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 4, 5, generator=generator, requires_grad=True)
    target = torch.randint(0, 3, (2, 4, 5), generator=generator)
    target[0, 0] = 255
    weight = torch.tensor([0.5, 2.0, 1.0])
    loss = weighted_cross_entropy(logits, target, weight)
    _expect_differentiable(loss)
    _expect(isinstance(loss, torch.Tensor) and loss.dim() == 0, "return a scalar tensor")
    expected = F.cross_entropy(logits, target, weight=weight, ignore_index=255)
    _expect(
        abs(loss.item() - expected.item()) < 1e-5,
        "the value differs from F.cross_entropy(logits, target, weight=weight, ignore_index=255): "
        "skip ignore pixels and divide by the sum of the pixels' weights",
    )
    loss.backward()
    _expect(
        logits.grad is not None and float(logits.grad[0, :, 0].abs().sum()) == 0,
        "ignore pixels must not receive gradient",
    )


@_register("unet_model")
def _check_unet(unet_class):
    model = unet_class(4).eval()
    names = {name.split(".")[0] for name, _ in model.named_parameters()}
    expected = {"inc", "down1", "down2", "down3", "down4", "up1", "up2", "up3", "up4", "outc"}
    _expect(names == expected, f"top-level layers {sorted(names)}, expected {sorted(expected)}")
    _expect(tuple(model.inc.double_conv[0].weight.shape) == (64, 3, 3, 3), "inc.double_conv[0] is Conv2d(3, 64, 3)")
    _expect(tuple(model.up1.up.weight.shape) == (1024, 512, 2, 2), "up1.up is ConvTranspose2d(1024, 512, 2, stride=2)")
    _expect(tuple(model.outc.conv.weight.shape) == (4, 64, 1, 1), "outc.conv is Conv2d(64, n_class, 1)")
    for size in ((1, 3, 32, 32), (1, 3, 17, 23)):
        with torch.no_grad():
            out = model(torch.randn(size))
        _expect(
            tuple(out.shape) == (size[0], 4, size[2], size[3]),
            f"input {size} gave output {tuple(out.shape)}; pad the upsampled map to the skip's size",
        )


@_register("unet_resnet")
def _check_resnet_unet(model_class):
    import torchvision

    model = model_class(5).eval()
    _expect(
        isinstance(getattr(model, "encoder", None), torchvision.models.ResNet),
        "self.encoder must be torchvision's resnet18",
    )
    for size in ((1, 3, 64, 64), (2, 3, 32, 96)):
        with torch.no_grad():
            out = model(torch.randn(size))
        expected = (size[0], 5, size[2], size[3])
        _expect(tuple(out.shape) == expected, f"input {size} gave {tuple(out.shape)}, expected {expected}")


@_register("unet_train_epoch")
def _check_train_epoch(unet_train_epoch):
    import copy

    import torch.nn as nn
    from torch.utils.data import DataLoader, TensorDataset

    class CountingSGD(torch.optim.SGD):
        """SGD that keeps a copy of the first gradient it steps with and counts its steps."""

        def __init__(self, params):
            super().__init__(params, lr=0.1)
            self.first_grad, self.n_steps = None, 0

        def step(self, closure=None):
            if self.first_grad is None:
                self.first_grad = self.param_groups[0]["params"][0].grad.clone()
            self.n_steps += 1
            return super().step(closure)

    generator = torch.Generator().manual_seed(0)
    images, masks = torch.randn(5, 3, 4, 4, generator=generator), torch.randint(0, 2, (5, 4, 4), generator=generator)
    model = nn.Sequential(nn.Conv2d(3, 2, 1), nn.BatchNorm2d(2)).eval()
    fresh = copy.deepcopy(model).train()
    F.cross_entropy(fresh(images[:2]), masks[:2]).backward()  # the first batch's own gradient
    model[0].weight.grad = torch.full_like(model[0].weight, 10.0)  # an old gradient left behind
    optimizer, seen = CountingSGD(model.parameters()), []

    def loss_fn(logits, target):
        loss = F.cross_entropy(logits, target)
        seen.append((loss.item(), target.shape[0]))
        return loss

    result = unet_train_epoch(model, DataLoader(TensorDataset(images, masks), batch_size=2), optimizer, loss_fn, "cpu")
    _expect(type(result) is float, f"return a Python float (loss.item()), got {type(result).__name__}")
    _expect(
        optimizer.n_steps == 3, f"5 samples in batches of 2 are 3 batches: expected 3 steps, got {optimizer.n_steps}"
    )
    _expect(model.training and model[1].training, "the model must be in training mode (model.train())")
    _expect(
        optimizer.first_grad is not None and torch.allclose(optimizer.first_grad, fresh[0].weight.grad, atol=1e-6),
        "the first step must use the first batch's gradient only: call optimizer.zero_grad() before loss.backward()",
    )
    per_sample = sum(value * n for value, n in seen) / sum(n for _, n in seen)
    _expect(
        abs(result - per_sample) < 1e-5,
        f"expected the mean loss per sample {per_sample:.5f}, got {result:.5f} "
        "(weight each batch's loss by its size; the last batch has 1 sample)",
    )
