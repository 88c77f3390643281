"""Two independent correct implementations of every CAM unit (see segkit/proof/alternatives.py)."""

FORWARD_MANUAL = '''
def forward_with_features(net, x):
    """The ResNet's forward pass written out layer by layer."""
    h = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    h = net.layer3(net.layer2(net.layer1(h)))
    features = net.layer4(h)
    logits = net.fc(torch.flatten(net.avgpool(features), 1))
    return logits, features
'''

FORWARD_SEQUENTIAL = '''
def forward_with_features(net, x):
    """The trunk as a Sequential of the ResNet's children; global average pooling as a mean."""
    trunk = torch.nn.Sequential(*list(net.children())[:-2])
    features = trunk(x)
    logits = net.fc(features.mean(dim=(2, 3)))
    return logits, features
'''

TOP1_NUMPY = '''
def get_cls_pred(logits):
    """NumPy softmax in float64 (shifted by the maximum)."""
    values = logits.detach().cpu().double().numpy().reshape(-1)
    exponentials = np.exp(values - values.max())
    probabilities = exponentials / exponentials.sum()
    idx = int(np.argmax(probabilities))
    return idx, float(probabilities[idx])
'''

TOP1_ARGMAX = '''
def get_cls_pred(logits):
    """argmax of the logits (softmax is monotonic), probability from a float64 softmax."""
    row = logits[0]
    idx = int(torch.argmax(row))
    prob = torch.softmax(row.double(), dim=0)[idx].item()
    return idx, prob
'''

CAM_EINSUM = '''
def return_cam(feature_conv, weight_fc, idx, size=(256, 256)):
    """einsum over channels; (cam - min) / (max - min) scaled and truncated."""
    cam = np.einsum("c,chw->hw", weight_fc[idx], feature_conv[0])
    low, high = cam.min(), cam.max()
    if high - low > 0:
        scaled = ((cam - low) / (high - low) * 255).astype(np.uint8)
    else:
        scaled = np.zeros(cam.shape, dtype=np.uint8)
    return cv2.resize(scaled, (size[1], size[0]))
'''

CAM_TORCH = '''
def return_cam(feature_conv, weight_fc, idx, size=(256, 256)):
    """torch in float64, rounded instead of truncated, explicit bilinear interpolation."""
    features = torch.from_numpy(np.ascontiguousarray(feature_conv)).double()[0]
    weights = torch.from_numpy(np.ascontiguousarray(weight_fc)).double()[idx]
    cam = (weights[:, None, None] * features).sum(dim=0)
    cam = cam - cam.min()
    peak = float(cam.max())
    if peak == 0:
        image = np.zeros(tuple(cam.shape), dtype=np.uint8)
    else:
        image = (cam / peak * 255).round().to(torch.uint8).numpy()
    height, width = size
    return cv2.resize(image, dsize=(width, height), interpolation=cv2.INTER_LINEAR)
'''

OVERLAY_ADDWEIGHTED = '''
def overlay_cam(image_bgr, cam, alpha=0.3, beta=0.5):
    """cv2.addWeighted (saturating, rounding)."""
    height, width = image_bgr.shape[:2]
    heatmap = cv2.applyColorMap(cv2.resize(cam, (width, height)), cv2.COLORMAP_JET)
    return cv2.addWeighted(heatmap, alpha, image_bgr, beta, 0)
'''

OVERLAY_TORCH = '''
def overlay_cam(image_bgr, cam, alpha=0.3, beta=0.5):
    """Blend in float64 torch, clamp, round."""
    resized = cv2.resize(cam, dsize=(image_bgr.shape[1], image_bgr.shape[0]), interpolation=cv2.INTER_LINEAR)
    heatmap = torch.from_numpy(cv2.applyColorMap(resized, cv2.COLORMAP_JET)).double()
    image = torch.from_numpy(np.ascontiguousarray(image_bgr)).double()
    return (alpha * heatmap + beta * image).clamp(0, 255).round().to(torch.uint8).numpy()
'''

FEATURES_AVGPOOL_HOOK = '''
def cam_features(net, loader):
    """net(x) with a forward hook on avgpool; modes restored module by module with train(mode)."""
    previous = [module.training for module in net.modules()]
    net.train(False)
    device = next(iter(net.parameters())).device
    pooled, targets = [], []
    handle = net.avgpool.register_forward_hook(lambda module, inputs, output: pooled.append(torch.flatten(output, 1)))
    try:
        with torch.set_grad_enabled(False):
            for images, labels in loader:
                net(images.to(device))
                targets.append(labels.to("cpu", torch.int64))
    finally:
        handle.remove()
        for module, mode in zip(net.modules(), previous):
            module.train(mode)  # parents first, so each child ends with its own mode
    return torch.cat([p.cpu() for p in pooled]).to(torch.float32), torch.cat(targets)
'''

FEATURES_MANUAL = '''
def cam_features(net, loader):
    """The trunk up to avgpool as a Sequential of the ResNet's children; NumPy concatenation at the end."""
    state = {name: module.training for name, module in net.named_modules()}
    net.eval()
    trunk = torch.nn.Sequential(*list(net.children())[:-1])  # conv1 ... avgpool
    device = next(net.parameters()).device
    chunks, label_chunks = [], []
    with torch.no_grad():
        for batch in loader:
            images, labels = batch[0], batch[1]
            chunks.append(trunk(images.to(device)).flatten(start_dim=1).cpu().numpy())
            label_chunks.append(np.asarray(labels).astype(np.int64))
    for name, module in net.named_modules():
        module.training = state[name]
    return torch.from_numpy(np.concatenate(chunks).astype(np.float32)), torch.from_numpy(np.concatenate(label_chunks))
'''

ALTERNATIVES = {
    "cam_forward": [FORWARD_MANUAL, FORWARD_SEQUENTIAL],
    "cam_top1": [TOP1_NUMPY, TOP1_ARGMAX],
    "cam_compute": [CAM_EINSUM, CAM_TORCH],
    "cam_overlay": [OVERLAY_ADDWEIGHTED, OVERLAY_TORCH],
    "cam_features": [FEATURES_AVGPOOL_HOOK, FEATURES_MANUAL],
}
