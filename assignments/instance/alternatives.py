"""Two independent correct implementations of every instance segmentation unit (see segkit/proof/alternatives.py)."""

TARGETS_NUMPY = '''
def instance_targets(objects, label_mask, classes):
    """NumPy: rectangle edges with np.round (half to even, like round), boxes from np.nonzero."""
    labels_np = label_mask.cpu().numpy()
    height, width = labels_np.shape
    label_of = {int(c): k + 1 for k, c in enumerate(classes)}
    boxes, labels, masks = [], [], []
    for item in objects:
        cls = int(item["label"])
        if cls not in label_of:
            continue
        x1, y1, x2, y2 = (float(v) for v in item["box"])
        c0, c1 = np.clip(np.round(np.array([x1, x2]) * width), 0, width).astype(int)
        r0, r1 = np.clip(np.round(np.array([y1, y2]) * height), 0, height).astype(int)
        mask = np.zeros((height, width), dtype=np.uint8)
        mask[r0:r1, c0:c1] = labels_np[r0:r1, c0:c1] == cls
        ys, xs = np.nonzero(mask)
        if ys.size == 0:
            continue
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        labels.append(label_of[cls])
        masks.append(mask)
    return {
        "boxes": torch.from_numpy(np.array(boxes, dtype=np.float32).reshape(-1, 4)),
        "labels": torch.from_numpy(np.array(labels, dtype=np.int64)),
        "masks": torch.from_numpy(np.stack(masks)) if masks else torch.zeros((0, height, width), dtype=torch.uint8),
    }
'''

TARGETS_TORCHVISION = '''
import torchvision


def instance_targets(objects, label_mask, classes):
    """Rectangles as coordinate comparisons on a grid, boxes with torchvision.ops.masks_to_boxes (+1)."""
    height, width = label_mask.shape
    rows = torch.arange(height)[:, None]
    cols = torch.arange(width)[None, :]
    kept = []
    for item in objects:
        if item["label"] not in list(classes):
            continue
        x1, y1, x2, y2 = item["box"]
        inside = (rows >= round(y1 * height)) & (rows < round(y2 * height))
        inside = inside & (cols >= round(x1 * width)) & (cols < round(x2 * width))
        mask = inside & (label_mask == item["label"])
        if bool(mask.any()):
            kept.append((list(classes).index(item["label"]) + 1, mask))
    if not kept:
        return {"boxes": torch.empty(0, 4), "labels": torch.empty(0, dtype=torch.long),
                "masks": torch.empty(0, height, width, dtype=torch.uint8)}
    masks = torch.stack([mask for _, mask in kept])
    boxes = torchvision.ops.masks_to_boxes(masks) + torch.tensor([0.0, 0.0, 1.0, 1.0])
    return {"boxes": boxes.float(), "labels": torch.tensor([label for label, _ in kept]), "masks": masks.byte()}
'''

COMPONENTS_OPENCV = '''
import cv2


def split_instances(class_mask, min_area=1):
    """OpenCV with connectivity=4; order by (-area, first pixel in row-major order), made explicit."""
    image = class_mask.cpu().numpy().astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(image, connectivity=4)
    flat = labels.reshape(-1)
    first = np.full(n, flat.size)
    np.minimum.at(first, flat, np.arange(flat.size))
    keep = [k for k in range(1, n) if stats[k, cv2.CC_STAT_AREA] >= min_area]
    keep.sort(key=lambda k: (-stats[k, cv2.CC_STAT_AREA], first[k]))
    if not keep:
        return torch.zeros((0, *image.shape), dtype=torch.bool)
    return torch.from_numpy(np.stack([labels == k for k in keep]))
'''

COMPONENTS_FLOOD = '''
def split_instances(class_mask, min_area=1):
    """A breadth-first flood fill from every unvisited pixel in row-major order (plain Python)."""
    from collections import deque

    grid = class_mask.bool().tolist()
    height, width = len(grid), len(grid[0]) if grid else 0
    seen = [[False] * width for _ in range(height)]
    found = []
    for y in range(height):
        for x in range(width):
            if not grid[y][x] or seen[y][x]:
                continue
            pixels, queue = [], deque([(y, x)])
            seen[y][x] = True
            while queue:
                r, c = queue.popleft()
                pixels.append((r, c))
                for nr, nc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
                    if 0 <= nr < height and 0 <= nc < width and grid[nr][nc] and not seen[nr][nc]:
                        seen[nr][nc] = True
                        queue.append((nr, nc))
            if len(pixels) >= min_area:
                found.append(pixels)
    found.sort(key=len, reverse=True)  # sorted() is stable: equal areas keep the row-major order
    masks = torch.zeros(len(found), height, width, dtype=torch.bool)
    for k, pixels in enumerate(found):
        rows, cols = zip(*pixels)
        masks[k, list(rows), list(cols)] = True
    return masks
'''

WATERSHED_WINDOWS = '''
from scipy import ndimage
from skimage.segmentation import watershed


def watershed_instances(class_mask, min_distance=3):
    """Peaks from sliding windows (NumPy), 8-connected flooding, markers relabelled per component."""
    mask = class_mask.cpu().numpy() > 0
    if mask.sum() == 0:
        return torch.zeros((0, *mask.shape), dtype=torch.bool)
    distance = ndimage.distance_transform_edt(mask)
    k = int(min_distance)
    padded = np.pad(distance, k, constant_values=0.0)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (2 * k + 1, 2 * k + 1))
    peaks = mask & (distance >= windows.max(axis=(-1, -2)))
    groups, _ = ndimage.label(peaks, structure=np.ones((3, 3), dtype=int))
    components, n_components = ndimage.label(mask)
    markers = np.zeros(mask.shape, dtype=np.int64)
    next_id = 1
    for component in range(1, n_components + 1):
        inside = components == component
        ids = np.unique(groups[inside & peaks])
        if ids.size == 0:
            markers[inside] = next_id
            next_id += 1
        for group in ids:
            markers[inside & (groups == group)] = next_id
            next_id += 1
    regions = watershed(-distance, markers, mask=mask, connectivity=2)
    return torch.stack([torch.from_numpy(regions == r) for r in range(1, next_id) if (regions == r).any()])
'''

WATERSHED_OPENCV = '''
import heapq

import cv2
from scipy import ndimage


def watershed_instances(class_mask, min_distance=3):
    """OpenCV for the peaks (dilation as the maximum filter) and components; a hand-written priority flood
    (Meyer's algorithm, heapq) instead of a library watershed: a pixel joins the region that reaches it first
    from higher ground, so every region is one connected piece."""
    mask = class_mask.cpu().numpy().astype(bool)
    height, width = mask.shape
    if not mask.any():
        return torch.zeros((0, height, width), dtype=torch.bool)
    distance = ndimage.distance_transform_edt(mask).astype(np.float32)
    size = 2 * int(min_distance) + 1
    local_max = cv2.dilate(distance, np.ones((size, size), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    peaks = mask & (distance >= local_max)
    n_markers, markers = cv2.connectedComponents(peaks.astype(np.uint8), connectivity=8)
    n_components, components = cv2.connectedComponents(mask.astype(np.uint8), connectivity=4)
    markers = markers.astype(np.int64)
    for component in range(1, n_components):
        inside = components == component
        if not peaks[inside].any():  # no peak of its own: the whole component is one instance
            markers[inside] = n_markers
            n_markers += 1
    heap, order = [], 0

    def push_neighbours(row, col):
        nonlocal order
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                r, c = row + dr, col + dc
                if 0 <= r < height and 0 <= c < width and mask[r, c] and markers[r, c] == 0:
                    heapq.heappush(heap, (-float(distance[r, c]), order, r, c, int(markers[row, col])))
                    order += 1

    for row, col in zip(*np.nonzero(markers)):
        push_neighbours(row, col)
    while heap:
        _, _, row, col, label = heapq.heappop(heap)
        if markers[row, col] == 0:
            markers[row, col] = label
            push_neighbours(row, col)
    ids = [k for k in np.unique(markers[mask]) if k > 0]
    return torch.from_numpy(np.stack([markers == k for k in ids]))
'''

IOU_LOOPS = '''
def mask_iou(a, b):
    """A double loop over the pairs, with logical and/or."""
    a, b = a.bool(), b.bool()
    iou = torch.zeros(a.shape[0], b.shape[0])
    for i in range(a.shape[0]):
        for j in range(b.shape[0]):
            union = int((a[i] | b[j]).sum())
            if union:
                iou[i, j] = int((a[i] & b[j]).sum()) / union
    return iou
'''

IOU_EINSUM = '''
def mask_iou(a, b):
    """NumPy einsum over flattened masks, float64."""
    x = a.cpu().numpy().reshape(a.shape[0], -1).astype(np.float64) if a.shape[0] else np.zeros((0, 1))
    y = b.cpu().numpy().reshape(b.shape[0], -1).astype(np.float64) if b.shape[0] else np.zeros((0, 1))
    if x.shape[0] == 0 or y.shape[0] == 0:
        return torch.zeros(a.shape[0], b.shape[0], dtype=torch.float64)
    inter = np.einsum("np,mp->nm", x, y)
    union = x.sum(1)[:, None] + y.sum(1)[None, :] - inter
    return torch.from_numpy(np.divide(inter, union, out=np.zeros_like(inter), where=union > 0))
'''

MATCH_NUMPY = '''
def match_instances(pred_masks, scores, gt_masks, iou_threshold=0.5):
    """NumPy, its own IoU; stable argsort of the negated scores."""
    n, m = pred_masks.shape[0], gt_masks.shape[0]
    result = -np.ones(n, dtype=np.int64)
    if n and m:
        p = pred_masks.cpu().numpy().reshape(n, -1).astype(np.int64)
        g = gt_masks.cpu().numpy().reshape(m, -1).astype(np.int64)
        inter = p @ g.T
        union = p.sum(1)[:, None] + g.sum(1)[None, :] - inter
        iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
        free = np.ones(m, dtype=bool)
        for i in np.argsort(-scores.cpu().numpy(), kind="stable"):
            allowed = free & (iou[i] >= iou_threshold)
            if allowed.any():
                j = int(np.argmax(np.where(allowed, iou[i], -1.0)))
                result[i] = j
                free[j] = False
    return torch.from_numpy(result)
'''

MATCH_LOOPS = '''
def match_instances(pred_masks, scores, gt_masks, iou_threshold=0.5):
    """Plain loops over your mask_iou's table; Python's sorted() is stable."""
    matched = [-1] * pred_masks.shape[0]
    if pred_masks.shape[0] and gt_masks.shape[0]:
        iou = mask_iou(pred_masks, gt_masks).tolist()
        used = set()
        for i in sorted(range(len(matched)), key=lambda k: -float(scores[k])):
            best, best_iou = -1, None
            for j, value in enumerate(iou[i]):
                if j not in used and value >= iou_threshold and (best_iou is None or value > best_iou):
                    best, best_iou = j, value
            if best >= 0:
                matched[i] = best
                used.add(best)
    return torch.tensor(matched, dtype=torch.int64)
'''

AP_VOC = '''
def average_precision(tp, scores, n_gt):
    """PASCAL VOC's devkit code (voc_ap with use_07_metric=False), in NumPy."""
    if n_gt <= 0 or len(tp) == 0:
        return 0.0
    order = np.argsort(-scores.cpu().numpy(), kind="stable")
    hits = tp.cpu().numpy()[order].astype(np.float64)
    true_pos, false_pos = np.cumsum(hits), np.cumsum(1 - hits)
    rec = true_pos / n_gt
    prec = true_pos / np.maximum(true_pos + false_pos, np.finfo(np.float64).eps)
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))
'''

AP_LOOP = '''
def average_precision(tp, scores, n_gt):
    """Plain Python: precision after every prediction, the envelope from the right, recall steps summed."""
    if not n_gt or tp.numel() == 0:
        return 0.0
    ranked = [hit for _, _, hit in sorted(zip((-float(s) for s in scores), range(len(scores)), tp.tolist()))]
    precisions, hits = [], 0
    for k, hit in enumerate(ranked, start=1):
        hits += bool(hit)
        precisions.append(hits / k)
    best, total = 0.0, 0.0
    for precision, hit in zip(reversed(precisions), reversed(ranked)):
        best = max(best, precision)
        if hit:
            total += best / n_gt
    return total
'''

ENERGY_OPENCV = '''
import cv2


def energy_targets(instance_ids, n_levels, step=1.0):
    """OpenCV's exact Euclidean distance transform of each instance, on the whole padded image."""
    ids = instance_ids.cpu().numpy()
    levels = np.zeros(ids.shape, dtype=np.int64)
    for k in np.unique(ids):
        if k == 0:
            continue
        padded = np.pad((ids == k).astype(np.uint8), 1)
        distance = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
        level = np.minimum(np.floor(distance.astype(np.float64) / step), n_levels - 1).astype(np.int64)
        levels[ids == k] = level[ids == k]
    return torch.from_numpy(levels)
'''

ENERGY_BRUTE = '''
def energy_targets(instance_ids, n_levels, step=1.0):
    """Brute force: every instance pixel against every pixel outside it and a ring of points beyond the edge."""
    height, width = instance_ids.shape
    rows, cols = torch.meshgrid(torch.arange(-1, height + 1), torch.arange(-1, width + 1), indexing="ij")
    padded = torch.zeros(height + 2, width + 2, dtype=torch.int64)
    padded[1:-1, 1:-1] = instance_ids
    levels = torch.zeros(height, width, dtype=torch.int64)
    for k in instance_ids.unique().tolist():
        if k == 0:
            continue
        inside = torch.stack([rows[padded == k], cols[padded == k]], 1).double()
        outside = torch.stack([rows[padded != k], cols[padded != k]], 1).double()
        distance = torch.cdist(inside, outside, compute_mode="donot_use_mm_for_euclid_dist").min(1).values
        level = torch.clamp(torch.floor(distance / step + 1e-9), max=n_levels - 1).long()
        levels[instance_ids == k] = level
    return levels
'''

LOSS_MANUAL = '''
def watershed_energy_loss(logits, levels, object_mask, weights=None):
    """log_softmax and gather by hand; the weights of the pixels' targets, normalised by their sum."""
    n_levels = logits.shape[1]
    log_p = torch.log_softmax(logits, dim=1)
    safe = torch.where(object_mask, levels, torch.zeros_like(levels)).long()
    nll = -log_p.gather(1, safe[:, None]).squeeze(1)  # (B, H, W)
    if not bool(object_mask.any()):
        return (log_p * 0).sum()
    if weights is None:
        counts = torch.stack([((safe == k) & object_mask).sum() for k in range(n_levels)]).double()
        weights = torch.where(counts > 0, 1 / counts.clamp(min=1), torch.zeros_like(counts))
    w = weights.to(logits.dtype)[safe] * object_mask
    return (w * nll).sum() / w.sum()
'''

LOSS_PER_LEVEL = '''
def watershed_energy_loss(logits, levels, object_mask, weights=None):
    """One level at a time: sum over levels of w_k * (sum of the level's losses) / sum_k w_k * n_k."""
    n_levels = logits.shape[1]
    pixels = logits.movedim(1, -1)[object_mask]  # (N, K)
    target = levels[object_mask]
    numerator = logits.sum() * 0
    denominator = 0.0
    for k in range(n_levels):
        at_k = target == k
        n_k = int(at_k.sum())
        if n_k == 0:
            continue
        w_k = 1.0 / n_k if weights is None else float(weights[k])
        losses = torch.logsumexp(pixels[at_k], dim=1) - pixels[at_k][:, k]
        numerator = numerator + w_k * losses.sum()
        denominator += w_k * n_k
    if denominator == 0:
        return numerator
    return numerator / denominator
'''

INSTANCES_BFS = '''
from collections import deque


def energy_instances(levels, object_mask, cut_level):
    """Seeds by a flood fill, then one breadth-first growth from all seeds at once (plain Python)."""
    mask = object_mask.cpu().numpy().astype(bool)
    energy = levels.cpu().numpy()
    height, width = mask.shape
    labels = np.zeros((height, width), dtype=np.int64)
    steps = ((1, 0), (-1, 0), (0, 1), (0, -1))
    n = 0
    for r in range(height):
        for c in range(width):
            if mask[r, c] and energy[r, c] >= cut_level and labels[r, c] == 0:
                n += 1
                labels[r, c] = n
                queue = deque([(r, c)])
                while queue:
                    y, x = queue.popleft()
                    for dy, dx in steps:
                        v, u = y + dy, x + dx
                        if 0 <= v < height and 0 <= u < width and labels[v, u] == 0 and mask[v, u] \\
                                and energy[v, u] >= cut_level:
                            labels[v, u] = n
                            queue.append((v, u))
    queue = deque(zip(*np.nonzero(labels)))
    while queue:
        y, x = queue.popleft()
        for dy, dx in steps:
            v, u = y + dy, x + dx
            if 0 <= v < height and 0 <= u < width and labels[v, u] == 0 and mask[v, u]:
                labels[v, u] = labels[y, x]
                queue.append((v, u))
    return torch.from_numpy(np.stack([labels == k for k in range(1, n + 1)])) if n else \\
        torch.zeros(0, height, width, dtype=torch.bool)
'''

INSTANCES_LEVELS = '''
from scipy import ndimage


def energy_instances(levels, object_mask, cut_level):
    """Flooding level by level from the top: the seeds grow into the next level down until nothing changes."""
    mask = object_mask.cpu().numpy().astype(bool)
    energy = levels.cpu().numpy()
    labels, n = ndimage.label(mask & (energy >= cut_level))
    cross = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)
    for level in range(int(energy.max()) if mask.any() else 0, int(energy.min()) - 1, -1):
        allowed = mask & (energy >= level)
        while True:
            grown = ndimage.grey_dilation(labels, footprint=cross, mode="constant", cval=0)
            new = allowed & (labels == 0) & (grown > 0)
            if not new.any():
                break
            labels[new] = grown[new]
    return torch.from_numpy(labels[None] == np.arange(1, n + 1)[:, None, None])
'''

ALTERNATIVES = {
    "inst_targets": [TARGETS_NUMPY, TARGETS_TORCHVISION],
    "inst_components": [COMPONENTS_OPENCV, COMPONENTS_FLOOD],
    "inst_watershed": [WATERSHED_WINDOWS, WATERSHED_OPENCV],
    "inst_mask_iou": [IOU_LOOPS, IOU_EINSUM],
    "inst_match": [MATCH_NUMPY, MATCH_LOOPS],
    "inst_ap": [AP_VOC, AP_LOOP],
    "dwt_energy": [ENERGY_OPENCV, ENERGY_BRUTE],
    "dwt_loss": [LOSS_MANUAL, LOSS_PER_LEVEL],
    "dwt_instances": [INSTANCES_BFS, INSTANCES_LEVELS],
}
