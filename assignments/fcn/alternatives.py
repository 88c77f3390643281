"""Two independent correct implementations of every FCN unit (see segkit/proof/alternatives.py)."""

BILINEAR_LOOPS = '''
def get_upsampling_weight(in_channels, out_channels, kernel_size):
    """Bilinear kernel with explicit loops and Python floats."""
    factor = (kernel_size + 1) // 2
    if kernel_size % 2 == 1:
        center = factor - 1
    else:
        center = factor - 0.5
    kernel = [[(1 - abs(i - center) / factor) * (1 - abs(j - center) / factor) for j in range(kernel_size)]
              for i in range(kernel_size)]
    weight = torch.zeros((in_channels, out_channels, kernel_size, kernel_size))
    for c in range(min(in_channels, out_channels)):
        weight[c, c] = torch.tensor(kernel, dtype=torch.float64)
    return weight
'''

BILINEAR_NUMPY = '''
import numpy as np


def get_upsampling_weight(in_channels, out_channels, kernel_size):
    """NumPy ogrid version (the original FCN code's formulation)."""
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = np.ogrid[:kernel_size, :kernel_size]
    filt = (1 - abs(og[0] - center) / factor) * (1 - abs(og[1] - center) / factor)
    weight = np.zeros((in_channels, out_channels, kernel_size, kernel_size), dtype=np.float64)
    weight[range(in_channels), range(out_channels), :, :] = filt
    return torch.from_numpy(weight).float()
'''

FCN32S_TABLE = '''
class FCN32s(nn.Module):
    """FCN-32s built from a table with setattr; functional pooling and dropout."""

    BLOCKS = ((3, 64, 2), (64, 128, 2), (128, 256, 3), (256, 512, 3), (512, 512, 3))

    def __init__(self, n_class=12):
        super().__init__()
        for block, (cin, cout, repeats) in enumerate(self.BLOCKS, start=1):
            for i in range(1, repeats + 1):
                padding = 100 if (block, i) == (1, 1) else 1
                setattr(self, f"conv{block}_{i}", nn.Conv2d(cin if i == 1 else cout, cout, kernel_size=3,
                                                            padding=padding))
        self.fc6 = nn.Conv2d(512, 4096, kernel_size=7)
        self.fc7 = nn.Conv2d(4096, 4096, kernel_size=1)
        self.score_fr = nn.Conv2d(4096, n_class, kernel_size=1)
        self.upscore = nn.ConvTranspose2d(n_class, n_class, kernel_size=64, stride=32, bias=False)
        with torch.no_grad():
            self.score_fr.weight.zero_()
            self.score_fr.bias.zero_()
            self.upscore.weight.copy_(get_upsampling_weight(n_class, n_class, 64))

    def features(self, x):
        """Returns (pool3, pool4, h)."""
        h, pools = x, []
        for block, (_, _, repeats) in enumerate(self.BLOCKS, start=1):
            for i in range(1, repeats + 1):
                h = F.relu(getattr(self, f"conv{block}_{i}")(h))
            h = F.max_pool2d(h, kernel_size=2, stride=2, ceil_mode=True)
            pools.append(h)
        h = F.dropout2d(F.relu(self.fc6(h)), 0.5, self.training)
        h = F.dropout2d(F.relu(self.fc7(h)), 0.5, self.training)
        return pools[2], pools[3], h

    def forward(self, x):
        h = self.upscore(self.score_fr(self.features(x)[2]))
        return h.narrow(2, 19, x.shape[2]).narrow(3, 19, x.shape[3]).contiguous()
'''

FCN32S_EXPLICIT = '''
class FCN32s(nn.Module):
    """FCN-32s with explicit layers, a functional transposed convolution and an explicit crop."""

    def __init__(self, n_class=12):
        super().__init__()
        self.conv1_1 = nn.Conv2d(3, 64, 3, 1, 100)
        self.conv1_2 = nn.Conv2d(64, 64, 3, 1, 1)
        self.conv2_1 = nn.Conv2d(64, 128, 3, 1, 1)
        self.conv2_2 = nn.Conv2d(128, 128, 3, 1, 1)
        self.conv3_1 = nn.Conv2d(128, 256, 3, 1, 1)
        self.conv3_2 = nn.Conv2d(256, 256, 3, 1, 1)
        self.conv3_3 = nn.Conv2d(256, 256, 3, 1, 1)
        self.conv4_1 = nn.Conv2d(256, 512, 3, 1, 1)
        self.conv4_2 = nn.Conv2d(512, 512, 3, 1, 1)
        self.conv4_3 = nn.Conv2d(512, 512, 3, 1, 1)
        self.conv5_1 = nn.Conv2d(512, 512, 3, 1, 1)
        self.conv5_2 = nn.Conv2d(512, 512, 3, 1, 1)
        self.conv5_3 = nn.Conv2d(512, 512, 3, 1, 1)
        self.pool = nn.MaxPool2d(2, 2, ceil_mode=True)  # one module reused: it has no parameters
        self.fc6 = nn.Conv2d(512, 4096, 7)
        self.fc7 = nn.Conv2d(4096, 4096, 1)
        self.drop = nn.Dropout2d(p=0.5)
        self.score_fr = nn.Conv2d(4096, n_class, 1)
        nn.init.constant_(self.score_fr.weight, 0.0)
        nn.init.constant_(self.score_fr.bias, 0.0)
        self.upscore = nn.ConvTranspose2d(n_class, n_class, 64, 32, bias=False)
        self.upscore.weight.data = get_upsampling_weight(n_class, n_class, 64).clone()

    def features(self, x):
        """Returns (pool3, pool4, h)."""
        relu = torch.relu
        h = self.pool(relu(self.conv1_2(relu(self.conv1_1(x)))))
        h = self.pool(relu(self.conv2_2(relu(self.conv2_1(h)))))
        pool3 = self.pool(relu(self.conv3_3(relu(self.conv3_2(relu(self.conv3_1(h)))))))
        pool4 = self.pool(relu(self.conv4_3(relu(self.conv4_2(relu(self.conv4_1(pool3)))))))
        h = self.pool(relu(self.conv5_3(relu(self.conv5_2(relu(self.conv5_1(pool4)))))))
        h = self.drop(relu(self.fc6(h)))
        h = self.drop(relu(self.fc7(h)))
        return pool3, pool4, h

    def forward(self, x):
        _, _, h = self.features(x)
        h = F.conv_transpose2d(self.score_fr(h), self.upscore.weight, stride=32)
        height, width = x.shape[-2:]
        offset = 19
        return h[..., offset:offset + height, offset:offset + width].contiguous()
'''

FCN16S_NARROW = '''
class FCN16s(FCN32s):
    """FCN-16s: crops with narrow, bilinear weights assigned in a loop."""

    def __init__(self, n_class=12):
        super().__init__(n_class)
        del self.upscore
        self.score_pool4 = nn.Conv2d(512, n_class, kernel_size=1)
        nn.init.constant_(self.score_pool4.weight, 0)
        nn.init.constant_(self.score_pool4.bias, 0)
        self.upscore2 = nn.ConvTranspose2d(n_class, n_class, kernel_size=4, stride=2, bias=False)
        self.upscore16 = nn.ConvTranspose2d(n_class, n_class, kernel_size=32, stride=16, bias=False)
        for layer in (self.upscore2, self.upscore16):
            layer.weight.data = get_upsampling_weight(n_class, n_class, layer.kernel_size[0]).clone()

    def forward(self, x):
        _, pool4, h = self.features(x)
        up = self.upscore2(self.score_fr(h))
        skip = self.score_pool4(pool4).narrow(2, 5, up.shape[2]).narrow(3, 5, up.shape[3])
        out = self.upscore16(up + skip)
        return out.narrow(2, 27, x.shape[2]).narrow(3, 27, x.shape[3]).contiguous()
'''

FCN16S_CROP_FIRST = '''
class FCN16s(FCN32s):
    """FCN-16s: pool4 is cropped before the 1x1 score convolution (the same thing)."""

    def __init__(self, n_class=12):
        super().__init__(n_class)
        delattr(self, "upscore")
        self.score_pool4 = nn.Conv2d(512, n_class, 1)
        with torch.no_grad():
            self.score_pool4.weight.fill_(0)
            self.score_pool4.bias.fill_(0)
        self.upscore2 = nn.ConvTranspose2d(n_class, n_class, 4, 2, bias=False)
        self.upscore16 = nn.ConvTranspose2d(n_class, n_class, 32, 16, bias=False)
        with torch.no_grad():
            self.upscore2.weight.copy_(get_upsampling_weight(n_class, n_class, 4))
            self.upscore16.weight.copy_(get_upsampling_weight(n_class, n_class, 32))

    def forward(self, x):
        _, pool4, h = self.features(x)
        up = self.upscore2(self.score_fr(h))
        rows, cols = up.shape[2], up.shape[3]
        fused = up + self.score_pool4(pool4[:, :, 5:5 + rows, 5:5 + cols])
        out = self.upscore16(fused)
        return out[:, :, 27:, 27:][:, :, :x.shape[2], :x.shape[3]].contiguous()
'''

FCN8S_LOOP = '''
class FCN8s(FCN32s):
    """FCN-8s: skips fused in a loop over (score layer, crop offset, upsampler)."""

    def __init__(self, n_class=12):
        super().__init__(n_class)
        del self.upscore
        self.score_pool3 = nn.Conv2d(256, n_class, kernel_size=1)
        self.score_pool4 = nn.Conv2d(512, n_class, kernel_size=1)
        self.upscore2 = nn.ConvTranspose2d(n_class, n_class, kernel_size=4, stride=2, bias=False)
        self.upscore_pool4 = nn.ConvTranspose2d(n_class, n_class, kernel_size=4, stride=2, bias=False)
        self.upscore8 = nn.ConvTranspose2d(n_class, n_class, kernel_size=16, stride=8, bias=False)
        for name, module in self.named_children():
            if name.startswith("score_pool"):
                nn.init.zeros_(module.weight)
                nn.init.zeros_(module.bias)
            elif name.startswith("upscore"):
                module.weight.data.copy_(get_upsampling_weight(n_class, n_class, module.kernel_size[0]))

    def forward(self, x):
        pool3, pool4, h = self.features(x)
        h = self.score_fr(h)
        for score, pool, offset, up in ((self.score_pool4, pool4, 5, self.upscore2),
                                        (self.score_pool3, pool3, 9, self.upscore_pool4)):
            h = up(h)
            h = h + score(pool).narrow(2, offset, h.shape[2]).narrow(3, offset, h.shape[3])
        h = self.upscore8(h)
        return h.narrow(2, 31, x.shape[2]).narrow(3, 31, x.shape[3]).contiguous()
'''

FCN8S_FUNCTIONAL = '''
class FCN8s(FCN32s):
    """FCN-8s with functional transposed convolutions and pools cropped before scoring."""

    def __init__(self, n_class=12):
        super().__init__(n_class)
        delattr(self, "upscore")
        self.score_pool4 = nn.Conv2d(512, n_class, 1)
        self.score_pool3 = nn.Conv2d(256, n_class, 1)
        self.upscore2 = nn.ConvTranspose2d(n_class, n_class, 4, stride=2, bias=False)
        self.upscore_pool4 = nn.ConvTranspose2d(n_class, n_class, 4, stride=2, bias=False)
        self.upscore8 = nn.ConvTranspose2d(n_class, n_class, 16, stride=8, bias=False)
        with torch.no_grad():
            for score in (self.score_pool3, self.score_pool4):
                score.weight.mul_(0)
                score.bias.mul_(0)
            self.upscore2.weight.copy_(get_upsampling_weight(n_class, n_class, 4))
            self.upscore_pool4.weight.copy_(get_upsampling_weight(n_class, n_class, 4))
            self.upscore8.weight.copy_(get_upsampling_weight(n_class, n_class, 16))

    def forward(self, x):
        pool3, pool4, h = self.features(x)
        up2 = F.conv_transpose2d(self.score_fr(h), self.upscore2.weight, stride=2)
        n2, m2 = up2.shape[-2:]
        up4 = F.conv_transpose2d(up2 + self.score_pool4(pool4[:, :, 5:5 + n2, 5:5 + m2]),
                                 self.upscore_pool4.weight, stride=2)
        n4, m4 = up4.shape[-2:]
        out = F.conv_transpose2d(up4 + self.score_pool3(pool3[:, :, 9:9 + n4, 9:9 + m4]),
                                 self.upscore8.weight, stride=8)
        return out[:, :, 31:31 + x.shape[2], 31:31 + x.shape[3]].contiguous()
'''

VGG_COPY_MODULES = '''
def copy_params_from_vgg16(model, vgg16):
    """Walk VGG16's feature convolutions in order; fc layers reshaped with view_as."""
    convs = iter(layer for layer in vgg16.features.children() if isinstance(layer, nn.Conv2d))
    for block, repeats in zip(range(1, 6), (2, 2, 3, 3, 3)):
        for i in range(1, repeats + 1):
            source, target = next(convs), getattr(model, f"conv{block}_{i}")
            target.weight.data.copy_(source.weight.data)
            target.bias.data.copy_(source.bias.data)
    for target, source in ((model.fc6, vgg16.classifier[0]), (model.fc7, vgg16.classifier[3])):
        target.weight.data.copy_(source.weight.data.view_as(target.weight))
        target.bias.data.copy_(source.bias.data.view_as(target.bias))
'''

VGG_COPY_STATE_DICT = '''
def copy_params_from_vgg16(model, vgg16):
    """Through state dicts: torchvision's VGG16 indices, loaded with strict=False."""
    source = vgg16.state_dict()
    names = ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3",
             "conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3"]
    indices = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    update = {}
    for name, index in zip(names, indices):
        for kind in ("weight", "bias"):
            update[f"{name}.{kind}"] = source[f"features.{index}.{kind}"].clone()
    target = model.state_dict()
    for name, index in (("fc6", 0), ("fc7", 3)):
        for kind in ("weight", "bias"):
            update[f"{name}.{kind}"] = source[f"classifier.{index}.{kind}"].reshape(target[f"{name}.{kind}"].shape)
    model.load_state_dict(update, strict=False)
'''

RESNET_SEQUENTIAL = '''
class FCNResNet18(nn.Module):
    """FCN on ResNet-18 with `backbone` as an nn.Sequential of the ResNet's children; explicit zero padding."""

    def __init__(self, n_class=12, variant="32s", weights=None):
        super().__init__()
        if variant not in ("32s", "16s"):
            raise ValueError(f"variant must be '32s' or '16s', got {variant!r}")
        self.variant = variant
        resnet = torchvision.models.resnet18(weights=weights)
        self.backbone = nn.Sequential(*list(resnet.children())[:-2])  # conv1 .. layer4
        self.score_fr = nn.Conv2d(512, n_class, kernel_size=1)
        nn.init.zeros_(self.score_fr.weight)
        nn.init.zeros_(self.score_fr.bias)
        if variant == "32s":
            self.upscore = nn.ConvTranspose2d(n_class, n_class, kernel_size=64, stride=32, padding=16, bias=False)
        else:
            self.score_pool4 = nn.Conv2d(256, n_class, kernel_size=1)
            nn.init.zeros_(self.score_pool4.weight)
            nn.init.zeros_(self.score_pool4.bias)
            self.upscore2 = nn.ConvTranspose2d(n_class, n_class, kernel_size=4, stride=2, padding=1, bias=False)
            self.upscore16 = nn.ConvTranspose2d(n_class, n_class, kernel_size=32, stride=16, padding=8, bias=False)
        for module in self.modules():
            if isinstance(module, nn.ConvTranspose2d):
                module.weight.data.copy_(get_upsampling_weight(n_class, n_class, module.kernel_size[0]))

    def forward(self, x):
        height, width = x.shape[2], x.shape[3]
        padded = x.new_zeros(x.shape[0], x.shape[1], math.ceil(height / 32) * 32, math.ceil(width / 32) * 32)
        padded[:, :, :height, :width] = x
        layer3 = self.backbone[:7](padded)
        score = self.score_fr(self.backbone[7](layer3))
        if self.variant == "32s":
            out = self.upscore(score)
        else:
            out = self.upscore16(self.upscore2(score) + self.score_pool4(layer3))
        return out[:, :, :height, :width].contiguous()
'''

RESNET_FUNCTIONAL = '''
class FCNResNet18(nn.Module):
    """FCN on ResNet-18 (fc replaced by Identity); transposed convolutions applied functionally."""

    def __init__(self, n_class=12, variant="32s", weights=None):
        super().__init__()
        if variant not in ("32s", "16s"):
            raise ValueError(f"variant must be '32s' or '16s', got {variant!r}")
        self.variant = variant
        self.backbone = torchvision.models.resnet18(weights=weights)
        self.backbone.fc = nn.Identity()  # no parameters: the trunk is what remains
        self.score_fr = nn.Conv2d(512, n_class, 1)
        self.score_fr.weight.data.zero_()
        self.score_fr.bias.data.zero_()
        if variant == "32s":
            self.upscore = nn.ConvTranspose2d(n_class, n_class, 64, 32, 16, bias=False)
            self.upscore.weight.data = get_upsampling_weight(n_class, n_class, 64).clone()
        else:
            self.score_pool4 = nn.Conv2d(256, n_class, 1)
            self.score_pool4.weight.data.zero_()
            self.score_pool4.bias.data.zero_()
            self.upscore2 = nn.ConvTranspose2d(n_class, n_class, 4, 2, 1, bias=False)
            self.upscore16 = nn.ConvTranspose2d(n_class, n_class, 32, 16, 8, bias=False)
            self.upscore2.weight.data = get_upsampling_weight(n_class, n_class, 4).clone()
            self.upscore16.weight.data = get_upsampling_weight(n_class, n_class, 32).clone()

    def forward(self, x):
        height, width = x.shape[-2:]
        x = F.pad(x, [0, -width % 32, 0, -height % 32])
        net = self.backbone
        h = net.conv1(x)
        h = net.maxpool(net.relu(net.bn1(h)))
        for layer in (net.layer1, net.layer2):
            h = layer(h)
        layer3 = net.layer3(h)
        score = self.score_fr(net.layer4(layer3))
        if self.variant == "32s":
            # padding p of a transposed convolution = crop p pixels on every side
            full = F.conv_transpose2d(score, self.upscore.weight, stride=32)
            out = full[:, :, 16:16 + 32 * score.shape[2], 16:16 + 32 * score.shape[3]]
        else:
            up = F.conv_transpose2d(score, self.upscore2.weight, stride=2)[:, :, 1:-1, 1:-1]
            fused = up + self.score_pool4(layer3)
            full = F.conv_transpose2d(fused, self.upscore16.weight, stride=16)
            out = full[:, :, 8:-8, 8:-8]
        return out[:, :, :height, :width].contiguous()
'''

CONV_SIZE_FLOATS = '''
def conv_output_size(size, kernel, stride=1, padding=0, dilation=1, transposed=False, output_padding=0,
                     ceil_mode=False):
    """math.floor / math.ceil on true division, as PyTorch's documentation writes the formulas."""
    if transposed:
        return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1
    steps = (size + 2 * padding - dilation * (kernel - 1) - 1) / stride
    if not ceil_mode:
        return math.floor(steps) + 1
    out = math.ceil(steps) + 1
    last_start = (out - 1) * stride - padding  # first input pixel of the last window
    return out - 1 if last_start >= size else out
'''

CONV_SIZE_WINDOWS = '''
def conv_output_size(size, kernel, stride=1, padding=0, dilation=1, transposed=False, output_padding=0,
                     ceil_mode=False):
    """Counts window positions (or, transposed, the pixels the spread kernels reach)."""
    span = dilation * (kernel - 1) + 1
    if transposed:
        reached = (size - 1) * stride + span  # pixels covered before cropping the padding
        return reached - 2 * padding + output_padding
    padded = size + 2 * padding
    count, start = 0, 0  # start: first pixel of the window, in padded coordinates
    while True:
        fits = start + span <= padded
        partial = ceil_mode and start + span - padded < stride and start < size + padding
        if not (fits or partial):
            break
        count += 1
        start += stride
    return count
'''

CROP_BACKWARD_FLOATS = '''
def crop_offset(layers):
    """Floats (exact here: halves and powers of two), walking from the output back to the input."""
    a, b = 1.0, 0.0  # input coordinate = a * output coordinate + b
    for kind, kernel, stride, padding in reversed(layers):
        centre = (kernel - 1) / 2 - padding
        if kind == "transposed":
            a, b = a / stride, (b - centre) / stride
        else:
            a, b = a * stride, b * stride + centre
    return int(round(-b))
'''

CROP_TRACK_PIXEL = '''
def _forward_map(layer, x):
    """Where input coordinate x lands in the layer's output coordinates."""
    kind, kernel, stride, padding = layer
    centre = (kernel - 1) / 2 - padding
    return stride * x + centre if kind == "transposed" else (x - centre) / stride


def crop_offset(layers):
    """Follows input pixel 0 through every layer; where it lands is the offset."""
    position = 0.0
    for layer in layers:
        position = _forward_map(layer, position)
    return round(position)
'''

CONFUSION_NUMPY = '''
import numpy as np


def confusion_matrix(pred, target, n_class, ignore_index=IGNORE_INDEX):
    """NumPy: np.add.at on (target, pred) pairs."""
    predicted = np.asarray(pred).reshape(-1).astype(np.int64)
    truth = np.asarray(target).reshape(-1).astype(np.int64)
    keep = (truth != ignore_index) & (truth >= 0) & (truth < n_class)
    conf = np.zeros((n_class, n_class), dtype=np.int64)
    np.add.at(conf, (truth[keep], predicted[keep]), 1)
    return torch.from_numpy(conf)
'''

CONFUSION_LOOPS = '''
def confusion_matrix(pred, target, n_class, ignore_index=IGNORE_INDEX):
    """One row at a time: for every true class, count the predictions."""
    truth = target.flatten().to(torch.int64)
    predicted = pred.flatten().to(torch.int64)
    conf = torch.zeros(n_class, n_class, dtype=torch.int64)
    for t in range(n_class):
        if t == ignore_index:
            continue
        row = predicted[truth == t]
        for p in range(n_class):
            conf[t, p] = int((row == p).sum())
    return conf
'''

IOU_NUMPY = '''
import numpy as np


def iou_per_class(conf):
    """NumPy, 0/0 -> NaN with the warnings silenced."""
    counts = np.asarray(conf, dtype=np.float64)
    intersection = np.diag(counts)
    union = counts.sum(axis=0) + counts.sum(axis=1) - intersection
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = intersection / union
    return torch.from_numpy(iou).float()


def mean_iou(conf):
    iou = iou_per_class(conf)
    defined = iou[~torch.isnan(iou)]
    return float(defined.mean()) if defined.numel() else float("nan")
'''

IOU_LOOPS = '''
def iou_per_class(conf):
    """A loop over classes with Python numbers."""
    values = []
    for c in range(conf.shape[0]):
        true_positive = float(conf[c, c])
        union = float(conf[c, :].sum()) + float(conf[:, c].sum()) - true_positive
        values.append(true_positive / union if union > 0 else float("nan"))
    return torch.tensor(values, dtype=torch.float32)


def mean_iou(conf):
    defined = [v for v in iou_per_class(conf).tolist() if not math.isnan(v)]
    return sum(defined) / len(defined) if defined else float("nan")
'''

RGB_PER_COLOUR = '''
def rgb_to_index(rgb, palette, ignore_index=255):
    """One boolean mask per palette colour (a loop over colours, never over pixels)."""
    rgb = np.asarray(rgb)
    index = np.full(rgb.shape[:2], ignore_index, dtype=np.int64)
    for class_id, colour in enumerate(palette):
        matches = np.all(rgb == np.asarray(colour, dtype=rgb.dtype), axis=-1)
        index[matches] = class_id
    return index


def index_to_rgb(mask, palette):
    """A loop over classes; every pixel starts black."""
    mask = np.asarray(mask)
    rgb = np.zeros(mask.shape + (3,), dtype=np.uint8)
    for class_id, colour in enumerate(palette):
        rgb[mask == class_id] = colour
    return rgb
'''

RGB_TORCH_BROADCAST = '''
def rgb_to_index(rgb, palette, ignore_index=255):
    """PyTorch: every pixel against every palette colour at once, the first match's index."""
    pixels = torch.from_numpy(np.ascontiguousarray(rgb)).to(torch.int16)  # (H, W, 3)
    colours = torch.tensor([[int(v) for v in colour] for colour in palette], dtype=torch.int16).reshape(-1, 3)
    equal = (pixels[:, :, None, :] == colours).all(dim=-1)  # (H, W, n)
    if colours.shape[0] == 0:
        return np.full(pixels.shape[:2], ignore_index, dtype=np.int64)
    first = equal.to(torch.uint8).argmax(dim=-1)
    return torch.where(equal.any(dim=-1), first, torch.tensor(ignore_index)).numpy().astype(np.int64)


def index_to_rgb(mask, palette):
    """PyTorch lookup table with a black row at the end for every id outside the palette."""
    ids = torch.from_numpy(np.asarray(mask).astype(np.int64))
    table = torch.zeros(len(palette) + 1, 3, dtype=torch.uint8)
    for class_id, colour in enumerate(palette):
        table[class_id] = torch.tensor([int(v) for v in colour], dtype=torch.uint8)
    outside = (ids < 0) | (ids >= len(palette))
    return table[torch.where(outside, torch.tensor(len(palette)), ids)].numpy()
'''

ALTERNATIVES = {
    "fcn_bilinear": [BILINEAR_LOOPS, BILINEAR_NUMPY],
    "fcn_conv_size": [CONV_SIZE_FLOATS, CONV_SIZE_WINDOWS],
    "fcn_crop": [CROP_BACKWARD_FLOATS, CROP_TRACK_PIXEL],
    "fcn32s": [FCN32S_TABLE, FCN32S_EXPLICIT],
    "fcn16s": [FCN16S_NARROW, FCN16S_CROP_FIRST],
    "fcn8s": [FCN8S_LOOP, FCN8S_FUNCTIONAL],
    "fcn_vgg_copy": [VGG_COPY_MODULES, VGG_COPY_STATE_DICT],
    "fcn_resnet": [RESNET_SEQUENTIAL, RESNET_FUNCTIONAL],
    "fcn_confusion": [CONFUSION_NUMPY, CONFUSION_LOOPS],
    "fcn_iou": [IOU_NUMPY, IOU_LOOPS],
    "fcn_rgb_to_index": [RGB_PER_COLOUR, RGB_TORCH_BROADCAST],
}
