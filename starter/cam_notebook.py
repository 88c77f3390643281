"""The given parts of the CAM notebook: the model, the pictures, the patch set and the plots.

Nothing here computes a CAM or a feature vector: the functions that show maps take the student's
own units as a ``CamUnits`` (and ``show_tsne`` the student's ``cam_features``) and call them, so
every map and every point in the notebook is the student's::

    units = CamUnits(forward_with_features, get_cls_pred, return_cam, overlay_cam)
    show_top1_cams(net, images, weight_fc, CATEGORIES, units)
    show_tsne(cam_features, net, patches)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from starter.constants import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "CamUnits",
    "FacadePatches",
    "cam_images",
    "facade_patch_set",
    "imagenet_resnet18",
    "patch_loader",
    "preprocess",
    "show_row",
    "show_top1_cams",
    "show_top5_cams",
    "show_tsne",
    "synthetic_cam_images",
]

INPUT_SIZE = 224  # what ResNet-18 saw on ImageNet


@dataclass(frozen=True)
class CamUnits:
    """The student's four CAM functions, handed to the helpers that draw maps."""

    forward_with_features: Callable[..., Any]
    get_cls_pred: Callable[..., Any]
    return_cam: Callable[..., Any]
    overlay_cam: Callable[..., Any]


@dataclass(frozen=True)
class Top1:
    """What the network made of one picture: the top-1 class, its probability, layer4 maps and logits."""

    idx: int
    prob: float
    features: np.ndarray
    logits: torch.Tensor


def imagenet_resnet18(*, pretrained: bool, device: Any) -> tuple[torch.nn.Module, np.ndarray, list[str]]:
    """ResNet-18 in eval mode, its fc weights and the 1000 ImageNet class names.

    Inputs:
        pretrained: ImageNet weights (downloaded once) or, when False, random weights (says so).
        device: where the network runs.
    Returns:
        (net, weight_fc float NumPy (1000, 512), categories); prints a one-line summary.
    """
    from torchvision.models import ResNet18_Weights

    from starter.backbones import load_resnet18

    categories = list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])
    if not pretrained:
        print("Fast mode: ResNet-18 has RANDOM weights (no ImageNet download); predictions and CAMs are meaningless.")
    net = load_resnet18(pretrained=pretrained).to(device).eval()
    weight_fc = net.fc.weight.detach().cpu().numpy()
    print(f"{len(categories)} classes, e.g. {categories[207]!r}, {categories[281]!r}; fc weights {weight_fc.shape}")
    return net, weight_fc, categories


def synthetic_cam_images() -> dict[str, np.ndarray]:
    """A few BGR uint8 pictures (a disc and a bar on a gradient) standing in for photographs in fast mode."""
    import cv2

    rng = np.random.default_rng(0)
    images = {}
    for i, (height, width) in enumerate([(180, 240), (200, 200), (150, 260)]):
        ramp = np.linspace(40, 200, width, dtype=np.float32)[None, :, None]
        image = np.broadcast_to(ramp, (height, width, 3)).astype(np.uint8).copy()
        centre = (int(rng.integers(width // 4, 3 * width // 4)), int(rng.integers(height // 4, 3 * height // 4)))
        cv2.circle(image, centre, min(height, width) // 5, tuple(int(v) for v in rng.integers(0, 256, 3)), -1)
        cv2.rectangle(image, (5, height - 30), (width // 2, height - 10), (30, 30, 220), -1)
        images[f"synthetic_{i}"] = image
    print(f"Fast mode: {len(images)} synthetic images stand in for the photographs.")
    return images


def cam_images(*, fast: bool) -> dict[str, np.ndarray]:
    """The pictures the notebook explains, {name: BGR uint8 array (H, W, 3)}; prints their shapes.

    Real data: the sample photographs of ``data_scripts.cam_samples``, downloaded once into the data root
    (no network once they are there; their sources, authors and licences are in ATTRIBUTION.md next to
    them). Fast mode: ``synthetic_cam_images()``.
    """
    if fast:
        images = synthetic_cam_images()
    else:
        from data_scripts.cam_samples import load_sample_bgr, prepare_cam_samples, sample_paths
        from starter.common import data_root

        folder = prepare_cam_samples(data_root())
        print(f"Sample photographs from {folder}; authors and licences in {folder / 'ATTRIBUTION.md'}")
        images = {path.stem: load_sample_bgr(path) for path in sample_paths(folder)}
    print({name: image.shape for name, image in images.items()})
    return images


def _normalised(rgb: torch.Tensor) -> torch.Tensor:
    """float RGB in [0, 1], channels at dim -3 -> ImageNet-normalised."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (rgb - mean) / std


def preprocess(image_bgr: np.ndarray, device: Any) -> torch.Tensor:
    """BGR uint8 (H, W, 3) -> normalised float tensor (1, 3, 224, 224) on `device`."""
    import cv2

    rgb = cv2.cvtColor(cv2.resize(image_bgr, (INPUT_SIZE, INPUT_SIZE)), cv2.COLOR_BGR2RGB)
    return _normalised(torch.from_numpy(rgb).permute(2, 0, 1).float() / 255).unsqueeze(0).to(device)


def show_row(panels: Sequence[np.ndarray], titles: Sequence[str], width: float = 3.2) -> Any:
    """One row of BGR images with titles, as a detached figure."""
    import cv2
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(width * len(panels), width), squeeze=False)
    for ax, panel, title in zip(axes[0], panels, titles):
        ax.imshow(cv2.cvtColor(panel, cv2.COLOR_BGR2RGB))
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    plt.close(fig)
    return fig


def _device_of(net: torch.nn.Module) -> torch.device:
    return next(net.parameters()).device


def _top1(net: torch.nn.Module, image: np.ndarray, units: CamUnits) -> Top1:
    """One picture through the student's forward_with_features (no gradients) and get_cls_pred."""
    with torch.no_grad():
        logits, features = units.forward_with_features(net, preprocess(image, _device_of(net)))
    idx, prob = units.get_cls_pred(logits.cpu())
    return Top1(idx, prob, features.cpu().numpy(), logits.cpu())


def show_top1_cams(
    net: torch.nn.Module,
    images: Mapping[str, np.ndarray],
    weight_fc: np.ndarray,
    categories: Sequence[str],
    units: CamUnits,
) -> None:
    """For each picture: the top-1 class by the student's units, printed, and its CAM drawn over the picture."""
    from IPython.display import display

    for name, image in images.items():
        top1 = _top1(net, image, units)
        cam = units.return_cam(top1.features, weight_fc, top1.idx)
        print(f"{name}: {categories[top1.idx]} (class {top1.idx}), p = {top1.prob:.3f}")
        title = f"CAM: {categories[top1.idx]} ({top1.prob:.2f})"
        display(show_row([image, units.overlay_cam(image, cam)], [name, title]))


def show_top5_cams(
    net: torch.nn.Module,
    images: Mapping[str, np.ndarray],
    weight_fc: np.ndarray,
    categories: Sequence[str],
    units: CamUnits,
) -> None:
    """The CAMs of the five most likely classes of the first picture, their probabilities printed, in one row.

    Softmax keeps the order of the logits, and p_k / p_top1 = exp(logit_k - logit_top1): the top-5
    probabilities follow from the student's get_cls_pred and the logits.
    """
    from IPython.display import display

    image = next(iter(images.values()))
    top1 = _top1(net, image, units)
    logits = top1.logits
    classes = logits[0].argsort(descending=True)[:5].tolist()
    panels, titles = [], []
    for idx in classes:
        prob = top1.prob * float(np.exp(float(logits[0, idx] - logits[0, top1.idx])))
        panels.append(units.overlay_cam(image, units.return_cam(top1.features, weight_fc, idx)))
        titles.append(f"{categories[idx]} ({prob:.2f})")
        print(f"{categories[idx]:>30s}  p = {prob:.3f}")
    display(show_row(panels, titles))


@dataclass(frozen=True)
class FacadePatches:
    """A labelled patch set: RGB uint8 images (N, s, s, 3), int labels (N,), the class names and colours."""

    images: np.ndarray
    labels: np.ndarray
    classes: Sequence[str]
    palette: Sequence[Sequence[int]]
    network_input: int  # side the patches are resized to for ResNet-18


def facade_patch_set(*, fast: bool, photographs: int = 120) -> FacadePatches:
    """Patches of CMP Facade named by their majority class (prepared once), or of synthetic scenes in fast mode.

    Real data: the first `photographs` training photographs cut into 64 px patches, a patch kept when one class
    covers 60 % of it, at most 60 per class, fed to the network at 128 px. Fast mode: 32 px patches of 12
    synthetic scenes, 8 per class, at 64 px. Prints the count per class.
    """
    from starter.common import data_root
    from starter.labelled_crops import majority_class_crops

    if fast:
        from starter.data import SyntheticSegmentation

        scenes = SyntheticSegmentation(12, n_class=5, size=(96, 128), seed=0)
        size, per_class, network_input = 32, 8, 64
        classes, palette = scenes.classes, scenes.palette
        pairs = (scenes.generate(i) for i in range(len(scenes)))
        print("Fast mode: patches of synthetic scenes stand in for CMP Facade; the network has random weights.")
    else:
        from starter.constants import CMP_CLASSES, CMP_PALETTE
        from starter.data import CMPFacade
        from starter.environment import dataset_ready, prepare_dataset

        if not dataset_ready(data_root(), "cmp_facade"):
            print(prepare_dataset("cmp_facade", data_root()))  # downloads and prepares it once
        facades = CMPFacade(split="train")
        size, per_class, network_input = 64, 60, 128
        classes, palette = CMP_CLASSES, CMP_PALETTE
        count = min(photographs, len(facades))
        pairs = ((np.asarray(facades.load_image(i)), facades.load_mask(i)) for i in range(count))
    images, labels = majority_class_crops(
        pairs, size, per_class=per_class, n_class=len(classes), min_share=0.6, progress=not fast
    )
    counts = np.bincount(labels, minlength=len(classes))
    listed = ", ".join(f"{classes[c]} {n}" for c, n in enumerate(counts) if n)
    print(f"{len(labels)} patches of {size}x{size} px: {listed}")
    return FacadePatches(images, labels, list(classes), list(palette), network_input)


def patch_loader(patches: FacadePatches, batch_size: int = 64) -> DataLoader:
    """Batches of (ImageNet-normalised patches resized to `patches.network_input`, int64 labels), in order."""
    x = torch.from_numpy(patches.images).permute(0, 3, 1, 2).float() / 255
    size = (patches.network_input, patches.network_input)
    x = _normalised(F.interpolate(x, size=size, mode="bilinear", align_corners=False))
    return DataLoader(TensorDataset(x, torch.from_numpy(patches.labels).long()), batch_size=batch_size)


def _tsne_2d(vectors: np.ndarray) -> np.ndarray:
    """(N, D) float array -> (N, 2) t-SNE coordinates (deterministic: PCA start, a fixed seed)."""
    from sklearn.manifold import TSNE

    perplexity = min(30.0, (len(vectors) - 1) / 3)
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=0).fit_transform(vectors)


def show_tsne(cam_features: Callable[..., Any], net: torch.nn.Module, patches: FacadePatches) -> None:
    """The student's penultimate features of every patch, then two t-SNE plots: of those features, and of the
    raw pixels (each patch averaged to 16x16x3).

    Inputs:
        cam_features: the student's cam_features(net, loader) -> (features float (N, 512), labels int64 (N,)).
        net: the ResNet-18; patches: the labelled patch set, fed through patch_loader(patches).
    Prints the shapes of the features and labels.
    """
    from IPython.display import display

    from starter.viz import plot_embedding

    features, labels = cam_features(net, patch_loader(patches))
    print(f"features {tuple(features.shape)}, labels {tuple(labels.shape)}")

    raw_pixels = F.adaptive_avg_pool2d(torch.from_numpy(patches.images).permute(0, 3, 1, 2).float(), 16).flatten(1)
    for vectors, what in ((features, "ResNet-18 penultimate features"), (raw_pixels, "raw pixels (16x16)")):
        figure = plot_embedding(
            _tsne_2d(vectors.numpy()),
            labels.numpy(),
            patches.classes,
            palette=patches.palette,
            thumbnails=patches.images,
            title=f"t-SNE of {what}",
        )
        display(figure)
