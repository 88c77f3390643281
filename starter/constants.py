"""The one home for the kit's constants: ignore index, normalisation, class names, palettes.

Every notebook, starter helper, data script and grader check imports from here, so a
class list or a mean/std can never disagree between two places.
"""

from __future__ import annotations

# Label value that losses and metrics skip (PyTorch's cross-entropy convention).
IGNORE_INDEX = 255

# ImageNet statistics used by every torchvision classification backbone.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Environment variables every notebook honours.
ENV_FAST = "SEGKIT_FAST"  # "1": synthetic/tiny data, small images, one epoch (CI, quick try-outs)
ENV_DATA = "SEGKIT_DATA"  # root folder of prepared datasets (default: ~/segkit-data)
ENV_DATASET = "SEGKIT_DATASET"  # run a notebook on another prepared dataset, e.g. "cmp_facade"
ENV_PROFILE = "SEGKIT_PROFILE"  # "fast", "cpu" or "full": sizes/epochs/experiments (see starter.common.profile)
ENV_RUNS = "SEGKIT_RUNS"  # root folder of saved experiment runs; each assignment gets <root>/<assignment>

# Run profiles, smallest first. fast: tiny synthetic data (CI); cpu: the real data at reduced size and
# epochs (a notebook in ~20 min on 2 CPU cores); full: the course setting on a GPU.
PROFILES = ("fast", "cpu", "full")
DEFAULT_PROFILE = "full"  # nothing set: the course setting

# starter.train.overfit_one_batch: a healthy model at least halves one batch's loss within the default
# steps; the bugs it looks for (frozen weights, detached output, a far too small lr) leave it near 1.
OVERFIT_LOSS_RATIO = 0.5
OVERFIT_STEPS = 50
OVERFIT_LR = 1e-3  # Adam; safe for pretrained backbones, where 1e-2 can diverge

# --- CMP Facade (Tyleček & Šára, GCPR 2013) -----------------------------------------
# The PNG masks store 1..12; the kit uses 0..11 (value - 1), in this order.
CMP_CLASSES = (
    "background",
    "facade",
    "window",
    "door",
    "cornice",
    "sill",
    "balcony",
    "blind",
    "deco",
    "molding",
    "pillar",
    "shop",
)
CMP_N_CLASS = len(CMP_CLASSES)
# Colours chosen to be distinguishable; background dark, facade blue like the dataset's own renderings.
CMP_PALETTE = (
    (0, 0, 0),
    (0, 0, 170),
    (0, 85, 255),
    (0, 170, 255),
    (85, 255, 170),
    (170, 255, 85),
    (255, 255, 0),
    (255, 170, 0),
    (255, 85, 0),
    (170, 0, 0),
    (255, 0, 0),
    (0, 170, 170),
)
# Split of base+extended sorted by file name: first 500 train, next 30 val, rest test.
CMP_SPLIT_SIZES = (500, 30)
# The base set alone (378 pairs) would be all train under that rule, so base-only data gets its own
# split, again by sorted name: first 288 train, next 30 val, last 60 test (cmp_b0319..cmp_b0378).
CMP_BASE_ONLY_SPLIT_SIZES = (288, 30)

# --- Stanford Background (Gould et al., ICCV 2009) ----------------------------------
# labels/*.regions.txt hold 0..7 and -1 (unknown); the kit maps -1 to class 8 "misc".
SBD_CLASSES = ("sky", "tree", "road", "grass", "water", "building", "mountain", "foreground", "misc")
SBD_N_CLASS = len(SBD_CLASSES)
SBD_PALETTE = (
    (128, 200, 255),
    (0, 128, 0),
    (128, 64, 128),
    (0, 255, 0),
    (0, 0, 255),
    (128, 0, 0),
    (128, 128, 0),
    (255, 128, 0),
    (64, 64, 64),
)
SBD_CROP = (224, 288)  # training crop (h, w)
SBD_SPLIT_FRACTIONS = (0.8, 0.1)  # train, val by sorted name; the rest is test (572 / 72 / 71 of 715)

# --- ISPRS Vaihingen 2D semantic labelling (5 classes used by the patches assignment) ---
VAIHINGEN_CLASSES = ("building", "tree", "low_vegetation", "car", "impervious_surface")
VAIHINGEN_N_CLASS = len(VAIHINGEN_CLASSES)
# RGB colour code of the official label images for each class above; (255, 0, 0) clutter -> ignore.
VAIHINGEN_PALETTE = ((0, 0, 255), (0, 255, 0), (0, 255, 255), (255, 255, 0), (255, 255, 255))
VAIHINGEN_CLUTTER_RGB = (255, 0, 0)
