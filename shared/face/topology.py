"""Face-mesh topology: triangles, ordered feature rings and the left-right symmetry of the 478 points.

Derived from MediaPipe's tessellation (which has holes at the eyes and mouth); the renderer
fills those holes itself so eyes and mouth can be drawn explicitly.
"""

from __future__ import annotations

from collections import defaultdict
from functools import cache
from types import ModuleType

import numpy as np
import numpy.typing as npt

IndexArray = npt.NDArray[np.int32]


@cache
def _connections() -> ModuleType:
    """MediaPipe's mesh connections, imported when first needed: importing mediapipe's solutions loads
    matplotlib and ~150 MB with it, which a process that only validates messages (a relay) never needs."""
    from mediapipe.python.solutions import face_mesh_connections

    return face_mesh_connections

MESH_SIZE = 478
RIGHT_IRIS_CENTER = 468  # the subject's right eye (image left in a non-mirrored camera)
LEFT_IRIS_CENTER = 473
RIGHT_IRIS = (469, 470, 471, 472)
LEFT_IRIS = (474, 475, 476, 477)
# Eye rings start at the outer corner and run along the upper lid first.
RIGHT_EYE_CORNERS = (33, 133)
LEFT_EYE_CORNERS = (263, 362)
MOUTH_CORNERS = (78, 308)  # inner-lip corners
UPPER_LIP_INNER_MID = 13
LOWER_LIP_INNER_MID = 14
FOREHEAD = 10
CHIN = 152
RIGHT_BROW = (70, 63, 105, 66, 107, 55, 65, 52, 53, 46)
NOSTRILS = (2, 98, 327, 97, 326)
NOSE_TIP = 1
NOSE_BRIDGE = 168  # between the eyes, on the bridge
MOUTH_OUTER_CORNERS = (61, 291)  # outer-lip corners: the mouth's width
# Outer lip contour from the subject's right corner along the lower lip and back along the upper.
MOUTH_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
# Upper and lower lid points facing each other, for the eye-opening measure.
RIGHT_LID_PAIRS = ((160, 144), (159, 145), (158, 153))
LEFT_LID_PAIRS = ((387, 373), (386, 374), (385, 380))
# The head-canonical frame's points (protocol.md 6.4): the forehead midline and the nose, which
# mouth and lids do not move.
FOREHEAD_MIDLINE = (8, 9, 10)
NOSE_POINTS = (1, 2, 4, 5)
# Nose bridge, forehead, temples, eye corners, cheekbones: rigid under expression.
RIGID = (6, 168, 197, 195, 5, 4, 10, 151, 9, 8, 127, 356, 234, 454, 33, 133, 263, 362, 116, 345,
         123, 352, 109, 338, 67, 297)  # fmt: skip
# Cheeks, nose, chin and forehead points where bare skin shows on most faces.
SKIN_SAMPLES = (50, 280, 117, 346, 205, 425, 4, 195, 199, 151, 9, 36, 266)
# The same below the brows only (where a fringe cannot cover them).
LOWER_SKIN_SAMPLES = (50, 280, 117, 346, 205, 425, 4, 195, 5, 6, 36, 266)
BROW_TOPS = (105, 66, 334, 296, 107, 336)
SUBNASALE = 2
EYE_CORNERS = RIGHT_EYE_CORNERS + LEFT_EYE_CORNERS

# Mirror partner of each landmark, measured on frontal faces (landmarks of an image and of its
# horizontal flip, matched by assignment); an involution, midline points map to themselves.
SYMMETRY: tuple[int, ...] = (
    0,
    1,
    2,
    248,
    4,
    5,
    6,
    249,
    8,
    9,
    10,
    11,
    12,
    13,
    14,
    15,
    16,
    17,
    18,
    19,
    250,
    251,
    252,
    253,
    254,
    255,
    256,
    257,
    258,
    259,
    260,
    261,
    262,
    263,
    264,
    265,
    266,
    267,
    268,
    269,
    270,
    271,
    272,
    273,
    274,
    275,
    276,
    277,
    278,
    279,
    280,
    281,
    282,
    283,
    284,
    285,
    286,
    287,
    288,
    289,
    290,
    291,
    292,
    293,
    294,
    295,
    296,
    297,
    298,
    299,
    300,
    301,
    302,
    303,
    304,
    305,
    306,
    307,
    308,
    309,
    310,
    311,
    312,
    313,
    314,
    315,
    316,
    317,
    318,
    319,
    320,
    321,
    322,
    323,
    94,
    324,
    325,
    326,
    327,
    328,
    329,
    330,
    331,
    332,
    333,
    334,
    335,
    336,
    337,
    338,
    339,
    340,
    341,
    342,
    343,
    344,
    345,
    346,
    347,
    348,
    349,
    350,
    351,
    352,
    353,
    354,
    355,
    356,
    357,
    358,
    359,
    360,
    361,
    362,
    363,
    364,
    365,
    366,
    367,
    368,
    369,
    370,
    371,
    372,
    373,
    374,
    375,
    376,
    377,
    378,
    379,
    151,
    152,
    380,
    381,
    382,
    383,
    384,
    385,
    386,
    387,
    388,
    389,
    390,
    164,
    391,
    392,
    393,
    168,
    394,
    395,
    396,
    397,
    398,
    399,
    175,
    400,
    401,
    402,
    403,
    404,
    405,
    406,
    407,
    408,
    409,
    410,
    411,
    412,
    413,
    414,
    415,
    416,
    417,
    418,
    195,
    419,
    197,
    420,
    199,
    200,
    421,
    422,
    423,
    424,
    425,
    426,
    427,
    428,
    429,
    430,
    431,
    432,
    433,
    434,
    435,
    436,
    437,
    438,
    439,
    440,
    441,
    442,
    443,
    444,
    445,
    446,
    447,
    448,
    449,
    450,
    451,
    452,
    453,
    454,
    455,
    456,
    457,
    458,
    459,
    460,
    461,
    462,
    463,
    464,
    465,
    466,
    467,
    3,
    7,
    20,
    21,
    22,
    23,
    24,
    25,
    26,
    27,
    28,
    29,
    30,
    31,
    32,
    33,
    34,
    35,
    36,
    37,
    38,
    39,
    40,
    41,
    42,
    43,
    44,
    45,
    46,
    47,
    48,
    49,
    50,
    51,
    52,
    53,
    54,
    55,
    56,
    57,
    58,
    59,
    60,
    61,
    62,
    63,
    64,
    65,
    66,
    67,
    68,
    69,
    70,
    71,
    72,
    73,
    74,
    75,
    76,
    77,
    78,
    79,
    80,
    81,
    82,
    83,
    84,
    85,
    86,
    87,
    88,
    89,
    90,
    91,
    92,
    93,
    95,
    96,
    97,
    98,
    99,
    100,
    101,
    102,
    103,
    104,
    105,
    106,
    107,
    108,
    109,
    110,
    111,
    112,
    113,
    114,
    115,
    116,
    117,
    118,
    119,
    120,
    121,
    122,
    123,
    124,
    125,
    126,
    127,
    128,
    129,
    130,
    131,
    132,
    133,
    134,
    135,
    136,
    137,
    138,
    139,
    140,
    141,
    142,
    143,
    144,
    145,
    146,
    147,
    148,
    149,
    150,
    153,
    154,
    155,
    156,
    157,
    158,
    159,
    160,
    161,
    162,
    163,
    165,
    166,
    167,
    169,
    170,
    171,
    172,
    173,
    174,
    176,
    177,
    178,
    179,
    180,
    181,
    182,
    183,
    184,
    185,
    186,
    187,
    188,
    189,
    190,
    191,
    192,
    193,
    194,
    196,
    198,
    201,
    202,
    203,
    204,
    205,
    206,
    207,
    208,
    209,
    210,
    211,
    212,
    213,
    214,
    215,
    216,
    217,
    218,
    219,
    220,
    221,
    222,
    223,
    224,
    225,
    226,
    227,
    228,
    229,
    230,
    231,
    232,
    233,
    234,
    235,
    236,
    237,
    238,
    239,
    240,
    241,
    242,
    243,
    244,
    245,
    246,
    247,
    473,
    476,
    475,
    474,
    477,
    468,
    471,
    470,
    469,
    472,
)


def _edges(connections: frozenset[tuple[int, int]]) -> set[tuple[int, int]]:
    return {(min(a, b), max(a, b)) for a, b in connections}


@cache
def face_triangles() -> IndexArray:
    """The 852 triangles of the 468-point tessellation (the 3-cliques that are real faces)."""
    edges = _edges(_connections().FACEMESH_TESSELATION)
    neighbours: dict[int, set[int]] = defaultdict(set)
    for a, b in edges:
        neighbours[a].add(b)
        neighbours[b].add(a)
    cliques = {tuple(sorted((a, b, c))) for a, b in edges for c in neighbours[a] & neighbours[b]}
    count: dict[tuple[int, int], int] = defaultdict(int)
    for a, b, c in cliques:
        for e in ((a, b), (a, c), (b, c)):
            count[e] += 1
    # A 3-cycle that is not a face has every edge shared with more than two triangles.
    faces = [t for t in cliques if not all(count[e] > 2 for e in ((t[0], t[1]), (t[0], t[2]), (t[1], t[2])))]
    return np.array(sorted(faces), np.int32)


def _ring(connections: frozenset[tuple[int, int]], start: int, towards: int | None = None) -> IndexArray:
    neighbours: dict[int, list[int]] = defaultdict(list)
    for a, b in _edges(connections):
        neighbours[a].append(b)
        neighbours[b].append(a)
    options = sorted(neighbours[start])
    ring = [start, towards if towards is not None else options[0]]
    while True:
        nxt = [n for n in neighbours[ring[-1]] if n != ring[-2]][0]
        if nxt == start:
            return np.array(ring, np.int32)
        ring.append(nxt)


def _upper_first(ring: IndexArray, upper_member: int) -> IndexArray:
    if upper_member in ring[: len(ring) // 2 + 1]:
        return ring
    return np.concatenate([ring[:1], ring[1:][::-1]])


@cache
def right_eye_ring() -> IndexArray:
    return _upper_first(_ring(_connections().FACEMESH_RIGHT_EYE, RIGHT_EYE_CORNERS[0]), 159)


@cache
def left_eye_ring() -> IndexArray:
    return _upper_first(_ring(_connections().FACEMESH_LEFT_EYE, LEFT_EYE_CORNERS[0]), 386)


@cache
def inner_lip_ring() -> IndexArray:
    lips = frozenset(e for e in _connections().FACEMESH_LIPS if _is_inner_lip(e))
    return _upper_first(_ring(lips, MOUTH_CORNERS[0]), UPPER_LIP_INNER_MID)


@cache
def outer_lip_ring() -> IndexArray:
    lips = frozenset(e for e in _connections().FACEMESH_LIPS if not _is_inner_lip(e))
    return _upper_first(_ring(lips, 61), 0)


_INNER_LIP = {78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95}


def _is_inner_lip(edge: tuple[int, int]) -> bool:
    return edge[0] in _INNER_LIP and edge[1] in _INNER_LIP


@cache
def face_oval_ring() -> IndexArray:
    return _ring(_connections().FACEMESH_FACE_OVAL, FOREHEAD, 338)


@cache
def symmetry() -> IndexArray:
    return np.array(SYMMETRY, np.int32)


@cache
def brows() -> tuple[IndexArray, IndexArray]:
    """The right brow's landmarks and their mirror partners (the left brow)."""
    right = np.array(RIGHT_BROW, np.int32)
    return right, symmetry()[right]


IRIS_POINTS = (RIGHT_IRIS_CENTER, *RIGHT_IRIS, LEFT_IRIS_CENTER, *LEFT_IRIS)  # 468..477: centre, then ring, per eye


def grown(points: frozenset[int] | set[int], rings: int) -> tuple[int, ...]:
    """`points` and `rings` rings of their neighbours in the tessellation, irises left out, sorted."""
    edges = _edges(_connections().FACEMESH_TESSELATION)
    out = set(points)
    for _ in range(rings):
        out |= {b for a, b in edges if a in out} | {a for a, b in edges if b in out}
    return tuple(sorted(out - set(IRIS_POINTS)))


def eye_contour_points(rings: int = 0) -> tuple[int, ...]:
    """Both eyes' lid contours (MediaPipe's FACEMESH_*_EYE), grown by `rings` rings."""
    return grown({i for edge in _connections().FACEMESH_LEFT_EYE | _connections().FACEMESH_RIGHT_EYE for i in edge}, rings)


def lip_points(rings: int = 0) -> tuple[int, ...]:
    """The lips (MediaPipe's FACEMESH_LIPS, inner and outer), grown by `rings` rings."""
    return grown({i for edge in _connections().FACEMESH_LIPS for i in edge}, rings)


@cache
def spanning_tree() -> npt.NDArray[np.int64]:
    """A breadth-first spanning tree of all 478 points from the nose tip: each point's parent (-1 at the
    root). The irises hang from their centres, the centres from the middle of the upper lids. Face shapes
    are smooth along it, so a point is cheap to code from its parent."""
    edges = _edges(_connections().FACEMESH_TESSELATION | _connections().FACEMESH_IRISES)
    edges |= {(RIGHT_IRIS_CENTER, i) for i in RIGHT_IRIS} | {(LEFT_IRIS_CENTER, i) for i in LEFT_IRIS}
    edges |= {(159, RIGHT_IRIS_CENTER), (386, LEFT_IRIS_CENTER)}
    neighbours: dict[int, list[int]] = defaultdict(list)
    for a, b in edges:
        neighbours[a].append(b)
        neighbours[b].append(a)
    parent = np.full(MESH_SIZE, -2, np.int64)
    parent[NOSE_TIP] = -1
    todo = [NOSE_TIP]
    while todo:
        nxt = []
        for x in todo:
            for y in sorted(neighbours[x]):
                if parent[y] == -2:
                    parent[y] = x
                    nxt.append(y)
        todo = nxt
    if np.any(parent == -2):
        raise RuntimeError("the face mesh is not connected")
    return parent
