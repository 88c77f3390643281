"""Written for calibration from the notebook's docstrings only: another obvious implementation of the
short unet units, with F.nll_loss and loops where a student might use them."""

import torch
import torch.nn.functional as F

IGNORE_INDEX = 255


def weighted_cross_entropy(logits, target, weight, ignore_index=IGNORE_INDEX):
    valid = target != ignore_index
    labels = target.clone()
    labels[~valid] = 0
    loss = F.nll_loss(F.log_softmax(logits, dim=1), labels, reduction="none")
    w = weight[labels] * valid.float()
    return (loss * w).sum() / w.sum()


def confusion_matrix(pred, target, n_class, ignore_index=IGNORE_INDEX):
    conf = torch.zeros(n_class, n_class, dtype=torch.int64)
    pred, target = pred.reshape(-1), target.reshape(-1)
    ok = (target >= 0) & (target < n_class) & (target != ignore_index)
    for t in range(n_class):
        for p in range(n_class):
            conf[t, p] = ((target[ok] == t) & (pred[ok] == p)).sum()
    return conf


def iou_per_class(conf):
    conf = conf.double()
    inter = conf.diagonal()
    union = conf.sum(dim=0) + conf.sum(dim=1) - inter
    iou = inter / union
    return iou.float()


def mean_iou(conf):
    return float(torch.nanmean(iou_per_class(conf)))


def class_weights(masks, n_class, ignore_index=IGNORE_INDEX):
    masks = masks.reshape(-1)
    valid = masks[(masks != ignore_index) & (masks < n_class) & (masks >= 0)]
    total = valid.numel()
    weights = []
    for c in range(n_class):
        count = (valid == c).sum().item()
        weights.append(total / count if count > 0 else 0.0)
    return torch.tensor(weights)
