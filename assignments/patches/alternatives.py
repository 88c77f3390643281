"""Two independent correct implementations of every patches unit (see segkit/proof/alternatives.py)."""

from segkit.proof import assignment_module

# The confusion-matrix contract is the FCN assignment's: its two alternatives serve here too.
_FCN_ALTERNATIVES = assignment_module("fcn", "alternatives")
CONFUSION_LOOPS, CONFUSION_NUMPY = _FCN_ALTERNATIVES.CONFUSION_LOOPS, _FCN_ALTERNATIVES.CONFUSION_NUMPY

EXTRACT_UNFOLD = '''
def extract_patches(image, size, stride):
    """All windows with Tensor.unfold, then the grid's windows picked by advanced indexing."""
    if image.dim() != 3:
        raise ValueError("image must be (C, H, W)")
    _, height, width = image.shape
    if height < size or width < size:
        raise ValueError(f"image of {height}x{width} is smaller than {size}")
    rows = list(range(0, height - size + 1, stride))
    if rows[-1] + size < height:
        rows.append(height - size)
    cols = list(range(0, width - size + 1, stride))
    if cols[-1] + size < width:
        cols.append(width - size)
    positions = torch.tensor([[y, x] for y in rows for x in cols], dtype=torch.long)
    windows = image.unfold(1, size, 1).unfold(2, size, 1)  # (C, H - size + 1, W - size + 1, size, size)
    patches = windows[:, positions[:, 0], positions[:, 1]]  # (C, N, size, size)
    return patches.permute(1, 0, 2, 3).contiguous(), positions
'''

EXTRACT_NARROW = '''
def extract_patches(image, size, stride):
    """Starts built with a while loop, positions with cartesian_prod, windows with narrow."""
    height, width = image.shape[-2], image.shape[-1]
    if min(height, width) < size:
        raise ValueError("the image is smaller than the patch size")

    def starts(length):
        values, start = [], 0
        while start + size <= length:
            values.append(start)
            start += stride
        if values[-1] + size != length:
            values.append(length - size)
        return torch.tensor(values, dtype=torch.int64)

    positions = torch.cartesian_prod(starts(height), starts(width)).reshape(-1, 2)
    patches = [image.narrow(1, int(y), size).narrow(2, int(x), size) for y, x in positions]
    return torch.stack(patches, dim=0), positions
'''

WEIGHTS_NUMPY = '''
def class_weights(masks, n_class, ignore_index=IGNORE_INDEX):
    """NumPy bincount."""
    labels = np.asarray(masks).reshape(-1).astype(np.int64)
    labels = labels[labels != ignore_index]
    counts = np.bincount(labels, minlength=n_class)[:n_class].astype(np.float64)
    weights = np.zeros(n_class, dtype=np.float64)
    present = counts > 0
    weights[present] = labels.size / counts[present]
    return torch.from_numpy(weights).float()
'''

WEIGHTS_LOOPS = '''
def class_weights(masks, n_class, ignore_index=IGNORE_INDEX):
    """A loop over classes."""
    flat = masks.flatten().to(torch.int64)
    labelled = flat[flat != ignore_index]
    weights = torch.zeros(n_class, dtype=torch.float32)
    for c in range(n_class):
        count = int((labelled == c).sum())
        if count > 0:
            weights[c] = labelled.numel() / count
    return weights
'''

STITCH_INDEX_ADD = '''
def stitch_patches(patch_logits, positions, out_size):
    """Vectorised: flat pixel indices of every patch pixel, sums and counts with index_add_."""
    n_patches, channels, size, _ = patch_logits.shape
    height, width = out_size
    positions = torch.as_tensor(positions).long().to(patch_logits.device)
    dy, dx = torch.meshgrid(torch.arange(size, device=patch_logits.device),
                            torch.arange(size, device=patch_logits.device), indexing="ij")
    flat = ((positions[:, 0, None, None] + dy) * width + positions[:, 1, None, None] + dx).reshape(-1)
    values = patch_logits.permute(1, 0, 2, 3).reshape(channels, -1)
    total = patch_logits.new_zeros(channels, height * width).index_add_(1, flat, values)
    count = patch_logits.new_zeros(height * width).index_add_(0, flat, patch_logits.new_ones(flat.numel()))
    return (total / count.clamp(min=1)).reshape(channels, height, width)
'''

STITCH_NUMPY = '''
def stitch_patches(patch_logits, positions, out_size):
    """NumPy accumulation in float64."""
    values = patch_logits.detach().cpu().numpy().astype(np.float64)
    _, channels, size, _ = values.shape
    total = np.zeros((channels, *out_size))
    count = np.zeros(tuple(out_size))
    for patch, (y, x) in zip(values, np.asarray(positions).tolist()):
        total[:, y:y + size, x:x + size] += patch
        count[y:y + size, x:x + size] += 1
    count[count == 0] = 1
    return torch.from_numpy(total / count).to(patch_logits.dtype)
'''

PREDICT_SPLIT = '''
def predict_full(model, image, size, stride, batch_size=16):
    """torch.split into batches, per-module modes saved in a dict and restored."""
    modes = {module: module.training for module in model.modules()}
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    patches, positions = extract_patches(image, size, stride)
    model.eval()
    try:
        with torch.no_grad():
            logits = torch.cat([model(chunk.to(device)).to("cpu") for chunk in torch.split(patches, batch_size)])
    finally:
        for module, mode in modes.items():
            module.training = mode
    return stitch_patches(logits, positions, tuple(image.shape[1:]))
'''

PREDICT_GRAD_DISABLED = '''
def predict_full(model, image, size, stride, batch_size=16):
    """set_grad_enabled(False), an explicit batch loop, train(mode) restored module by module."""
    previous = [module.training for module in model.modules()]
    model.train(False)
    patches, positions = extract_patches(image, size, stride)
    device = next(iter(model.parameters())).device if any(True for _ in model.parameters()) else "cpu"
    outputs = []
    with torch.set_grad_enabled(False):
        start = 0
        while start < patches.shape[0]:
            batch = patches[start:start + batch_size].to(device)
            outputs.append(model(batch).detach().cpu())
            start += batch_size
    for module, mode in zip(model.modules(), previous):
        module.train(mode)  # parents first, so each child ends with its own mode
    return stitch_patches(torch.cat(outputs, dim=0), positions, (image.shape[1], image.shape[2]))
'''

PRF_NUMPY = '''
def precision_recall_f1(conf):
    """NumPy with 0/0 -> NaN (warnings silenced)."""
    counts = np.asarray(conf, dtype=np.float64)
    true_positive = np.diag(counts)
    predicted, actual = counts.sum(axis=0), counts.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = true_positive / predicted
        recall = true_positive / actual
        f1 = 2 * true_positive / (predicted + actual)
    return tuple(torch.from_numpy(v).float() for v in (precision, recall, f1))
'''

PRF_LOOPS = '''
def precision_recall_f1(conf):
    """A loop over classes with Python numbers."""
    n_class = conf.shape[0]
    precision, recall, f1 = [], [], []
    nan = float("nan")
    for c in range(n_class):
        hits = float(conf[c, c])
        predicted = float(conf[:, c].sum())
        actual = float(conf[c, :].sum())
        precision.append(hits / predicted if predicted else nan)
        recall.append(hits / actual if actual else nan)
        f1.append(2 * hits / (predicted + actual) if predicted + actual else nan)
    return torch.tensor(precision), torch.tensor(recall), torch.tensor(f1)
'''

ASPP_TORCHVISION = '''
from torchvision.models.segmentation.deeplabv3 import ASPP as TorchvisionASPP


class ASPP(nn.Module):
    """torchvision's DeepLabV3 ASPP with its modules renamed: convs[:-1] -> branches, convs[-1] -> pool."""

    def __init__(self, in_channels, out_channels=256, rates=(6, 12, 18)):
        super().__init__()
        original = TorchvisionASPP(in_channels, list(rates), out_channels)
        self.branches = nn.ModuleList(list(original.convs)[:-1])
        self.pool = original.convs[-1]  # pools, convolves and upsamples back itself
        self.project = original.project

    def forward(self, x):
        return self.project(torch.cat([branch(x) for branch in self.branches] + [self.pool(x)], dim=1))
'''

ASPP_SAME_PADDING = '''
class ASPP(nn.Module):
    """Branches from a loop over (kernel, rate), padding="same", the pooled vector broadcast with expand."""

    def __init__(self, in_channels, out_channels=256, rates=(6, 12, 18)):
        super().__init__()
        self.branches = nn.ModuleList()
        for kernel, rate in [(1, 1)] + [(3, int(r)) for r in rates]:
            conv = nn.Conv2d(in_channels, out_channels, kernel, padding="same", dilation=rate, bias=False)
            self.branches.append(nn.Sequential(conv, nn.BatchNorm2d(out_channels), nn.ReLU()))
        self.pool = nn.Sequential(
            nn.AdaptiveAvgPool2d((1, 1)), nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(),
        )
        width = out_channels * (len(self.branches) + 1)
        self.project = nn.Sequential(
            nn.Conv2d(width, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(), nn.Dropout(p=0.5)
        )

    def forward(self, x):
        height, width = x.shape[-2], x.shape[-1]
        pooled = self.pool(x).expand(-1, -1, height, width)
        return self.project(torch.cat([*(branch(x) for branch in self.branches), pooled], 1))
'''

DEEPLAB_REBUILT_CONVS = '''
class DeepLabV3Plus(nn.Module):
    """layer4's 3x3 convolutions rebuilt dilated (weights copied); the trunk as a Sequential, layer1 caught by a hook."""

    def __init__(self, n_class, weights=None):
        super().__init__()
        self.backbone = torchvision.models.resnet18(weights=weights)
        for block in self.backbone.layer4:
            for name in ("conv1", "conv2"):
                old = getattr(block, name)
                new = nn.Conv2d(old.in_channels, old.out_channels, 3, stride=1, padding=2, dilation=2, bias=False)
                with torch.no_grad():
                    new.weight.copy_(old.weight)
                setattr(block, name, new)
            if block.downsample is not None:
                block.downsample[0].stride = (1, 1)
        self.aspp = ASPP(512)
        self.low_level = nn.Sequential(nn.Conv2d(64, 48, kernel_size=1, bias=False), nn.BatchNorm2d(48), nn.ReLU())
        self.decoder = nn.Sequential(
            nn.Conv2d(304, 256, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(256), nn.ReLU(),
            nn.Conv2d(256, 256, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(256), nn.ReLU(),
        )
        self.classifier = nn.Conv2d(256, n_class, kernel_size=1)

    def forward(self, x):
        trunk = nn.Sequential(*list(self.backbone.children())[:-2])  # conv1 ... layer4
        caught = {}
        handle = self.backbone.layer1.register_forward_hook(lambda module, inputs, output: caught.setdefault("low", output))
        try:
            high = trunk(x)
        finally:
            handle.remove()
        low = caught["low"]
        context = F.interpolate(self.aspp(high), size=tuple(low.shape[2:]), mode="bilinear")
        scores = self.classifier(self.decoder(torch.cat((self.low_level(low), context), dim=1)))
        return F.interpolate(scores, size=tuple(x.shape[2:]), mode="bilinear")
'''

DEEPLAB_NAMED_STAGES = '''
class DeepLabV3Plus(nn.Module):
    """layer4 edited convolution by convolution, the unused fc deleted, the stages run from a list of names."""

    def __init__(self, n_class, weights=None):
        super().__init__()
        self.backbone = torchvision.models.resnet18(weights=weights)
        del self.backbone.fc
        layer4 = self.backbone.layer4
        layer4[0].conv1.stride = (1, 1)
        layer4[0].downsample[0].stride = (1, 1)
        for conv in (layer4[0].conv1, layer4[0].conv2, layer4[1].conv1, layer4[1].conv2):
            conv.dilation, conv.padding = (2, 2), (2, 2)
        self.aspp = ASPP(in_channels=512, out_channels=256, rates=(6, 12, 18))
        low = [nn.Conv2d(64, 48, (1, 1), bias=False), nn.BatchNorm2d(48), nn.ReLU(inplace=True)]
        self.low_level = nn.Sequential(*low)
        layers = []
        for cin in (304, 256):
            layers += [nn.Conv2d(cin, 256, (3, 3), padding=(1, 1), bias=False), nn.BatchNorm2d(256), nn.ReLU(inplace=True)]
        self.decoder = nn.Sequential(*layers)
        self.classifier = nn.Conv2d(256, n_class, (1, 1))

    def forward(self, x):
        h = x
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1"):
            h = getattr(self.backbone, name)(h)
        low = h
        for name in ("layer2", "layer3", "layer4"):
            h = getattr(self.backbone, name)(h)
        context = F.interpolate(self.aspp(h), low.shape[-2:], mode="bilinear", align_corners=False)
        fused = self.decoder(torch.cat([self.low_level(low), context], 1))
        return F.interpolate(self.classifier(fused), x.shape[-2:], mode="bilinear", align_corners=False)
'''

ALTERNATIVES = {
    "patch_extract": [EXTRACT_UNFOLD, EXTRACT_NARROW],
    "patch_weights": [WEIGHTS_NUMPY, WEIGHTS_LOOPS],
    "patch_stitch": [STITCH_INDEX_ADD, STITCH_NUMPY],
    "patch_predict": [PREDICT_SPLIT, PREDICT_GRAD_DISABLED],
    "patch_confusion": [CONFUSION_NUMPY, CONFUSION_LOOPS],
    "patch_prf": [PRF_NUMPY, PRF_LOOPS],
    "patch_aspp": [ASPP_TORCHVISION, ASPP_SAME_PADDING],
    "patch_deeplab": [DEEPLAB_REBUILT_CONVS, DEEPLAB_NAMED_STAGES],
}
