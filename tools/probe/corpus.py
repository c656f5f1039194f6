"""The probe's corpus: every bad input is built here from a description (no binary blobs committed).

`build(work, shared, binary)` writes the base assets (a small detector cfg with its Darknet weights, a
safetensors copy, small PNG images, a dataset with labels, lists, a .data file and a COCO json) and the bad
variants under `work`, and returns the cases. A case's `quick=True` puts it in the CI subset (`--quick`).
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import struct
import subprocess
import zlib


@dataclasses.dataclass
class Case:
    family: str
    name: str
    argv: list
    quick: bool = False
    where: tuple = ()
    stdin: bool = False
    # A legitimate (if odd) input: exit 0 is correct, classified `ok`.
    valid: bool = False


def png(path: str, w: int, h: int, color: int = 2, rows: bytes | None = None, depth: int = 8) -> None:
    """A PNG with the given header; pixel rows from `rows` (else a gradient) compressed with zlib."""
    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    if rows is None:
        ch = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color]
        rows = b"".join(b"\0" + bytes(((x * 7 + y * 3) & 255) for x in range(w * ch)) for y in range(h))
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 0))
    data += chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")
    write(path, data)


def png_bomb(path: str, w: int, h: int) -> None:
    """A valid 1-bit grayscale PNG of w x h zeros: tiny on disk, w*h*3 floats once decoded."""
    c = zlib.compressobj(9)
    row = b"\0" + b"\0" * ((w + 7) // 8)
    parts = [c.compress(row) for _ in range(h)] + [c.flush()]

    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0))
    data += chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")
    write(path, data)


def write(path: str, data) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb" if isinstance(data, (bytes, bytearray)) else "w") as f:
        f.write(data)
    return path


SMALL_CFG = """[net]
batch={batch}
subdivisions=1
width={w}
height={h}
channels={c}
learning_rate=0.001
max_batches=10
policy=steps
steps=8,9
scales=.1,.1

[convolutional]
batch_normalize=1
filters={filters}
size={size}
stride={stride}
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
filters={yf}
size=1
stride=1
pad=1
activation=linear

[yolo]
mask={mask}
anchors={anchors}
classes={classes}
num={num}
"""


def small_cfg(**kw) -> str:
    d = dict(batch=1, w=64, h=64, c=3, filters=8, size=3, stride=1, yf=24, mask="0,1,2",
             anchors="10,14, 23,27, 37,58", classes=3, num=3)
    d.update(kw)
    return SMALL_CFG.format(**d)


def build(work: str, shared: str, binary: str) -> list[Case]:
    if os.path.isdir(work):
        shutil.rmtree(work)
    os.makedirs(work)
    P = lambda *p: os.path.join(work, *p)  # noqa: E731
    cases: list[Case] = []

    def add(family, name, argv, quick=False, where=(), valid=False):
        cases.append(Case(family, name, [str(a) for a in argv], quick, tuple(where), valid=valid))

    # --- base assets -------------------------------------------------------------------------------------
    mini = os.path.join(shared, "reference", "mini-yolov4")
    cfg = shutil.copy(os.path.join(mini, "mini-yolov4.cfg"), P("mini.cfg"))
    # The same network with batch=2 (Darknet refuses to train with batch 1) for `train` cases.
    tcfg = write(P("mini_train.cfg"), open(cfg).read().replace("batch=1\n", "batch=2\n", 1))
    wts = shutil.copy(os.path.join(mini, "mini-yolov4.weights"), P("mini.weights"))
    wbytes = open(wts, "rb").read()
    st = P("mini.safetensors")
    subprocess.run([binary, "convert", cfg, wts, "-o", st], check=True, capture_output=True)
    stbytes = open(st, "rb").read()
    img = P("img.png")
    png(img, 96, 80)
    write(P("small.cfg"), small_cfg())
    names = write(P("abc.names"), "a\nb\nc\n")
    ds = P("ds")
    imgs = []
    for i in range(4):
        p = os.path.join(ds, f"im{i}.png")
        png(p, 96 + 8 * i, 80)
        write(os.path.join(ds, f"im{i}.txt"), f"{i % 3} 0.5 0.5 0.3 0.4\n1 0.25 0.3 0.2 0.2\n")
        imgs.append(p)
    good_list = write(P("ds", "list.txt"), "\n".join(imgs) + "\n")

    def data_file(name, train=good_list, valid=good_list, classes="3", extra=""):
        return write(P("data", name + ".data"),
                     f"classes={classes}\ntrain={train}\nvalid={valid}\nnames={names}\n{extra}")
    good_data = data_file("good")
    coco = {"images": [{"id": i + 1, "file_name": f"im{i}.png", "width": 96 + 8 * i, "height": 80} for i in range(4)],
            "annotations": [{"id": i + 1, "image_id": i + 1, "category_id": 1 + i % 3, "bbox": [10, 10, 30, 20],
                             "area": 600, "iscrowd": 0} for i in range(4)],
            "categories": [{"id": k, "name": n} for k, n in ((1, "a"), (2, "b"), (3, "c"))]}
    write(P("coco.json"), json.dumps(coco))

    # --- cfg family: malformed and absurd cfgs ------------------------------------------------------------
    big_ints = ["0", "-1", "-2147483648", "2147483648", "4294967296", "99999999999", "1000000000",
                "99999999999999999999999", "1e9", "abc", "nan"]
    for key in ["filters", "size", "stride", "pad", "groups", "dilation"]:
        for v in big_ints:
            text = small_cfg().replace(f"\n{key}=", f"\n{key}=", 1)
            sec = text.split("[convolutional]", 1)
            body = sec[1]
            if f"\n{key}=" in body:
                body = body.replace(f"\n{key}=", f"\n{key}={v}\n#", 1)
            else:
                body = body.replace("\nactivation=", f"\n{key}={v}\nactivation=", 1)
            p = write(P("cfg", f"conv_{key}_{v}.cfg"), sec[0] + "[convolutional]" + body)
            # `1e9` reads as 1 with C's atoi, as Darknet reads it.
            add("cfg", f"conv {key}={v}", ["info", p], quick=(v in ("99999999999", "1000000000")),
                valid=(key == "pad" or v == "1e9"))
    for key in ["width", "height", "channels", "batch", "subdivisions"]:
        for v in big_ints:
            text = small_cfg().replace(f"\n{key}=", f"\n{key}={v}\n#", 1)
            p = write(P("cfg", f"net_{key}_{v}.cfg"), text)
            # Darknet clamps batch and subdivisions below 1 to 1.
            add("cfg", f"net {key}={v}", ["info", p], quick=(key == "width" and v == "99999999999"),
                valid=(key in ("batch", "subdivisions") and v in ("0", "-1", "-2147483648")) or v == "1e9")
    for ks in [1001, 999, 513, 100000]:
        p = write(P("cfg", f"kernel_{ks}.cfg"), small_cfg(size=ks))
        add("cfg", f"kernel {ks}x{ks}", ["info", p], quick=(ks == 1001))
        add("cfg", f"kernel {ks}x{ks} forward", ["info", "--forward", p])
    for n in ["1000000000", "99999999999", "0", "-3", "100000"]:
        p = write(P("cfg", f"yolo_num_{n}.cfg"), small_cfg(num=n))
        add("cfg", f"yolo num={n}", ["info", p], quick=(n == "1000000000"))
    for c in ["1000000000", "99999999999", "0", "-1"]:
        p = write(P("cfg", f"yolo_classes_{c}.cfg"), small_cfg(classes=c))
        add("cfg", f"yolo classes={c}", ["info", p])
    for name, anchors in [("odd", "10,14, 23,27, 37"), ("nan", "nan,14, 23,27, 37,58"), ("inf", "inf,14, 23,27, 37,58"),
                          ("neg", "-10,14, 23,27, 37,58"), ("huge", "1e30,14, 23,27, 37,58"),
                          ("empty", ""), ("text", "a,b,c,d,e,f"), ("long", ",".join(["5"] * 200001))]:
        p = write(P("cfg", f"anchors_{name}.cfg"), small_cfg(anchors=anchors))
        add("cfg", f"yolo anchors {name}", ["info", p], quick=(name == "odd"), valid=(name in ("empty", "huge")))
    for name, mask in [("oob", "0,1,7"), ("neg", "-1,0,1"), ("huge", "0,1,99999999999"), ("dup", "0,0,0")]:
        p = write(P("cfg", f"mask_{name}.cfg"), small_cfg(mask=mask))
        add("cfg", f"yolo mask {name}", ["info", p], valid=(name == "dup"))
    for fil in ["1000000000", "99999999999", "100000"]:
        p = write(P("cfg", f"filters_fwd_{fil}.cfg"), small_cfg(filters=fil))
        add("cfg", f"filters={fil} forward", ["info", "--forward", p], quick=(fil == "1000000000"),
            valid=(fil == "100000"))
    for w in ["100000", "65536", "30000"]:
        p = write(P("cfg", f"wh_{w}.cfg"), small_cfg(w=w, h=w))
        add("cfg", f"net {w}x{w}", ["info", p])
        add("cfg", f"net {w}x{w} forward", ["info", "--forward", p])
    p = write(P("cfg", "channels_huge.cfg"), small_cfg(c=1000000000))
    add("cfg", "channels=1e9 forward", ["info", "--forward", p])
    extra_sections = {
        "route_huge": "[route]\nlayers=-1,99999999999\n",
        "route_1e9": "[route]\nlayers=1000000000\n",
        "route_empty": "[route]\nlayers=\n",
        "route_groups0": "[route]\nlayers=-1\ngroups=0\n",
        "route_groupid": "[route]\nlayers=-1\ngroups=2\ngroup_id=5\n",
        "route_many": "[route]\nlayers=" + ",".join(["-1"] * 100000) + "\n",
        "shortcut_huge": "[shortcut]\nfrom=99999999999\n",
        "shortcut_self": "[shortcut]\nfrom=0\n",
        "maxpool_huge": "[maxpool]\nsize=1000000000\nstride=1\n",
        "maxpool_stride0": "[maxpool]\nsize=2\nstride=0\n",
        "maxpool_stride_huge": "[maxpool]\nsize=2\nstride=99999999999\n",
        "upsample_huge": "[upsample]\nstride=100000\n",
        "upsample_i64": "[upsample]\nstride=99999999999\n",
        "upsample_neg": "[upsample]\nstride=-100000\n",
        "reorg_huge": "[reorg]\nstride=1000000000\n",
        "reorg_zero": "[reorg]\nstride=0\n",
        "dropout_nan": "[dropout]\nprobability=nan\n",
        "unknown": "[bogus_layer]\nx=1\n",
        "unsupported": "[lstm]\noutput=10\n",
        "sam_self": "[sam]\nfrom=-1\n",
        "scale_huge": "[scale_channels]\nfrom=-99999999999\n",
        "conv_pad_huge": "[convolutional]\nfilters=4\nsize=3\npad=1\npadding=1000000000\n",
        "conv_stride_xy": "[convolutional]\nfilters=4\nsize=3\nstride_x=1000000000\nstride_y=0\n",
        "conv_groups_mismatch": "[convolutional]\nfilters=5\nsize=3\ngroups=2\n",
        "region_huge": "[region]\nanchors=1,1\nclasses=20\nnum=1000000000\ncoords=4\n",
    }
    for name, sec in extra_sections.items():
        text = small_cfg().split("[maxpool]")[0] + sec
        p = write(P("cfg", f"x_{name}.cfg"), text)
        add("cfg", name, ["info", p], quick=name in ("route_huge", "maxpool_huge", "upsample_huge"),
            valid=name in ("shortcut_self", "sam_self"))
    structural = {
        "empty": "",
        "only_comments": "# nothing\n; here\n",
        "no_net": "[convolutional]\nfilters=4\n",
        "net_only": "[net]\nwidth=8\nheight=8\nchannels=3\n",
        "unclosed": "[net\nwidth=8\n",
        "not_kv": "[net]\nwidth 8\n",
        "nul_bytes": "[net]\nwidth=8\0\0\nheight=8\n",
        "long_line": "[net]\nwidth=" + "9" * 5_000_000 + "\n",
        "long_key": "[net]\n" + "k" * 1_000_000 + "=1\n",
        "many_sections": "[net]\nwidth=64\nheight=64\nchannels=3\n" + "[dropout]\nprobability=0.1\n" * 50000,
        "deep_conv": "[net]\nwidth=64\nheight=64\nchannels=3\n" + "[convolutional]\nfilters=1\nsize=1\n" * 20000,
    }
    for name, text in structural.items():
        p = write(P("cfg", f"s_{name}.cfg"), text)
        add("cfg", f"structure {name}", ["info", p], quick=name in ("empty", "unclosed"))
    write(P("cfg", "s_binary.cfg"), os.urandom(4096))
    add("cfg", "structure binary garbage", ["info", P("cfg", "s_binary.cfg")], quick=True)
    write(P("cfg", "s_latin1.cfg"), b"[net]\nwidth=8\xff\xfe\nheight=8\n")
    add("cfg", "structure invalid utf-8", ["info", P("cfg", "s_latin1.cfg")])
    add("cfg", "missing file", ["info", P("cfg", "does_not_exist.cfg")])
    add("cfg", "directory as cfg", ["info", P("cfg")])
    # A bad cfg given to detect/convert/train too (shape inference happens in every command).
    for v in ("1000000000", "99999999999"):
        write(P("cfg", f"train_filters_{v}.cfg"), small_cfg(batch=2, filters=v))
    for cmd in ("detect", "convert", "train"):
        p = P("cfg", "conv_filters_1000000000.cfg")
        argv = {"detect": ["detect", p, wts, img], "convert": ["convert", p, wts, "-o", P("out", "x.safetensors")],
                "train": ["train", p.replace("conv_filters", "train_filters"), "--data", good_data, "--max-batches", "1", "--out", P("out", "tr_cfg")]}[cmd]
        add("cfg", f"filters=1e9 via {cmd}", argv, quick=(cmd == "train"))
        p = P("cfg", "conv_filters_99999999999.cfg")
        argv = [x if x != P("cfg", "conv_filters_1000000000.cfg") else p for x in argv]
        add("cfg", f"filters beyond i32 via {cmd}", argv)

    # --- weights family -----------------------------------------------------------------------------------
    def wvariant(name, data):
        return write(P("weights", name + ".weights"), data)
    n = len(wbytes)
    variants = {}
    for cut in [0, 1, 4, 8, 12, 16, 19, 20, 24, 100, 1000, n // 2, n - 4, n - 1]:
        variants[f"truncated_{cut}"] = wbytes[:cut]
    variants["extra_bytes"] = wbytes + b"\0" * 100
    variants["extra_1byte"] = wbytes + b"\0"
    for major in [99, 2, 1000000, -1]:
        variants[f"major_{major}"] = struct.pack("<i", major) + wbytes[4:]
    for minor in [99999, -1]:
        variants[f"minor_{minor}"] = wbytes[:4] + struct.pack("<i", minor) + wbytes[8:]
    variants["revision_huge"] = wbytes[:8] + struct.pack("<i", 2**31 - 1) + wbytes[12:]
    for pos_name, pos in [("first", 20), ("middle", 20 + 4 * ((n - 20) // 8)), ("last", n - 4)]:
        for val_name, val in [("nan", float("nan")), ("inf", float("inf")), ("neginf", float("-inf"))]:
            b = bytearray(wbytes)
            b[pos:pos + 4] = struct.pack("<f", val)
            variants[f"{val_name}_{pos_name}"] = bytes(b)
    b = bytearray(wbytes)
    for i in range(20, n - 3, 4):
        b[i:i + 4] = struct.pack("<f", float("nan"))
    variants["all_nan"] = bytes(b)
    variants["huge_values"] = wbytes[:20] + struct.pack("<f", 3e38) * ((n - 20) // 4)
    variants["garbage"] = os.urandom(n)
    variants["zeros"] = b"\0" * n
    variants["text"] = b"this is not a weights file\n" * 100
    for name, data in variants.items():
        p = wvariant(name, data)
        q = name in ("major_99", "truncated_12", "nan_first", "inf_middle", "truncated_" + str(n // 2))
        # Darknet ignores the revision; 3e38 is a finite (if useless) parameter.
        add("weights", f"convert {name}", ["convert", cfg, p, "-o", P("out", f"w_{name}.safetensors")], quick=q,
            valid=name in ("revision_huge", "huge_values"))
        if name.startswith(("nan", "inf", "neginf", "major", "truncated_1000", "extra", "all_nan", "huge", "garbage")):
            add("weights", f"detect {name}", ["detect", cfg, p, img, "--names", names, "--quiet"],
                valid=name == "huge_values")
        if name.startswith(("truncated", "major", "nan_first", "garbage")):
            add("weights", f"partial {name}", ["partial", cfg, p, P("out", f"p_{name}.weights"), "5"])
    add("weights", "weights of another cfg", ["convert", P("small.cfg"), wts, "-o", P("out", "other.safetensors")],
        quick=True)
    add("weights", "missing weights", ["convert", cfg, P("weights", "nope.weights"), "-o", P("out", "n.safetensors")])
    add("weights", "directory as weights", ["convert", cfg, P("weights"), "-o", P("out", "d.safetensors")])
    add("weights", "no extension", ["convert", cfg, write(P("weights", "noext"), wbytes), "-o", P("out", "ne.safetensors")],
        valid=True)

    # --- safetensors family -------------------------------------------------------------------------------
    hlen = struct.unpack("<Q", stbytes[:8])[0]
    header = json.loads(stbytes[8:8 + hlen])
    body = stbytes[8 + hlen:]
    first = sorted(k for k in header if k != "__metadata__")[0]

    def st_with(hdr: dict, data: bytes = body) -> bytes:
        h = json.dumps(hdr).encode()
        return struct.pack("<Q", len(h)) + h + data
    svariants = {
        "empty": b"",
        "short_len": stbytes[:4],
        "len_u64max": struct.pack("<Q", 2**64 - 1) + stbytes[8:],
        "len_huge": struct.pack("<Q", 10**12) + stbytes[8:],
        "len_past_end": struct.pack("<Q", len(stbytes)) + stbytes[8:],
        "len_zero": struct.pack("<Q", 0) + stbytes[8:],
        "header_not_json": struct.pack("<Q", 20) + b"{not json at all!!!}" + body,
        "header_array": st_with([1, 2, 3]),
        "truncated_body": stbytes[: 8 + hlen + len(body) // 2],
        "truncated_header": stbytes[: 8 + hlen // 2],
        "garbage": os.urandom(4096),
    }
    for label, patch in [
        ("dtype_bad", {"dtype": "Q99"}), ("dtype_f64", {"dtype": "F64"}), ("dtype_i8", {"dtype": "I8"}),
        ("shape_huge", {"shape": [1000000000, 1000000000]}), ("shape_u64", {"shape": [2**63, 2]}),
        ("shape_wrong", {"shape": [1, 2, 3]}), ("offsets_oob", {"data_offsets": [0, 10**12]}),
        ("offsets_reversed", {"data_offsets": [100, 0]}), ("offsets_overlap", {"data_offsets": [0, 4]}),
        ("shape_neg", {"shape": [-1]}),
    ]:
        h = json.loads(json.dumps(header))
        h[first].update(patch)
        svariants[label] = st_with(h)
    h = json.loads(json.dumps(header))
    del h[first]
    svariants["missing_tensor"] = st_with(h)
    h = json.loads(json.dumps(header))
    h["extra.tensor"] = {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}
    svariants["extra_tensor"] = st_with(h)
    h = json.loads(json.dumps(header))
    h["__metadata__"] = {"seen": "99999999999999999999999", "format": "x" * 100}
    svariants["metadata_bad"] = st_with(h)
    nb = bytearray(body)
    nb[0:4] = struct.pack("<f", float("nan"))
    svariants["nan_value"] = st_with(header, bytes(nb))
    nb = bytearray(body)
    nb[-4:] = struct.pack("<f", float("inf"))
    svariants["inf_value"] = st_with(header, bytes(nb))
    svariants["deep_json"] = struct.pack("<Q", 200002) + b"[" * 100001 + b"]" * 100001 + body
    for name, data in svariants.items():
        p = write(P("st", name + ".safetensors"), data)
        q = name in ("len_u64max", "shape_huge", "header_not_json", "nan_value", "offsets_oob")
        add("safetensors", f"convert {name}", ["convert", cfg, p, "-o", P("out", f"s_{name}.weights")], quick=q)
        add("safetensors", f"detect {name}", ["detect", cfg, p, img, "--names", names, "--quiet"])

    # --- image family -------------------------------------------------------------------------------------
    jpg = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "weights", "bus.jpg")
    jb = open(jpg, "rb").read() if os.path.exists(jpg) else None
    png_good = open(img, "rb").read()
    ivariants: dict[str, bytes | None] = {}
    if jb:
        for cut in [2, 100, 1000, len(jb) // 2, len(jb) - 2]:
            ivariants[f"jpg_truncated_{cut}.jpg"] = jb[:cut]
        # SOF0 dimensions patched to 65535 x 65535 (the image data no longer matches).
        i = jb.find(b"\xff\xc0")
        if i > 0:
            ivariants["jpg_sof_65535.jpg"] = jb[:i + 5] + b"\xff\xff\xff\xff" + jb[i + 9:]
            ivariants["jpg_sof_zero.jpg"] = jb[:i + 5] + b"\0\0\0\0" + jb[i + 9:]
        ivariants["jpg_garbage_tail.jpg"] = jb[: len(jb) // 2] + os.urandom(5000)
    for cut in [8, 16, 33, len(png_good) // 2, len(png_good) - 12]:
        ivariants[f"png_truncated_{cut}.png"] = png_good[:cut]
    ivariants["empty.png"] = b""
    ivariants["garbage.jpg"] = os.urandom(10000)
    ivariants["text.jpg"] = b"hello" * 100
    ivariants["gif.gif"] = b"GIF89a" + b"\0" * 100
    ivariants["bmp_huge.bmp"] = (b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) +
                                 struct.pack("<IiiHHIIiiII", 40, 2**31 - 1, -(2**31 - 1), 1, 24, 0, 0, 0, 0, 0, 0))
    ivariants["bmp_zero.bmp"] = (b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) +
                                 struct.pack("<IiiHHIIiiII", 40, 0, 0, 1, 24, 0, 0, 0, 0, 0, 0))
    for name, data in ivariants.items():
        write(P("img", name), data)
    # PNG headers with absurd sizes (no data) and real decompression bombs.
    png(P("img", "png_zero_size.png"), 0, 0, rows=b"")
    ihdr_only = lambda w, h: (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" +  # noqa: E731
                              struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0) + b"\0\0\0\0")
    write(P("img", "png_header_2g.png"), ihdr_only(2**31 - 1, 2**31 - 1))
    write(P("img", "png_header_100k.png"), ihdr_only(100000, 100000))
    png_bomb(P("img", "bomb_30000.png"), 30000, 30000)
    png_bomb(P("img", "bomb_60000x20000.png"), 60000, 20000)
    png_bomb(P("img", "bomb_100000x1.png"), 100000, 1)
    png(P("img", "png_16bit.png"), 40, 30, color=2, depth=16,
        rows=b"".join(b"\0" + b"\x12\x34" * 120 for _ in range(30)))
    png(P("img", "png_rgba.png"), 40, 30, color=6)
    png(P("img", "png_gray.png"), 40, 30, color=0)
    png(P("img", "png_1x1.png"), 1, 1)
    png(P("img", "png_1x10000.png"), 1, 10000)
    os.makedirs(P("img", "dir.jpg"), exist_ok=True)
    for name in sorted(os.listdir(P("img"))):
        q = name in ("bomb_30000.png", "png_header_2g.png", "jpg_truncated_1000.jpg", "garbage.jpg", "empty.png")
        add("image", f"detect {name}", ["detect", cfg, wts, P("img", name), "--names", names, "--quiet"], quick=q,
            valid=name in ("png_16bit.png", "png_rgba.png", "png_gray.png", "png_1x1.png", "png_1x10000.png",
                           "bomb_100000x1.png"))
    for name in ("bomb_30000.png", "png_header_100k.png", "garbage.jpg", "empty.png"):
        add("image", f"compare --image {name}", ["compare", cfg, wts, "--reference", os.path.join(mini, "infer_unfused"),
                                                 "--image", P("img", name)])
    # Image lists given to detect.
    write(P("img", "list_missing.txt"), "/nonexistent/a.jpg\n" + img + "\n")
    write(P("img", "list_binary.txt"), os.urandom(3000))
    write(P("img", "list_empty.txt"), "")
    write(P("img", "list_huge_line.txt"), "x" * 5_000_000 + "\n")
    write(P("img", "list_self.txt"), P("img", "list_self.txt") + "\n")
    for name in ("list_missing.txt", "list_binary.txt", "list_empty.txt", "list_huge_line.txt", "list_self.txt"):
        add("image", f"detect {name}", ["detect", cfg, wts, P("img", name), "--names", names, "--quiet"])
    # Training/eval sets that contain a bad image.
    bad_ds = P("badimg")
    bl = []
    for i, bad in enumerate(["bomb_30000.png", "garbage.jpg", "empty.png", "png_header_2g.png"]):
        p = os.path.join(bad_ds, bad)
        shutil.copy(P("img", bad), p) if os.path.exists(bad_ds) else (os.makedirs(bad_ds), shutil.copy(P("img", bad), p))
        write(os.path.splitext(p)[0] + ".txt", "0 0.5 0.5 0.2 0.2\n")
        bl.append(p)
    badimg_list = write(P("badimg", "list.txt"), "\n".join(imgs[:2] + bl) + "\n")
    badimg_data = data_file("badimg", train=badimg_list, valid=badimg_list)
    add("image", "train set with bad images", ["train", tcfg, "--data", badimg_data, "--max-batches", "2",
                                               "--out", P("out", "tr_badimg"), "--quiet"], quick=True)
    add("image", "eval set with bad images", ["eval", cfg, wts, "--data", badimg_data])
    add("image", "augment set with bad images", ["augment", "--data", badimg_data, "--batch", "6",
                                                 "--out", P("out", "aug_badimg")])
    add("image", "anchors set with bad images", ["anchors", "--data", badimg_list, "--seed", "1"])

    # --- dataset family: lists, labels, .data, COCO json ---------------------------------------------------
    label_bad = {
        "nan": "0 nan 0.5 0.2 0.2\n", "inf": "0 0.5 inf 0.2 0.2\n", "neg_class": "-1 0.5 0.5 0.2 0.2\n",
        "class_huge": "99999999999 0.5 0.5 0.2 0.2\n", "class_1e9": "1000000000 0.5 0.5 0.2 0.2\n",
        "class_beyond": "7 0.5 0.5 0.2 0.2\n", "four_fields": "0 0.5 0.5 0.2\n", "many_fields": "0 " + "0.5 " * 100 + "\n",
        "text": "cat dog bird fish\n", "coords_huge": "0 1e30 1e30 1e30 1e30\n", "zero_wh": "0 0.5 0.5 0 0\n",
        "negative_wh": "0 0.5 0.5 -0.2 -0.2\n", "binary": None, "class_float": "1.5 0.5 0.5 0.2 0.2\n",
        "many_boxes": "0 0.5 0.5 0.1 0.1\n" * 200000, "long_line": "0 " + "9" * 3_000_000 + " 0.5 0.2 0.2\n",
    }
    for name, text in label_bad.items():
        d = P("lab", name)
        os.makedirs(d, exist_ok=True)
        ip = os.path.join(d, "im.png")
        shutil.copy(imgs[0], ip)
        shutil.copy(imgs[1], os.path.join(d, "ok.png"))
        write(os.path.join(d, "ok.txt"), "0 0.5 0.5 0.3 0.3\n")
        write(os.path.join(d, "im.txt"), os.urandom(2000) if text is None else text)
        lst = write(os.path.join(d, "list.txt"), f"{os.path.join(d, 'ok.png')}\n{ip}\n")
        dfile = data_file("lab_" + name, train=lst, valid=lst)
        q = name in ("nan", "class_huge", "text")
        add("dataset", f"anchors label {name}", ["anchors", "--data", lst, "--seed", "1", "-n", "2"], quick=q)
        add("dataset", f"eval label {name}", ["eval", cfg, wts, "--data", dfile])
        add("dataset", f"train label {name}", ["train", tcfg, "--data", dfile, "--max-batches", "1",
                                               "--out", P("out", "tr_lab_" + name), "--quiet"], quick=(name == "nan"))
        if name in ("nan", "class_huge", "binary", "many_fields", "coords_huge"):
            add("dataset", f"augment label {name}", ["augment", "--data", dfile, "--batch", "2",
                                                     "--out", P("out", "aug_" + name)])
    data_bad = {
        "classes_huge": dict(classes="99999999999"), "classes_1e9": dict(classes="1000000000"),
        "classes_neg": dict(classes="-1"), "classes_text": dict(classes="many"),
        "train_missing": dict(train="/nonexistent/train.txt"), "valid_missing": dict(valid="/nonexistent/valid.txt"),
        "train_dir": dict(train=P("ds")), "train_empty": dict(train=write(P("data", "empty.txt"), "")),
        "train_binary": dict(train=write(P("data", "binary.txt"), os.urandom(5000))),
        "train_missing_images": dict(train=write(P("data", "missing_imgs.txt"), "/nope/1.png\n/nope/2.png\n")),
    }
    for name, kw in data_bad.items():
        dfile = data_file("d_" + name, **kw)
        add("dataset", f"train .data {name}", ["train", tcfg, "--data", dfile, "--max-batches", "1",
                                               "--out", P("out", "tr_d_" + name), "--quiet"],
            quick=name in ("classes_huge", "train_binary"))
        add("dataset", f"eval .data {name}", ["eval", cfg, wts, "--data", dfile])
        add("dataset", f"anchors .data {name}", ["anchors", "--data", dfile, "--seed", "1"])
    write(P("data", "garbage.data"), os.urandom(3000))
    add("dataset", ".data garbage", ["train", tcfg, "--data", P("data", "garbage.data"), "--max-batches", "1",
                                     "--out", P("out", "tr_g")])
    cj = lambda **kw: {**json.loads(json.dumps(coco)), **kw}  # noqa: E731
    coco_bad = {
        "not_json": "this is { not json",
        "truncated": json.dumps(coco)[:200],
        "array": "[1,2,3]",
        "empty_obj": "{}",
        "deep": "[" * 100000 + "]" * 100000,
        "bbox_short": json.dumps(cj(annotations=[{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2]}])),
        "bbox_huge": json.dumps(cj(annotations=[{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1e308, 1e308, 1e308, 1e308], "area": 1, "iscrowd": 0}])),
        "bbox_neg": json.dumps(cj(annotations=[{"id": 1, "image_id": 1, "category_id": 1, "bbox": [-10, -10, -5, -5], "area": 1, "iscrowd": 0}])),
        "num_overflow": json.dumps(coco).replace('"id": 1,', '"id": 1e400,', 1),
        "id_beyond_i64": json.dumps(coco).replace('"image_id": 1,', '"image_id": 99999999999999999999999,', 1),
        "cat_unknown": json.dumps(cj(annotations=[{"id": 1, "image_id": 1, "category_id": 999999, "bbox": [1, 2, 3, 4], "area": 1, "iscrowd": 0}])),
        "image_unknown": json.dumps(cj(annotations=[{"id": 1, "image_id": 424242, "category_id": 1, "bbox": [1, 2, 3, 4], "area": 1, "iscrowd": 0}])),
        "file_dotdot": json.dumps(cj(images=[{"id": 1, "file_name": "../../../../etc/passwd", "width": 10, "height": 10}])),
        "file_abs": json.dumps(cj(images=[{"id": 1, "file_name": "/etc/passwd", "width": 10, "height": 10}])),
        "wh_huge": json.dumps(cj(images=[{"id": 1, "file_name": "im0.png", "width": 10**12, "height": 10**12}])),
        "wh_zero": json.dumps(cj(images=[{"id": 1, "file_name": "im0.png", "width": 0, "height": 0}])),
        "types_wrong": json.dumps(cj(images=[{"id": "x", "file_name": 5, "width": "w", "height": None}])),
        "categories_many": json.dumps(cj(categories=[{"id": i, "name": str(i)} for i in range(1, 100001)])),
        "category_id_huge": json.dumps(cj(categories=[{"id": 2**62, "name": "x"}])),
    }
    for name, text in coco_bad.items():
        p = write(P("coco", name + ".json"), text)
        q = name in ("not_json", "file_dotdot", "deep", "bbox_huge")
        add("dataset", f"eval coco {name}", ["eval", cfg, wts, "--data", p, "--images", P("ds")], quick=q)
        add("dataset", f"anchors coco {name}", ["anchors", "--data", p, "--seed", "1", "-n", "2"])
        add("dataset", f"train coco {name}", ["train", tcfg, "--data", p, "--images", P("ds"), "--max-batches", "1",
                                              "--out", P("out", "tr_c_" + name), "--quiet"])
        add("dataset", f"eval --gt {name}", ["eval", "--results", write(P("coco", "res_ok.json"), json.dumps(
            [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 20], "score": 0.9}])), "--gt", p])
    res_bad = {
        "res_not_json": "nope", "res_obj": "{}", "res_score_str": json.dumps([{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": "high"}]),
        "res_bbox_short": json.dumps([{"image_id": 1, "category_id": 1, "bbox": [1], "score": 0.5}]),
        "res_huge_ids": json.dumps([{"image_id": 2**63 - 1, "category_id": 2**63 - 1, "bbox": [1, 2, 3, 4], "score": 0.5}]),
        "res_many": json.dumps([{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}] * 300000),
        "res_score_huge": json.dumps([{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 1e308}]),
    }
    for name, text in res_bad.items():
        p = write(P("coco", name + ".json"), text)
        add("dataset", f"eval --results {name}", ["eval", "--results", p, "--gt", P("coco.json")],
            quick=name == "res_bbox_short")
    # Label folders for anchors --labels.
    for name in ("nan", "class_huge", "binary", "many_boxes"):
        add("dataset", f"anchors --labels {name}", ["anchors", "--labels", P("lab", name), "--seed", "1", "-n", "2"])
    # compare --reference with broken or escaping manifests.
    ref_src = os.path.join(mini, "infer_unfused")
    man = json.load(open(os.path.join(ref_src, "manifest.json")))

    def ref_dir(name, manifest, drop=None, truncate=None):
        d = P("ref", name)
        os.makedirs(d, exist_ok=True)
        for f in os.listdir(ref_src):
            if f != "manifest.json" and f != drop:
                src = os.path.join(ref_src, f)
                dst = os.path.join(d, f)
                if f == truncate:
                    write(dst, open(src, "rb").read()[:100])
                else:
                    os.symlink(src, dst)
        write(os.path.join(d, "manifest.json"), manifest if isinstance(manifest, str) else json.dumps(manifest))
        return d
    m = json.loads(json.dumps(man)); m["input"]["file"] = "../../../../../etc/passwd"
    refs = {"dotdot_input": ref_dir("dotdot_input", m)}
    m = json.loads(json.dumps(man)); m["layers"][0]["file"] = "/etc/passwd"
    refs["abs_layer"] = ref_dir("abs_layer", m)
    m = json.loads(json.dumps(man)); m["input"]["c"] = 10**9; m["input"]["h"] = 10**9
    refs["input_huge"] = ref_dir("input_huge", m)
    m = json.loads(json.dumps(man)); m["layers"][0]["c"] = 2**62
    refs["layer_huge"] = ref_dir("layer_huge", m)
    m = json.loads(json.dumps(man)); m["net_w"] = 99999999999
    refs["net_w_huge"] = ref_dir("net_w_huge", m)
    refs["not_json"] = ref_dir("not_json", "{{{")
    refs["missing_layer_file"] = ref_dir("missing_layer_file", man, drop="layer_000_convolutional.bin")
    refs["truncated_input"] = ref_dir("truncated_input", man, truncate="input.bin")
    refs["truncated_layer"] = ref_dir("truncated_layer", man, truncate="layer_003_convolutional.bin")
    m = json.loads(json.dumps(man)); m["layers"] = m["layers"] * 50
    refs["too_many_layers"] = ref_dir("too_many_layers", m)
    for name, d in refs.items():
        add("dataset", f"compare reference {name}", ["compare", cfg, wts, "--reference", d],
            quick=name in ("dotdot_input", "input_huge"))
    add("dataset", "compare reference missing", ["compare", cfg, wts, "--reference", P("ref", "nope")])

    # --- cli family: absurd numbers -----------------------------------------------------------------------
    huge = ["0", "-1", "99999999999", "1000000000", "18446744073709551616", "nan", "abc", "1e9"]
    for v in huge:
        add("cli", f"detect --batch {v}", ["detect", cfg, wts, img, "--batch", v, "--quiet"], quick=v == "1000000000")
        add("cli", f"eval --batch {v}", ["eval", cfg, wts, "--data", good_data, "--batch", v])
        add("cli", f"eval --points {v}", ["eval", cfg, wts, "--data", good_data, "--points", v], quick=v == "99999999999")
        add("cli", f"anchors --restarts {v}", ["anchors", "--data", good_list, "--restarts", v, "--seed", "1", "-n", "2"],
            quick=v == "99999999999")
        add("cli", f"anchors -n {v}", ["anchors", "--data", good_list, "-n", v, "--seed", "1"])
        add("cli", f"augment --batch {v}", ["augment", "--data", good_data, "--batch", v, "--out", P("out", "ab")])
        add("cli", f"augment --batches {v}", ["augment", "--data", good_data, "--batches", v, "--out", P("out", "abs")])
        add("cli", f"augment --workers {v}", ["augment", "--data", good_data, "--workers", v, "--out", P("out", "aw")])
        add("cli", f"train --workers {v}", ["train", tcfg, "--data", good_data, "--workers", v, "--max-batches", "1",
                                            "--out", P("out", "tw_" + v), "--quiet"])
        add("cli", f"train --checkpoint-every {v}", ["train", tcfg, "--data", good_data, "--checkpoint-every", v,
                                                     "--max-batches", "1", "--out", P("out", "tc_" + v), "--quiet"])
        add("cli", f"partial K={v}", ["partial", cfg, wts, P("out", f"part_{v}.weights"), v])
    for v in ["nan", "inf", "-1", "2", "-inf", "1e400"]:
        add("cli", f"detect --thresh {v}", ["detect", cfg, wts, img, "--thresh", v, "--quiet"], quick=v == "nan")
        add("cli", f"detect --nms {v}", ["detect", cfg, wts, img, "--nms", v, "--quiet"])
        add("cli", f"eval --iou-thresh {v}", ["eval", cfg, wts, "--data", good_data, "--iou-thresh", v])
        add("cli", f"eval --thresh {v}", ["eval", cfg, wts, "--data", good_data, "--thresh", v])
        add("cli", f"compare --atol {v}", ["compare", cfg, wts, "--reference", ref_src, "--atol", v],
            valid=v in ("2", "inf", "1e400"))
    sizes = ["100000x100000", "0x0", "99999999999x416", "416", "x", "-416x-416", "65536x65536", "31x31", "1x1",
             "20000x20000"]
    for s in sizes:
        ok = s in ("416", "31x31", "1x1")
        add("cli", f"info --size {s}", ["info", cfg, "--size", s], quick=s in ("100000x100000", "99999999999x416"),
            valid=ok)
        add("cli", f"info --forward --size {s}", ["info", "--forward", cfg, "--size", s], quick=s == "20000x20000",
            valid=ok)
        add("cli", f"anchors --size {s}", ["anchors", "--data", good_list, "--size", s, "--seed", "1", "-n", "2"],
            valid=ok)
        add("cli", f"augment --size {s}", ["augment", "--data", good_data, "--size", s, "--out", P("out", "as")],
            quick=s == "100000x100000")
    for v in ["100000", "99999999999", "0"]:
        add("cli", f"augment --size {v}", ["augment", "--data", good_data, "--size", v, "--out", P("out", "as2")])
    # A synthetic dataset with many boxes and many clusters for anchors.
    many = P("many")
    os.makedirs(many, exist_ok=True)
    write(os.path.join(many, "a.txt"), "".join(f"0 0.5 0.5 {((i * 37) % 997 + 1) / 1000:.4f} {((i * 91) % 991 + 1) / 1000:.4f}\n"
                                               for i in range(200000)))
    add("cli", "anchors 200k boxes -n 1000000000", ["anchors", "--labels", many, "-n", "1000000000", "--seed", "1"],
        quick=True)
    add("cli", "anchors 200k boxes -n 100000 restarts 1000", ["anchors", "--labels", many, "-n", "100000",
                                                              "--restarts", "1000", "--seed", "1"])
    add("cli", "anchors --seed huge", ["anchors", "--data", good_list, "--seed", "99999999999999999999999"])
    add("cli", "train --max-batches huge", ["train", tcfg, "--data", good_data, "--max-batches", "99999999999999999999",
                                            "--out", P("out", "tmb")])
    add("cli", "train --keep huge", ["train", tcfg, "--data", good_data, "--keep", "99999999999999999999",
                                     "--out", P("out", "tk")])
    add("cli", "train --map-every 0", ["train", tcfg, "--data", good_data, "--map", "--map-every", "0",
                                       "--max-batches", "1", "--out", P("out", "tme"), "--quiet"])
    add("cli", "train --seed huge", ["train", tcfg, "--data", good_data, "--seed", "99999999999999999999999",
                                     "--max-batches", "1", "--out", P("out", "tsh")])
    add("cli", "detect --device cuda:99", ["detect", cfg, wts, img, "--device", "cuda:99"])
    add("cli", "detect --device bogus", ["detect", cfg, wts, img, "--device", "bogus"])
    add("cli", "detect --winograd bogus", ["detect", cfg, wts, img, "--winograd", "f9"])
    add("cli", "detect --names missing", ["detect", cfg, wts, img, "--names", "/nonexistent.names"])
    add("cli", "detect --names binary", ["detect", cfg, wts, img, "--names", write(P("bin.names"), os.urandom(100))])
    add("cli", "partial K beyond layers", ["partial", cfg, wts, P("out", "pk.weights"), "1000"])
    add("cli", "convert --output bad ext", ["convert", cfg, wts, "-o", P("out", "x.bin")])
    add("cli", "unknown model name", ["detect", "no-such-model", img])
    return cases
