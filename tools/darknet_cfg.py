"""Minimal Darknet cfg reader, shape inference and .weights layout, for the Python tools.

Mirrors (AlexeyAB/darknet, commit 59596d7):
  * `read_cfg` in src/parser.c / `strip` in src/utils.c: whitespace is removed from every line, lines starting with
    '#' or ';' are comments, '[...]' opens a section, `key=value` is an option. Values are read with C `atoi`/`atof`
    semantics (leading numeric prefix), so `groups=688#576` is 688, as in Darknet.
  * `parse_network_cfg_custom` shape propagation: each layer's input is the previous layer's output
    (`params.h/w/c`), the out-shape formulas of the `make_*_layer` functions (convolutional_out_height,
    make_maxpool_layer, parse_route, make_upsample_layer, make_reorg_layer, make_shortcut_layer, ...).
  * `load_weights_upto` / `load_convolutional_weights`: the order of the parameter arrays in a .weights file.

Only what the tools need (detector cfgs) is implemented; an unknown layer type raises `CfgError` naming the file and
line of its section.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

import numpy as np


class CfgError(Exception):
    pass


@dataclass
class Section:
    type: str
    options: dict
    line: int  # 1-based line of the `[type]` header


# Darknet's string_to_layer_type accepts several spellings; normalise to the name get_layer_string prints.
TYPE_ALIASES = {
    "conv": "convolutional",
    "convolutional": "convolutional",
    "max": "maxpool",
    "maxpool": "maxpool",
    "local_avg": "local_avgpool",
    "local_avgpool": "local_avgpool",
    "avg": "avgpool",
    "avgpool": "avgpool",
    "route": "route",
    "shortcut": "shortcut",
    "upsample": "upsample",
    "yolo": "yolo",
    "gaussian_yolo": "Gaussian_yolo",
    "region": "region",
    "reorg": "reorg",
    "reorg3d": "reorg",
    "dropout": "dropout",
    "scale_channels": "scale_channels",
    "sam": "sam",
    "softmax": "softmax",
    "soft": "softmax",
    "connected": "connected",
    "conn": "connected",
    "crnn": "crnn",
    "cost": "cost",
    "implicit": "implicit",
    "contrastive": "contrastive",
    "batchnorm": "batchnorm",
    "empty": "empty",
    "silence": "silence",
}


def atoi(s: str) -> int:
    """C atoi: optional sign and the leading digits; 0 when there are none."""
    m = re.match(r"\s*([+-]?\d+)", s)
    return int(m.group(1)) if m else 0


def atof(s: str) -> float:
    m = re.match(r"\s*([+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?)", s)
    return float(m.group(1)) if m else 0.0


def read_cfg(path: str) -> list[Section]:
    """Sections in file order; the first is normally [net]."""
    sections: list[Section] = []
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        for lineno, raw in enumerate(f, 1):
            line = "".join(raw.split())  # Darknet's strip(): removes every space/tab/newline
            if not line or line[0] in "#;":
                continue
            if line[0] == "[":
                end = line.find("]")
                if end < 0:
                    raise CfgError(f"{path}:{lineno}: unterminated section header {raw.strip()!r}")
                sections.append(Section(line[1:end], {}, lineno))
                continue
            if "=" not in line:
                raise CfgError(f"{path}:{lineno}: expected key=value, got {raw.strip()!r}")
            if not sections:
                raise CfgError(f"{path}:{lineno}: option before the first section")
            key, value = line.split("=", 1)
            sections[-1].options[key] = value
    if not sections:
        raise CfgError(f"{path}: no sections")
    return sections


def _int(opts, key, default):
    return atoi(opts[key]) if key in opts else default


def _float(opts, key, default):
    return atof(opts[key]) if key in opts else default


def _ints(s: str) -> list[int]:
    # parse_yolo_mask / parse_route: stop at a '#' comment, atoi each comma-separated item
    s = s.split("#", 1)[0]
    return [atoi(x) for x in s.split(",") if x != ""]


def _floats(s: str) -> list[float]:
    s = s.split("#", 1)[0]
    return [atof(x) for x in s.split(",") if x != ""]


@dataclass
class ConvWeights:
    """One convolutional parameter block in a .weights file (load_convolutional_weights order)."""

    layer: int
    n: int  # filters
    c_per_group: int
    size: int
    batch_normalize: bool

    @property
    def nweights(self) -> int:
        return self.n * self.c_per_group * self.size * self.size

    @property
    def nfloats(self) -> int:
        return self.n * (4 if self.batch_normalize else 1) + self.nweights


@dataclass
class Network:
    path: str
    net: dict
    width: int
    height: int
    channels: int
    layers: list[dict] = field(default_factory=list)
    weight_blocks: list[ConvWeights] = field(default_factory=list)


def build_network(path: str, width: int | None = None, height: int | None = None) -> Network:
    """Parse `path` and propagate shapes (Darknet's parse_network_cfg with batch=1).

    `width`/`height` override [net] width/height, as `set_batch_network` + resizing the net would.
    Each layer dict holds the manifest fields of shared/reference/README.md.
    """
    sections = read_cfg(path)
    if sections[0].type not in ("net", "network"):
        raise CfgError(f"{path}:{sections[0].line}: first section must be [net], got [{sections[0].type}]")
    net = sections[0].options
    W = width if width else _int(net, "width", 0)
    H = height if height else _int(net, "height", 0)
    C = _int(net, "channels", 0)
    if W <= 0 or H <= 0 or C <= 0:
        raise CfgError(f"{path}:{sections[0].line}: [net] needs width, height, channels > 0")
    nw = Network(path, net, W, H, C)
    h, w, c = H, W, C
    layers = nw.layers
    for idx, sec in enumerate(sections[1:]):
        o = sec.options
        t = TYPE_ALIASES.get(sec.type.lower())
        where = f"{path}:{sec.line}: layer {idx} [{sec.type}]"
        if t is None:
            raise CfgError(f"{where}: unknown layer type")
        L = {"index": idx, "type": t}
        if t == "convolutional":
            n = _int(o, "filters", 1)
            groups = _int(o, "groups", 1)
            size = _int(o, "size", 1)
            stride = _int(o, "stride", 1)
            sx = _int(o, "stride_x", -1)
            sy = _int(o, "stride_y", -1)
            sx = sx if sx >= 1 else stride
            sy = sy if sy >= 1 else stride
            pad = _int(o, "padding", 0)
            if _int(o, "pad", 0):
                pad = size // 2
            bn = _int(o, "batch_normalize", 0)
            if _int(o, "cbn", 0):
                bn = 2
            if groups < 1 or c % groups:
                raise CfgError(f"{where}: channels {c} not divisible by groups={groups}")
            oh = (h + 2 * pad - size) // sy + 1
            ow = (w + 2 * pad - size) // sx + 1
            L.update(
                c=n, h=oh, w=ow,
                activation=o.get("activation", "logistic"),
                batch_normalize=1 if bn else 0,
                size=size, stride=stride if sx == sy else [sx, sy], pad=pad,
                in_c=c, in_h=h, in_w=w,
            )
            if groups != 1:
                L["groups"] = groups
            if "share_index" not in o:
                nw.weight_blocks.append(ConvWeights(idx, n, c // groups, size, bool(bn)))
        elif t in ("maxpool", "local_avgpool"):
            stride = _int(o, "stride", 1)
            sx = _int(o, "stride_x", stride)
            sy = _int(o, "stride_y", stride)
            size = _int(o, "size", stride)
            padding = _int(o, "padding", size - 1)
            if _int(o, "maxpool_depth", 0):
                oc, oh, ow = _int(o, "out_channels", 1), h, w
            else:
                oc, oh, ow = c, (h + padding - size) // sy + 1, (w + padding - size) // sx + 1
            L.update(c=oc, h=oh, w=ow, size=size, stride=stride if sx == sy else [sx, sy], pad=padding,
                     in_c=c, in_h=h, in_w=w)
        elif t == "avgpool":
            L.update(c=c, h=1, w=1, in_c=c, in_h=h, in_w=w)
        elif t == "route":
            if "layers" not in o:
                raise CfgError(f"{where}: route needs layers=")
            srcs = [i if i >= 0 else idx + i for i in _ints(o["layers"])]
            for s in srcs:
                if not 0 <= s < idx:
                    raise CfgError(f"{where}: route input {s} out of range")
            groups = _int(o, "groups", 1)
            group_id = _int(o, "group_id", 0)
            first = layers[srcs[0]]
            oc = sum(layers[s]["c"] for s in srcs)
            for s in srcs[1:]:
                if (layers[s]["h"], layers[s]["w"]) != (first["h"], first["w"]):
                    raise CfgError(f"{where}: route inputs have different h/w")
            L.update(c=oc // groups, h=first["h"], w=first["w"], layers=srcs, groups=groups, group_id=group_id)
        elif t == "shortcut":
            if "from" not in o:
                raise CfgError(f"{where}: shortcut needs from=")
            srcs = [i if i >= 0 else idx + i for i in _ints(o["from"])]
            L.update(c=c, h=h, w=w, **{"from": srcs}, activation=o.get("activation", "linear"))
            if o.get("weights_type", "none") != "none":
                raise CfgError(f"{where}: shortcut weights_type={o['weights_type']} not supported by these tools")
        elif t == "upsample":
            stride = _int(o, "stride", 2)
            if stride < 0:
                s = -stride
                L.update(c=c, h=h // s, w=w // s)
            else:
                L.update(c=c, h=h * stride, w=w * stride)
            L["stride"] = stride
        elif t == "reorg":
            stride = _int(o, "stride", 1)
            if _int(o, "reverse", 0):
                L.update(c=c // (stride * stride), h=h * stride, w=w * stride)
            else:
                L.update(c=c * stride * stride, h=h // stride, w=w // stride)
            L["stride"] = stride
        elif t in ("yolo", "Gaussian_yolo"):
            classes = _int(o, "classes", 20)
            total = _int(o, "num", 1)
            mask = _ints(o["mask"]) if "mask" in o else list(range(total))
            anchors = _floats(o["anchors"]) if "anchors" in o else []
            # parse_yolo reads at most num*2 anchor values (cspx-p7 lists more than num pairs)
            anchors = [int(a) if float(a).is_integer() else a for a in anchors[: 2 * total]]
            per = 4 + 1 + classes if t == "yolo" else 8 + 1 + classes
            if c != len(mask) * per:
                raise CfgError(f"{where}: input has {c} channels, expected {len(mask)}*({per}) for classes={classes}")
            L.update(c=c, h=h, w=w, classes=classes, num_anchors_in_layer=len(mask), mask=mask, anchors=anchors,
                     scale_x_y=_float(o, "scale_x_y", 1.0), new_coords=_int(o, "new_coords", 0),
                     nms_kind=o.get("nms_kind", "default"), beta_nms=_float(o, "beta_nms", 0.6))
        elif t == "region":
            classes = _int(o, "classes", 20)
            num = _int(o, "num", 1)
            coords = _int(o, "coords", 4)
            L.update(c=c, h=h, w=w, classes=classes, num=num, coords=coords, softmax=_int(o, "softmax", 0),
                     anchors=_floats(o.get("anchors", "")))
        elif t in ("dropout", "cost", "empty", "silence", "softmax", "contrastive"):
            L.update(c=c, h=h, w=w)
        elif t in ("scale_channels", "sam"):
            src = _int(o, "from", 0)
            src = src if src >= 0 else idx + src
            if not 0 <= src < idx:
                raise CfgError(f"{where}: from={src} out of range")
            f = layers[src]
            L.update(c=f["c"], h=f["h"], w=f["w"], **{"from": [src]}, activation=o.get("activation", "linear"))
        elif t == "connected":
            out = _int(o, "output", 1)
            raise CfgError(f"{where}: [connected] not supported by these tools (output={out})")
        else:
            raise CfgError(f"{where}: layer type {t!r} not supported by these tools")
        L["outputs"] = L["c"] * L["h"] * L["w"]
        layers.append(L)
        h, w, c = L["h"], L["w"], L["c"]
    return nw


HEADER = struct.Struct("<iiiQ")  # major, minor, revision, seen (u64 because major*10+minor >= 2)


def read_weights(nw: Network, path: str) -> tuple[tuple, list[dict]]:
    """Read a .weights file in load_weights_upto order. Returns (header, one dict of arrays per conv block)."""
    with open(path, "rb") as f:
        data = f.read()
    major, minor, revision = struct.unpack_from("<iii", data, 0)
    if major * 10 + minor >= 2:
        seen = struct.unpack_from("<Q", data, 12)[0]
        off = 20
    else:
        seen = struct.unpack_from("<I", data, 12)[0]
        off = 16
    if major > 1000 or minor > 1000:
        raise CfgError(f"{path}: transposed weights (major={major}, minor={minor}) not supported")
    blocks = []
    for b in nw.weight_blocks:
        need = b.nfloats * 4
        if off + need > len(data):
            raise CfgError(f"{path}: truncated at byte {off}: layer {b.layer} needs {need} bytes, "
                           f"{len(data) - off} left")
        arr = np.frombuffer(data, np.float32, b.nfloats, off)
        d = {"biases": arr[: b.n]}
        p = b.n
        if b.batch_normalize:
            d["scales"] = arr[p: p + b.n]
            d["rolling_mean"] = arr[p + b.n: p + 2 * b.n]
            d["rolling_variance"] = arr[p + 2 * b.n: p + 3 * b.n]
            p += 3 * b.n
        d["weights"] = arr[p:].reshape(b.n, b.c_per_group, b.size, b.size)
        blocks.append(d)
        off += need
    if off != len(data):
        # Darknet ignores trailing bytes too, but they usually mean weights of another cfg
        import sys

        print(f"warning: {path}: {len(data) - off} trailing bytes after the last layer's weights (byte {off}); "
              f"weights for a different cfg?", file=sys.stderr)
    return (major, minor, revision, seen), blocks


def write_weights(nw: Network, path: str, blocks: list[dict], header=(0, 2, 5, 0)) -> None:
    """Write a .weights file as Darknet's save_weights does (header 0.2.5, u64 seen), atomically."""
    import os
    import tempfile

    major, minor, revision, seen = header
    parts = [HEADER.pack(major, minor, revision, seen)]
    for b, d in zip(nw.weight_blocks, blocks, strict=True):
        parts.append(np.asarray(d["biases"], np.float32).tobytes())
        if b.batch_normalize:
            for k in ("scales", "rolling_mean", "rolling_variance"):
                parts.append(np.asarray(d[k], np.float32).tobytes())
        wts = np.asarray(d["weights"], np.float32)
        if wts.size != b.nweights:
            raise ValueError(f"layer {b.layer}: {wts.size} weights, expected {b.nweights}")
        parts.append(wts.tobytes())
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp.", suffix=".weights")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        with os.fdopen(fd, "wb") as f:
            for p in parts:
                f.write(p)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
