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
ENV_FULL_TRACEBACK = "SEGKIT_FULL_TRACEBACK"  # "1": errors in a notebook show every frame (TAs, bugs in the kit)
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
# Instance segmentation: the CMP classes whose XML rectangles become instances (the facade is one big
# rectangle, and cornices, sills, pillars, ... are bands and trims rather than objects). Instance label
# k = 1 + position here (0 = background, as torchvision's detection models expect).
CMP_INSTANCE_CLASSES = ("window", "door", "balcony", "shop")
# The label masks' class index of each instance class: instance label k is class CMP_INSTANCE_CLASS_IDS[k - 1].
CMP_INSTANCE_CLASS_IDS = tuple(CMP_CLASSES.index(name) for name in CMP_INSTANCE_CLASSES)
CMP_WINDOW = CMP_CLASSES.index("window")  # the class the instance notebook splits into windows
# <dataset>/objects/<name>.xml: the official CMP object rectangles, copied by the data script and read
# by the instance notebook's dataset.
CMP_OBJECTS_DIR = "objects"

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

# --- DeepGlobe 2018 Land Cover (Demir et al., CVPR Workshops 2018): RGB colour-coded masks ---
LANDCOVER_CLASSES = ("urban_land", "agriculture_land", "rangeland", "forest_land", "water", "barren_land")
LANDCOVER_N_CLASS = len(LANDCOVER_CLASSES)
# Official colour of each class above (cyan, yellow, magenta, green, blue, white). Black (0, 0, 0) is
# "unknown" (clouds and others), which the challenge did not score: not in the palette, so it is ignored.
LANDCOVER_PALETTE = ((0, 255, 255), (255, 255, 0), (255, 0, 255), (0, 255, 0), (0, 0, 255), (255, 255, 255))
LANDCOVER_UNKNOWN_RGB = (0, 0, 0)
# Split of the 803 labelled images (the challenge's valid/test masks were never released) by sorted name.
LANDCOVER_SPLIT_FRACTIONS = (0.8, 0.1)  # train, val; the rest is test (642 / 80 / 81 of 803)

# --- KITTI semantic segmentation benchmark (Alhaija et al., IJCV 2018): Cityscapes label ids ---
# The 19 Cityscapes training classes, train id i = CITYSCAPES_TRAIN_CLASSES[i].
CITYSCAPES_TRAIN_CLASSES = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic_light",
    "traffic_sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)
CITYSCAPES_N_CLASS = len(CITYSCAPES_TRAIN_CLASSES)
# Cityscapes' own colours of the classes above.
CITYSCAPES_TRAIN_PALETTE = (
    (128, 64, 128),
    (244, 35, 232),
    (70, 70, 70),
    (102, 102, 156),
    (190, 153, 153),
    (153, 153, 153),
    (250, 170, 30),
    (220, 220, 0),
    (107, 142, 35),
    (152, 251, 152),
    (70, 130, 180),
    (220, 20, 60),
    (255, 0, 0),
    (0, 0, 142),
    (0, 0, 70),
    (0, 60, 100),
    (0, 80, 100),
    (0, 0, 230),
    (119, 11, 32),
)
# Cityscapes label id (index, 0..33) -> train id, as in cityscapesScripts' labels.py; 255 = void (not
# trained or scored): unlabeled, ego vehicle, rectification border, out of roi, static, dynamic, ground,
# parking, rail track, guard rail, bridge, tunnel, polegroup, caravan, trailer. Any id >= 34 (the
# licence plate's -1 wraps to 255 in a uint8 PNG) is void too.
CITYSCAPES_ID_TO_TRAIN_ID = (
    *(255,) * 7,  # 0-6: unlabeled, ego vehicle, rectification border, out of roi, static, dynamic, ground
    0,  # 7 road
    1,  # 8 sidewalk
    255,  # 9 parking
    255,  # 10 rail track
    2,  # 11 building
    3,  # 12 wall
    4,  # 13 fence
    255,  # 14 guard rail
    255,  # 15 bridge
    255,  # 16 tunnel
    5,  # 17 pole
    255,  # 18 polegroup
    6,  # 19 traffic light
    7,  # 20 traffic sign
    8,  # 21 vegetation
    9,  # 22 terrain
    10,  # 23 sky
    11,  # 24 person
    12,  # 25 rider
    13,  # 26 car
    14,  # 27 truck
    15,  # 28 bus
    255,  # 29 caravan
    255,  # 30 trailer
    16,  # 31 train
    17,  # 32 motorcycle
    18,  # 33 bicycle
)
# The 200 labelled KITTI training images by sorted name: first 160 train, next 20 val, last 20 test
# (000000_10 .. 000159_10 train, 000160_10 .. 000179_10 val, 000180_10 .. 000199_10 test).
KITTI_SPLIT_SIZES = (160, 20)
