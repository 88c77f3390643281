"""Two independent correct implementations of every U-Net unit (see segkit/proof/alternatives.py)."""

AUGMENT_SLICING = '''
def random_crop_flip(image, mask, size, flip_p=0.5):
    """Plain slicing with torch.randint for the window and torch.flip for the flip."""
    crop_h, crop_w = int(size[0]), int(size[1])
    height, width = image.shape[-2], image.shape[-1]
    if crop_h > height or crop_w > width:
        raise ValueError(f"crop ({crop_h}, {crop_w}) does not fit in an image of ({height}, {width})")
    top = int(torch.randint(0, height - crop_h + 1, (1,)))
    left = int(torch.randint(0, width - crop_w + 1, (1,)))
    image = image[..., top:top + crop_h, left:left + crop_w]
    mask = mask[..., top:top + crop_h, left:left + crop_w]
    if float(torch.rand(())) < flip_p:
        image = torch.flip(image, dims=[-1])
        mask = torch.flip(mask, dims=[-1])
    return image.contiguous(), mask.contiguous()
'''

AUGMENT_NUMPY_INDEX = '''
def random_crop_flip(image, mask, size, flip_p=0.5):
    """NumPy's random generator; the crop and the flip as one index_select of column indices."""
    rows_needed, cols_needed = size
    rows_have, cols_have = image.shape[1], image.shape[2]
    if rows_needed > rows_have:
        raise ValueError("crop height larger than the image")
    if cols_needed > cols_have:
        raise ValueError("crop width larger than the image")
    top = np.random.randint(rows_have - rows_needed + 1)
    left = np.random.randint(cols_have - cols_needed + 1)
    columns = torch.arange(left, left + cols_needed)
    if np.random.random_sample() < flip_p:
        columns = columns.flip(0)
    row_index = torch.arange(top, top + rows_needed)
    image_crop = image.index_select(1, row_index).index_select(2, columns)
    mask_crop = mask.index_select(0, row_index).index_select(1, columns)
    return image_crop, mask_crop
'''

PRIOR_LOOPS = '''
def fit_pixel_prior(masks, n_class, ignore_index=IGNORE_INDEX):
    """One comparison per class; never-labelled pixels filled with 1/n_class afterwards."""
    masks = masks.to(torch.int64)
    counts = torch.stack([(masks == c).sum(dim=0) for c in range(n_class)]).to(torch.float64)
    if 0 <= ignore_index < n_class:  # an ignore_index inside the class range is not a class
        counts[ignore_index] = 0
    labelled = counts.sum(dim=0)
    prior = torch.empty_like(counts)
    seen = labelled > 0
    prior[:, seen] = counts[:, seen] / labelled[seen]
    prior[:, ~seen] = 1.0 / n_class
    return prior.to(torch.float32)


def predict_prior(prior, n):
    return torch.stack([prior.clone() for _ in range(n)])
'''

PRIOR_SCATTER = '''
def fit_pixel_prior(masks, n_class, ignore_index=IGNORE_INDEX):
    """scatter_add_ of ones into a flat (n_class * H * W,) table indexed by (class, pixel)."""
    n, height, width = masks.shape
    labels = masks.reshape(n, -1).long()
    keep = (labels >= 0) & (labels < n_class) & (labels != ignore_index)
    pixel = torch.arange(height * width).expand(n, -1)
    flat = labels[keep] * (height * width) + pixel[keep]
    table = torch.zeros(n_class * height * width, dtype=torch.float64)
    table.scatter_add_(0, flat, torch.ones_like(flat, dtype=torch.float64))
    table = table.view(n_class, height, width)
    total = table.sum(0, keepdim=True)
    uniform = torch.full_like(table, 1.0 / n_class)
    return torch.where(total == 0, uniform, table / torch.where(total == 0, torch.ones_like(total), total)).float()


def predict_prior(prior, n):
    return prior.expand(n, *prior.shape).clone()
'''

CONFUSION_SCATTER = '''
def confusion_matrix(pred, target, n_class, ignore_index=IGNORE_INDEX):
    """scatter_add_ of ones into a flat (n_class * n_class,) table."""
    truth = target.flatten().to(torch.int64)
    guess = pred.flatten().to(torch.int64)
    keep = (truth >= 0) & (truth < n_class)
    keep &= truth != ignore_index
    flat = truth[keep] * n_class + guess[keep]
    table = torch.zeros(n_class * n_class, dtype=torch.int64)
    table.scatter_add_(0, flat, torch.ones_like(flat))
    return table.view(n_class, n_class)
'''

CONFUSION_ONE_HOT = '''
def confusion_matrix(pred, target, n_class, ignore_index=IGNORE_INDEX):
    """Product of one-hot encodings: onehot(target)^T @ onehot(pred)."""
    truth = target.reshape(-1).long()
    guess = pred.reshape(-1).long()
    ok = torch.logical_and(truth.ge(0), truth.lt(n_class)).logical_and(truth.ne(ignore_index))
    rows = F.one_hot(truth[ok], n_class)
    cols = F.one_hot(guess[ok], n_class)
    return (rows.t().double() @ cols.double()).round().to(torch.int64)
'''

IOU_MASKED = '''
def iou_per_class(conf):
    """NaN table, filled only where the union is positive."""
    conf = conf.to(torch.float64)
    tp = torch.diagonal(conf)
    union = conf.sum(0) + conf.sum(1) - tp
    iou = torch.full_like(tp, float("nan"))
    defined = union > 0
    iou[defined] = tp[defined] / union[defined]
    return iou.to(torch.float32)


def mean_iou(conf):
    iou = iou_per_class(conf)
    defined = ~torch.isnan(iou)
    return (iou[defined].sum() / defined.sum()).item()
'''

IOU_PYTHON = '''
def iou_per_class(conf):
    """Python lists of counts."""
    table = conf.tolist()
    n_class = len(table)
    values = []
    for c in range(n_class):
        tp = table[c][c]
        row = sum(table[c])
        col = sum(table[r][c] for r in range(n_class))
        union = row + col - tp
        values.append(tp / union if union else float("nan"))
    return torch.tensor(values, dtype=torch.float32)


def mean_iou(conf):
    values = [v for v in iou_per_class(conf).tolist() if v == v]  # NaN != NaN
    return float(np.mean(values)) if values else float("nan")
'''

WEIGHTS_LOOPS = '''
def class_weights(masks, n_class, ignore_index=IGNORE_INDEX):
    """Counts per class in a loop over classes."""
    labels = masks.long()
    counts = []
    for c in range(n_class):
        counts.append(0 if c == ignore_index else int((labels == c).sum()))
    labelled = sum(counts)
    return torch.tensor([labelled / n if n else 0.0 for n in counts], dtype=torch.float32)
'''

WEIGHTS_NUMPY = '''
def class_weights(masks, n_class, ignore_index=IGNORE_INDEX):
    """NumPy bincount over the kept labels."""
    labels = masks.detach().cpu().numpy().astype(np.int64).ravel()
    labels = labels[(labels != ignore_index) & (labels >= 0) & (labels < n_class)]
    counts = np.bincount(labels, minlength=n_class).astype(np.float64)
    weight = np.zeros(n_class, dtype=np.float64)
    np.divide(counts.sum(), counts, out=weight, where=counts > 0)
    return torch.from_numpy(weight).float()
'''

WCE_SELECT_FIRST = '''
def weighted_cross_entropy(logits, target, weight, ignore_index=IGNORE_INDEX):
    """Pixels as rows (channels last), non-ignored rows selected before log_softmax and gather."""
    n_class = logits.shape[1]
    rows = logits.permute(0, 2, 3, 1).reshape(-1, n_class)
    labels = target.reshape(-1)
    keep = labels != ignore_index
    rows, labels = rows[keep], labels[keep].long()
    log_p = torch.log_softmax(rows, dim=1)
    picked = torch.gather(log_p, 1, labels.view(-1, 1)).view(-1)
    w = weight.to(rows.dtype).index_select(0, labels)
    return (w * -picked).sum() / w.sum()
'''

WCE_LOGSUMEXP = '''
def weighted_cross_entropy(logits, target, weight, ignore_index=IGNORE_INDEX):
    """-log softmax_y = logsumexp(logits) - logits_y; ignore pixels get weight 0 through torch.where."""
    ignored = target.eq(ignore_index)
    index = target.masked_fill(ignored, 0).long().unsqueeze(1)  # (N, 1, H, W)
    chosen = logits.gather(1, index).squeeze(1)
    nll = torch.logsumexp(logits, dim=1) - chosen  # (N, H, W)
    w = torch.where(ignored, torch.zeros((), dtype=logits.dtype), weight.to(logits.dtype)[index.squeeze(1)])
    return torch.sum(w * nll) / torch.sum(w)
'''

UNET_LOOPS = '''
class DoubleConv(nn.Module):
    """(conv 3x3 => BN => ReLU) twice; built from a loop."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        layers = []
        for cin in (in_channels, out_channels):
            layers += [nn.Conv2d(cin, out_channels, 3, 1, 1, bias=False), nn.BatchNorm2d(out_channels),
                       nn.ReLU(inplace=True)]
        self.double_conv = nn.Sequential(*layers)

    def forward(self, x):
        for layer in self.double_conv:
            x = layer(x)
        return x


class Down(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool2d(kernel_size=2, stride=2), DoubleConv(in_channels, out_channels))

    def forward(self, x):
        return self.maxpool_conv[1](F.max_pool2d(x, 2))


class Up(nn.Module):
    def __init__(self, in_channels):
        super().__init__()
        half = in_channels // 2
        self.up = nn.ConvTranspose2d(in_channels, half, kernel_size=(2, 2), stride=(2, 2))
        self.conv = DoubleConv(in_channels, half)

    def forward(self, x, skip):
        x = self.up(x)
        pads = []
        for dim in (3, 2):  # F.pad lists the last dimension first
            missing = skip.shape[dim] - x.shape[dim]
            before = missing // 2
            pads += [before, missing - before]
        return self.conv(torch.cat((skip, F.pad(x, tuple(pads), mode="constant", value=0.0)), 1))


class OutConv(nn.Module):
    def __init__(self, in_channels, n_class):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, n_class, 1)

    def forward(self, x):
        return F.conv2d(x, self.conv.weight, self.conv.bias)


class UNet(nn.Module):
    """U-Net built and run with getattr over the stage names."""

    def __init__(self, n_class, in_channels=3):
        super().__init__()
        self.inc = DoubleConv(in_channels, 64)
        widths = [64, 128, 256, 512, 1024]
        for i in range(1, 5):
            setattr(self, f"down{i}", Down(widths[i - 1], widths[i]))
        for i in range(1, 5):
            setattr(self, f"up{i}", Up(widths[5 - i]))
        self.outc = OutConv(64, n_class)

    def forward(self, x):
        features = [self.inc(x)]
        for i in range(1, 5):
            features.append(getattr(self, f"down{i}")(features[-1]))
        h = features.pop()
        for i in range(1, 5):
            h = getattr(self, f"up{i}")(h, features.pop())
        return self.outc(h)
'''

UNET_ZERO_CANVAS = '''
class DoubleConv(nn.Module):
    """Two conv-BN-ReLU, applied with functional ReLU in forward."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.double_conv = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
        )

    def forward(self, x):
        conv1, bn1, _, conv2, bn2, _ = self.double_conv
        return F.relu(bn2(conv2(F.relu(bn1(conv1(x))))))


class Down(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.maxpool_conv = nn.Sequential()
        self.maxpool_conv.append(nn.MaxPool2d(2))
        self.maxpool_conv.append(DoubleConv(in_channels, out_channels))

    def forward(self, x):
        return self.maxpool_conv(x)


class Up(nn.Module):
    def __init__(self, in_channels):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, 2, 2)
        self.conv = DoubleConv(in_channels, in_channels // 2)

    def forward(self, x, skip):
        """Zero padding as a zero canvas of the skip's size with the upsampled map placed in it."""
        up = self.up(x)
        h, w = up.shape[-2:]
        top = (skip.shape[-2] - h) // 2
        left = (skip.shape[-1] - w) // 2
        canvas = up.new_zeros(up.shape[0], up.shape[1], skip.shape[-2], skip.shape[-1])
        canvas[:, :, top:top + h, left:left + w] = up
        return self.conv(torch.cat([skip, canvas], dim=1))


class OutConv(nn.Module):
    def __init__(self, in_channels, n_class):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, n_class, kernel_size=1, bias=True)

    def forward(self, x):
        return self.conv(x)


class UNet(nn.Module):
    def __init__(self, n_class, in_channels=3):
        super().__init__()
        self.inc = DoubleConv(in_channels, 64)
        self.down1, self.down2 = Down(64, 128), Down(128, 256)
        self.down3, self.down4 = Down(256, 512), Down(512, 1024)
        self.up1, self.up2, self.up3, self.up4 = Up(1024), Up(512), Up(256), Up(128)
        self.outc = OutConv(64, n_class)

    def forward(self, x):
        skips = []
        h = self.inc(x)
        for down in (self.down1, self.down2, self.down3, self.down4):
            skips.append(h)
            h = down(h)
        for up, skip in zip((self.up1, self.up2, self.up3, self.up4), reversed(skips)):
            h = up(h, skip)
        return self.outc(h)
'''

RESNET_INTERPOLATE = '''
class ResNetUNet(nn.Module):
    """Bilinear upsampling, [upsampled, skip] order, one conv-BN-ReLU per stage, a Sequential stem."""

    def __init__(self, n_class, weights=None):
        super().__init__()
        self.encoder = torchvision.models.resnet18(weights=weights)

        def cbr(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU())

        # (channels from below, skip channels, channels out) for 1/16, 1/8, 1/4, 1/2
        plan = [(512, 256, 192), (192, 128, 96), (96, 64, 64), (64, 64, 48)]
        self.fuse = nn.ModuleList([cbr(cin + skip, cout) for cin, skip, cout in plan])
        self.last = cbr(48, 24)
        self.classifier = nn.Conv2d(24, n_class, 1)

    def forward(self, x):
        enc = self.encoder
        stem = nn.Sequential(enc.conv1, enc.bn1, enc.relu)(x)
        feats = [stem]
        h = enc.maxpool(stem)
        for layer in (enc.layer1, enc.layer2, enc.layer3, enc.layer4):
            h = layer(h)
            feats.append(h)
        h = feats.pop()  # layer4
        for fuse in self.fuse:
            skip = feats.pop()
            h = F.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            h = fuse(torch.cat([h, skip], dim=1))
        h = F.interpolate(h, scale_factor=2, mode="nearest")
        return self.classifier(self.last(h))
'''

RESNET_LATERAL = '''
class ResNetUNet(nn.Module):
    """Transposed convolutions, 1x1 lateral projections of the skips added before a conv pair."""

    def __init__(self, n_class, weights=None):
        super().__init__()
        self.encoder = torchvision.models.resnet18(weights=weights)
        self.ups = nn.ModuleList()
        self.laterals = nn.ModuleList()
        self.convs = nn.ModuleList()
        for cin, skip, cout in ((512, 256, 128), (128, 128, 64), (64, 64, 64), (64, 64, 32), (32, 0, 16)):
            self.ups.append(nn.ConvTranspose2d(cin, cout, 2, stride=2))
            self.laterals.append(nn.Conv2d(skip, cout, 1) if skip else nn.Identity())
            self.convs.append(nn.Sequential(
                nn.Conv2d(2 * cout if skip else cout, cout, 3, padding=1), nn.ReLU(inplace=True),
                nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU(inplace=True)))
        self.score = nn.Conv2d(16, n_class, kernel_size=1)

    def forward(self, x):
        r = self.encoder
        stem = r.relu(r.bn1(r.conv1(x)))
        l1 = r.layer1(r.maxpool(stem))
        l2 = r.layer2(l1)
        l3 = r.layer3(l2)
        h = r.layer4(l3)
        for up, lateral, conv, skip in zip(self.ups, self.laterals, self.convs, (l3, l2, l1, stem, None)):
            h = up(h)
            if skip is not None:
                h = torch.cat([lateral(skip), h], 1)
            h = conv(h)
        return self.score(h)
'''

TRAIN_EPOCH_ITERATOR = '''
def unet_train_epoch(model, loader, optimizer, loss_fn, device):
    """A while loop over an iterator, model.zero_grad, a detached tensor running total."""
    model.train(True)
    batches = iter(loader)
    running = torch.zeros((), dtype=torch.float64)
    count = 0
    while True:
        try:
            inputs, labels = next(batches)
        except StopIteration:
            break
        inputs = inputs.to(device=device)
        labels = labels.to(device=device)
        model.zero_grad(set_to_none=False)
        batch_loss = loss_fn(model(inputs), labels)
        batch_loss.backward()
        optimizer.step()
        running += batch_loss.detach().double().cpu() * len(inputs)
        count += len(inputs)
    return float(running / count)
'''

TRAIN_EPOCH_LISTS = '''
def unet_train_epoch(model, loader, optimizer, loss_fn, device):
    """Per-batch losses and sizes kept in lists, the weighted mean taken with NumPy at the end."""
    for module in model.modules():
        module.training = True
    values, sizes = [], []
    for batch in loader:
        images, targets = (t.to(device) for t in batch)
        optimizer.zero_grad(set_to_none=True)
        logits = model(images)
        loss = loss_fn(logits, targets)
        loss.backward()
        optimizer.step()
        values.append(loss.item())
        sizes.append(int(targets.shape[0]))
    return float(np.average(np.array(values), weights=np.array(sizes)))
'''

ALTERNATIVES = {
    "unet_augment": [AUGMENT_SLICING, AUGMENT_NUMPY_INDEX],
    "unet_prior": [PRIOR_LOOPS, PRIOR_SCATTER],
    "unet_confusion": [CONFUSION_SCATTER, CONFUSION_ONE_HOT],
    "unet_iou": [IOU_MASKED, IOU_PYTHON],
    "unet_weights": [WEIGHTS_LOOPS, WEIGHTS_NUMPY],
    "unet_wce": [WCE_SELECT_FIRST, WCE_LOGSUMEXP],
    "unet_model": [UNET_LOOPS, UNET_ZERO_CANVAS],
    "unet_resnet": [RESNET_INTERPOLATE, RESNET_LATERAL],
    "unet_train_epoch": [TRAIN_EPOCH_ITERATOR, TRAIN_EPOCH_LISTS],
}
