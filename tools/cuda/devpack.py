#!/usr/bin/env python3
"""Packs what tools/cuda/device-check.sh needs into the device machine's 64 MiB transfer, and unpacks it there
byte for byte. Standard library only (the device's python3 has it; nothing can be installed there).

Two reductions, both undone exactly and checked by sha256 on unpacking:
* A Darknet reference directory's route, maxpool and upsample files are left out when they can be rebuilt
  exactly from the files of the layers they read (a route copies slices of earlier outputs, an upsample repeats
  cells, a maxpool takes maxima: none of them rounds); `derive` keeps a file unless its rebuild is byte-equal.
* Large files are stored compressed (lzma); float32 files (.bin, .weights) first have their bytes regrouped by
  position within the float (all first bytes, then all second bytes, ...), which lzma compresses ~15 % better.

  devpack.py derive SRC DST       copy reference dir SRC to DST without its rebuildable layer files
  devpack.py compress DIR         compress DIR's large files in place, DIR/devpack.json indexes all of DIR
  devpack.py unpack SRC DST       copy SRC to DST, decompress, rebuild the derived files, check every sha256 (exit 1)
"""
import array
import hashlib
import json
import lzma
import os
import shutil
import sys

DERIVED_INDEX = "derived.json"
INDEX = "devpack.json"
SUFFIX = ".xz4"
MIN_COMPRESS = 64 * 1024


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def read(path):
    with open(path, "rb") as f:
        return f.read()


def write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def floats(data):
    a = array.array("f")
    a.frombytes(data)
    return a


def route_bytes(layer, by_index, d):
    """A route's output: for each input layer, `input_size/groups` floats from `group_id*input_size/groups`."""
    groups, gid = layer.get("groups", 1), layer.get("group_id", 0)
    out = bytearray()
    for i in layer["layers"]:
        data = read(os.path.join(d, by_index[i]["file"]))
        part = len(data) // groups
        out += data[gid * part:(gid + 1) * part]
    return bytes(out)


def maxpool_bytes(layer, by_index, d):
    """forward_maxpool_layer (CPU, not maxpool_depth): the maximum over each size x size window at offset
    -pad/2, outside cells skipped, from -FLT_MAX. Exact: a maximum rounds nothing."""
    prev = by_index[layer["index"] - 1]
    x = floats(read(os.path.join(d, prev["file"])))
    c, h, w = layer["in_c"], layer["in_h"], layer["in_w"]
    oh, ow, size, stride = layer["h"], layer["w"], layer["size"], layer["stride"]
    off = -(layer["pad"] // 2)
    out = array.array("f", bytes(4 * c * oh * ow))
    o = 0
    for k in range(c):
        base = k * h * w
        for i in range(oh):
            rows = [r for r in range(off + i * stride, off + i * stride + size) if 0 <= r < h]
            for j in range(ow):
                cols = [q for q in range(off + j * stride, off + j * stride + size) if 0 <= q < w]
                out[o] = max([x[base + r * w + q] for r in rows for q in cols], default=-3.4028234663852886e38)
                o += 1
    return out.tobytes()


def upsample_bytes(layer, by_index, d):
    """upsample_cpu with scale 1: every input cell repeated stride x stride times (a copy)."""
    prev = by_index[layer["index"] - 1]
    x = floats(read(os.path.join(d, prev["file"])))
    c, h, w = prev["c"], prev["h"], prev["w"]
    stride = layer["w"] // w
    out = array.array("f")
    for k in range(c):
        for r in range(h * stride):
            row = x[k * h * w + (r // stride) * w:k * h * w + (r // stride) * w + w]
            out.extend(v for v in row for _ in range(stride))
    return out.tobytes()


# Layer types whose output is an exact function of earlier outputs in the same directory.
DERIVED = {"route": route_bytes, "maxpool": maxpool_bytes, "upsample": upsample_bytes}


def derived_bytes(layer, by_index, d):
    return DERIVED[layer["type"]](layer, by_index, d)


def manifest_layers(d):
    with open(os.path.join(d, "manifest.json")) as f:
        return json.load(f)["layers"]


def derive(src, dst):
    layers = manifest_layers(src)
    by_index = {l["index"]: l for l in layers}
    omitted = []
    for l in layers:
        if l["type"] not in DERIVED or any(i not in by_index for i in l.get("layers", [l["index"] - 1])):
            continue
        if l["type"] == "maxpool" and not all(k in l for k in ("in_c", "in_h", "in_w", "size", "stride", "pad")):
            continue
        orig = read(os.path.join(src, l["file"]))
        if derived_bytes(l, by_index, src) == orig:
            omitted.append({"file": l["file"], "sha256": sha256(orig)})
    skip = {o["file"] for o in omitted}
    tmp = dst + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, ignore=lambda _d, names: [n for n in names if n in skip])
    with open(os.path.join(tmp, DERIVED_INDEX), "w") as f:
        json.dump({"omitted": omitted}, f, indent=1)
    shutil.rmtree(dst, ignore_errors=True)
    os.rename(tmp, dst)
    mib = sum(os.path.getsize(os.path.join(src, o["file"])) for o in omitted) / 2**20
    print(f"devpack: {dst}: {len(omitted)} rebuildable layer files left out ({mib:.1f} MiB)")


def rebuild_derived(d):
    """Rebuilds the files listed in d/derived.json; returns the number of sha256 mismatches."""
    with open(os.path.join(d, DERIVED_INDEX)) as f:
        want = {o["file"]: o["sha256"] for o in json.load(f)["omitted"]}
    layers = manifest_layers(d)
    by_index = {l["index"]: l for l in layers}
    bad = 0
    for l in layers:  # network order: a derived layer finds its inputs already rebuilt
        if l["file"] not in want:
            continue
        try:
            data = derived_bytes(l, by_index, d)
        except (OSError, KeyError, IndexError, ValueError) as e:
            print(f"devpack: {d}/{l['file']}: cannot rebuild ({e})", file=sys.stderr)
            bad += 1
            continue
        if sha256(data) != want[l["file"]]:
            print(f"devpack: {d}/{l['file']}: rebuilt bytes differ from the reference's sha256", file=sys.stderr)
            bad += 1
            continue
        write_atomic(os.path.join(d, l["file"]), data)
    return bad


def is_float32(name, size):
    return size % 4 == 0 and name.endswith((".bin", ".weights"))


def shuffle(data):
    return b"".join(data[i::4] for i in range(4))


def unshuffle(data):
    n = len(data) // 4
    out = bytearray(len(data))
    for i in range(4):
        out[i::4] = data[i * n:(i + 1) * n]
    return bytes(out)


def compress(d):
    index = {}
    for root, _dirs, files in os.walk(d):
        for name in sorted(files):
            path = os.path.join(root, name)
            rel = os.path.relpath(path, d)
            if rel == INDEX:
                continue
            data = read(path)
            entry = {"sha256": sha256(data), "size": len(data), "exec": os.access(path, os.X_OK)}
            if len(data) >= MIN_COMPRESS and not name.endswith(SUFFIX):
                shuffled = is_float32(name, len(data))
                packed = lzma.compress(shuffle(data) if shuffled else data, preset=6)
                if len(packed) < len(data):
                    write_atomic(path + SUFFIX, packed)
                    os.remove(path)
                    entry.update(stored=rel + SUFFIX, shuffled=shuffled)
            index[rel] = entry
    with open(os.path.join(d, INDEX), "w") as f:
        json.dump(index, f, indent=1, sort_keys=True)
    raw = sum(e["size"] for e in index.values()) / 2**20
    print(f"devpack: {d}: {len(index)} files, {raw:.1f} MiB -> {du(d) / 2**20:.1f} MiB")


def du(d):
    return sum(os.path.getsize(os.path.join(r, n)) for r, _, fs in os.walk(d) for n in fs)


def unpack(src, dst):
    with open(os.path.join(src, INDEX)) as f:
        index = json.load(f)
    bad = 0
    for rel, e in sorted(index.items()):
        data = read(os.path.join(src, e.get("stored", rel)))
        if "stored" in e:
            data = lzma.decompress(data)
            if e["shuffled"]:
                data = unshuffle(data)
        if sha256(data) != e["sha256"]:
            print(f"devpack: {rel}: sha256 mismatch after unpacking", file=sys.stderr)
            bad += 1
            continue
        path = os.path.join(dst, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_atomic(path, data)
        if e.get("exec"):
            os.chmod(path, 0o755)
    rebuilt = 0
    for root, _dirs, files in os.walk(dst):
        if DERIVED_INDEX in files:
            bad += rebuild_derived(root)
            rebuilt += 1
    print(f"devpack: {dst}: {len(index)} files unpacked, derived files rebuilt in {rebuilt} reference dirs, {bad} mismatches")
    return 1 if bad else 0


def main(argv):
    if len(argv) == 3 and argv[0] == "derive":
        derive(argv[1], argv[2])
        return 0
    if len(argv) == 2 and argv[0] == "compress":
        compress(argv[1])
        return 0
    if len(argv) == 3 and argv[0] == "unpack":
        return unpack(argv[1], argv[2])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
