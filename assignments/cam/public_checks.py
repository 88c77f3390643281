"""Public self-checks of the CAM assignment (see starter.checks).

Small cases built from the assignment text only (shapes, types, the definition of softmax,
the blending formula on blank images); the hidden checks test many more cases.
"""

import math

import numpy as np
import torch

from starter.checks.core import expect as _expect
from starter.checks.core import register as _register


@_register("cam_forward")
def _check_forward(forward_with_features):
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        result = forward_with_features(net, x)
        expected_logits = net(x)
    _expect(isinstance(result, (tuple, list)) and len(result) == 2, "return a pair (logits, features)")
    logits, features = result
    _expect(
        isinstance(logits, torch.Tensor) and tuple(logits.shape) == (2, 1000),
        f"logits should be a (2, 1000) tensor for a batch of 2, got {getattr(logits, 'shape', type(logits))}",
    )
    _expect(
        isinstance(features, torch.Tensor) and tuple(features.shape) == (2, 512, 2, 3),
        "features should be layer4's output, (2, 512, 2, 3) for a 64x96 input, got "
        f"{tuple(getattr(features, 'shape', ())) or type(features).__name__}",
    )
    _expect(torch.allclose(logits, expected_logits, atol=1e-5, rtol=1e-4), "logits differ from net(x)")
    _expect(not net.training, "the network was switched out of eval mode")

    net.train()
    forward_with_features(net, torch.randn(2, 3, 64, 64))
    _expect(
        all(module.training for module in net.modules()),
        "a network in training mode must stay in training mode (do not call net.eval() inside)",
    )


@_register("cam_top1")
def _check_top1(get_cls_pred):
    logits = torch.tensor([[1.0, 3.0, 2.0]])
    result = get_cls_pred(logits)
    _expect(isinstance(result, (tuple, list)) and len(result) == 2, "return a pair (idx, prob)")
    idx, prob = result
    _expect(type(idx) is int, f"idx should be a Python int, got {type(idx).__name__} (use int(...))")
    _expect(type(prob) is float, f"prob should be a Python float, got {type(prob).__name__} (use float(...))")
    expected = math.exp(3) / (math.exp(1) + math.exp(3) + math.exp(2))  # softmax of the largest logit
    _expect(idx == 1, "for logits [[1, 3, 2]] the top-1 class is 1")
    _expect(
        abs(prob - expected) < 1e-5,
        f"for logits [[1, 3, 2]] the top-1 probability is {expected:.4f}, "
        f"got {prob:.4f} (softmax over the classes, i.e. the last axis)",
    )


@_register("cam_compute")
def _check_compute(return_cam):
    rng = np.random.default_rng(0)
    features = rng.random((1, 8, 3, 5)).astype(np.float32)
    weights = rng.standard_normal((4, 8)).astype(np.float32)
    cam = return_cam(features, weights, 2, size=(30, 40))
    _expect(isinstance(cam, np.ndarray), f"return a NumPy array, got {type(cam).__name__}")
    _expect(cam.dtype == np.uint8, f"dtype should be uint8, got {cam.dtype}")
    _expect(
        cam.shape == (30, 40),
        f"size=(30, 40) is (height, width): expected shape (30, 40), got {cam.shape} "
        "(cv2.resize takes (width, height))",
    )
    small = return_cam(features, weights, 2, size=(3, 5))  # no interpolation: the scaled map itself
    _expect(small.min() == 0 and small.max() in (254, 255), "the map should be min-max scaled to [0, 255]")
    _expect(return_cam(features, weights, 1).shape == (256, 256), "the default size is (256, 256)")
    # Small integers make every position's dot product exact (SIMD summation order cannot differ).
    integer_weights = np.round(weights * 4).astype(np.float32)
    constant = return_cam(np.ones((1, 8, 3, 5), np.float32), integer_weights, 0, size=(6, 10))
    _expect(constant.shape == (6, 10) and not constant.any(), "a constant map must give all zeros (no NaN)")


@_register("cam_overlay")
def _check_overlay(overlay_cam):
    image = np.full((40, 60, 3), 100, np.uint8)
    cam = np.zeros((7, 7), np.uint8)
    out = overlay_cam(image, cam)
    _expect(isinstance(out, np.ndarray) and out.dtype == np.uint8, "return a uint8 NumPy array")
    _expect(
        out.shape == (40, 60, 3),
        f"the overlay has the image's shape (40, 60, 3), got {out.shape} (resize the cam to the image)",
    )
    _expect(
        np.array_equal(overlay_cam(image, cam, alpha=0.0, beta=1.0), image),
        "with alpha=0 and beta=1 the overlay should be the image itself",
    )
    white = np.full((40, 60, 3), 255, np.uint8)
    _expect(
        np.all(overlay_cam(white, cam + 255, alpha=1.0, beta=1.0) == 255),
        "values above 255 must be clipped to 255 (not wrap around)",
    )
    blue = overlay_cam(np.zeros_like(image), cam, alpha=1.0, beta=0.0)  # JET maps 0 to dark blue (BGR)
    _expect(
        blue[..., 0].min() > 100 and blue[..., 2].max() == 0,
        "the heat map should be cv2.applyColorMap(cam, cv2.COLORMAP_JET), a BGR image",
    )


@_register("cam_features")
def _check_features(cam_features):
    import copy

    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None).train()
    images, labels = torch.randn(5, 3, 64, 64), torch.tensor([3, 1, 4, 1, 5])
    reference = copy.deepcopy(net).eval()
    with torch.no_grad():
        trunk = torch.nn.Sequential(*list(reference.children())[:-1])  # everything before fc
        pooled = trunk(images).flatten(1)
    result = cam_features(net, [(images[:3], labels[:3]), (images[3:], labels[3:])])
    _expect(isinstance(result, (tuple, list)) and len(result) == 2, "return a pair (features, labels)")
    features, feature_labels = result
    _expect(
        isinstance(features, torch.Tensor) and tuple(features.shape) == (5, 512) and features.dtype == torch.float32,
        f"features should be a float32 (5, 512) tensor for 5 images, got {getattr(features, 'shape', type(features))}",
    )
    _expect(
        isinstance(feature_labels, torch.Tensor) and feature_labels.dtype == torch.int64,
        "labels should be an int64 tensor",
    )
    _expect(feature_labels.tolist() == [3, 1, 4, 1, 5], "the labels should be the loader's, in order")
    _expect(
        torch.allclose(features, pooled, atol=1e-4, rtol=1e-4),
        "features differ from the input of net.fc in eval mode (layer4's output averaged over h x w)",
    )
    _expect(not features.requires_grad, "the features require grad: use torch.no_grad()")
    _expect(
        all(module.training for module in net.modules()), "a network in training mode must be left in training mode"
    )
    one_by_one, _ = cam_features(net, [(images[i : i + 1], labels[i : i + 1]) for i in range(5)])
    _expect(
        torch.allclose(one_by_one, features, atol=1e-4, rtol=1e-4),
        "the features depend on the batch size: run the network in eval mode",
    )
