"""Helpers of ``scripts/device/prepare.sh`` (offline GPU hosts): resized Kvasir-SEG, wheel
closure check, transfer size, and the host's package set for dry runs.

    python -m kvasir_ml.gpucheck.offline_host resize SRC DST [--long-side 512] [--quality 75]
    python -m kvasir_ml.gpucheck.offline_host check-wheels WHEELS_DIR HOST_PACKAGES NOT_SHIPPED [--python 3.12]
    python -m kvasir_ml.gpucheck.offline_host transfer-size REPO [PATH ...] [--limit-mib 64]
    python -m kvasir_ml.gpucheck.offline_host host-modules WHEELS_DIR HOST_PACKAGES > ALLOWED

``resize`` rescales the boxes with the images (a box file that does not match its images
would otherwise keep boxes at the wrong scale with only size warnings): the JSON's
``width``/``height`` must equal the original image's size, else it stops with the file named.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

from PIL import Image


def resize_kvasir_seg(src: Path, dst: Path, long_side_px: int = 512, quality: int = 75) -> dict:
    """Copy ``src/images/*.jpg`` to ``dst/images`` with the long side at most ``long_side_px``
    (JPEG ``quality``) and write ``dst/kavsir_bboxes.json`` with every box scaled to match.

    Returns:
        ``{"n_images", "n_boxes", "mib"}``.

    Raises:
        ValueError: a box entry's width/height differs from its image, or an image has no entry.
    """
    boxes = json.loads((src / "kavsir_bboxes.json").read_text())
    (dst / "images").mkdir(parents=True, exist_ok=True)
    out: dict[str, dict] = {}
    n_boxes = 0
    for path in sorted((src / "images").glob("*.jpg")):
        entry = boxes.get(path.stem)
        if entry is None:
            raise ValueError(f"{src / 'kavsir_bboxes.json'}: no entry for {path.name}")
        with Image.open(path) as img:
            width, height = img.size
            if (int(entry["width"]), int(entry["height"])) != (width, height):
                raise ValueError(f"{src / 'kavsir_bboxes.json'}: {path.stem} says {entry['width']}x{entry['height']} "
                                 f"but {path} is {width}x{height}")
            scale = min(1.0, long_side_px / max(width, height))
            new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
            small = img.convert("RGB").resize((new_w, new_h), Image.Resampling.LANCZOS) if scale < 1 else img.convert("RGB")
            small.save(dst / "images" / path.name, quality=quality)
        sx, sy = new_w / width, new_h / height
        scaled = [{**b, "xmin": b["xmin"] * sx, "xmax": b["xmax"] * sx, "ymin": b["ymin"] * sy, "ymax": b["ymax"] * sy}
                  for b in entry["bbox"]]
        n_boxes += len(scaled)
        out[path.stem] = {**entry, "width": new_w, "height": new_h, "bbox": scaled}
    (dst / "kavsir_bboxes.json").write_text(json.dumps(out))
    mib = sum(f.stat().st_size for f in dst.rglob("*") if f.is_file()) / 2**20
    return {"n_images": len(out), "n_boxes": n_boxes, "mib": round(mib, 2)}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _names(path: Path) -> dict[str, str]:
    """Distribution names (normalised) -> the comment after them, from a list file."""
    names = {}
    for line in path.read_text().splitlines():
        text, _, comment = line.partition("#")
        if text.strip():
            names[_norm(re.split(r"[=<>!~ ]", text.strip())[0])] = comment.strip()
    return names


def _wheel_metadata(wheel: Path) -> tuple[str, list[str], list[str]]:
    """(distribution name, Requires-Dist lines, top-level modules) of a wheel."""
    with zipfile.ZipFile(wheel) as zf:
        meta_name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        meta = zf.read(meta_name).decode()
        top: set[str] = set()
        for n in zf.namelist():
            first = n.split("/")[0]
            if first.endswith((".dist-info", ".data")):
                continue
            top.add(first[:-3] if first.endswith(".py") else first.split(".")[0])
    name = re.search(r"^Name: (.+)$", meta, re.M).group(1).strip()  # type: ignore[union-attr]
    requires = [r.strip() for r in re.findall(r"^Requires-Dist: (.+)$", meta, re.M)]
    return name, requires, sorted(top)


def check_wheels(wheels_dir: Path, host_packages: Path, not_shipped: Path, python: str = "3.12") -> list[str]:
    """Every requirement of every wheel (markers evaluated for CPython ``python`` on Linux
    x86_64, no extras) must be a wheel here, on the host, or listed as deliberately not shipped.

    Returns:
        The unmet requirements, one line each (empty: the set is closed).
    """
    from packaging.requirements import Requirement

    env = {"python_version": python, "python_full_version": f"{python}.0", "sys_platform": "linux",
           "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython",
           "platform_python_implementation": "CPython", "os_name": "posix", "extra": ""}
    metadata = {w: _wheel_metadata(w) for w in sorted(wheels_dir.glob("*.whl"))}  # each wheel opened once
    wheels = {_norm(name): w for w, (name, _, _) in metadata.items()}
    host, skipped = _names(host_packages), _names(not_shipped)
    unmet = []
    for name, wheel in wheels.items():
        for line in metadata[wheel][1]:
            req = Requirement(line)
            if req.marker is not None and not req.marker.evaluate(env):
                continue
            dep = _norm(req.name)
            if dep not in wheels and dep not in host and dep not in skipped:
                unmet.append(f"{wheel.name} needs {line}: not in {wheels_dir}, {host_packages.name} or {not_shipped.name}")
    return unmet


def host_modules(wheels_dir: Path, host_packages: Path) -> list[str]:
    """Top-level modules importable on the host once the wheels are installed: those of the
    host's distributions and (as installed HERE) everything they depend on, plus the wheels'.
    Distributions of the list that are not installed here are skipped with a note on stderr."""
    import importlib.metadata as md

    from packaging.requirements import Requirement

    todo, seen = list(_names(host_packages)), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            print(f"host package {name} is not installed here: its modules are not simulated", file=sys.stderr)
            continue
        for line in requires:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(_norm(req.name))
    modules = {mod for mod, dists in md.packages_distributions().items() if any(_norm(d) in seen for d in dists)}
    for wheel in wheels_dir.glob("*.whl"):
        modules.update(_wheel_metadata(wheel)[2])
    return sorted(modules)


def transfer_size(repo: Path, extra: list[Path]) -> dict:
    """Bytes that travel to the device: tracked + untracked-not-ignored files, plus ``extra``."""
    listed = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=True).stdout.decode().split("\0")
    tree = sum((repo / f).stat().st_size for f in listed if f and (repo / f).is_file())
    parts = {"tree": tree}
    for path in extra:
        parts[str(path)] = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0
    return {"mib": {k: round(v / 2**20, 2) for k, v in parts.items()}, "total_mib": round(sum(parts.values()) / 2**20, 2)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("resize")
    r.add_argument("src", type=Path)
    r.add_argument("dst", type=Path)
    r.add_argument("--long-side", type=int, default=512)
    r.add_argument("--quality", type=int, default=75)
    c = sub.add_parser("check-wheels")
    c.add_argument("wheels", type=Path)
    c.add_argument("host", type=Path)
    c.add_argument("not_shipped", type=Path)
    c.add_argument("--python", default="3.12")
    t = sub.add_parser("transfer-size")
    t.add_argument("repo", type=Path)
    t.add_argument("extra", type=Path, nargs="*")
    t.add_argument("--limit-mib", type=float, default=64.0)
    h = sub.add_parser("host-modules")
    h.add_argument("wheels", type=Path)
    h.add_argument("modules", type=Path)
    args = p.parse_args(argv)
    if args.cmd == "resize":
        print(json.dumps(resize_kvasir_seg(args.src, args.dst, args.long_side, args.quality)))
    elif args.cmd == "check-wheels":
        unmet = check_wheels(args.wheels, args.host, args.not_shipped, args.python)
        print("\n".join(unmet) if unmet else f"wheel set closed: {len(list(args.wheels.glob('*.whl')))} wheels")
        return 1 if unmet else 0
    elif args.cmd == "transfer-size":
        size = transfer_size(args.repo, args.extra)
        print(json.dumps(size))
        if size["total_mib"] > args.limit_mib:
            print(f"too large: {size['total_mib']} MiB > {args.limit_mib} MiB", file=sys.stderr)
            return 1
    else:
        print("\n".join(host_modules(args.wheels, args.modules)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
