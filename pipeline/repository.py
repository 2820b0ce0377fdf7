"""Artist git repositories: which addresses and refs are fetched, how (shallow, no symlinks, size-capped,
time-limited), and how an address is shown (never with its credential)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from pipeline.errors import BadInput, StudioError
from pipeline.settings import Settings

# A branch or tag name as `git check-ref-format` allows it, and never an option: a stored `ref` of
# `--upload-pack=...` would otherwise run a command on the next fetch.
_REF = re.compile(r"^(?![-./])(?!.*\.\.)(?!.*//)(?!.*@\{)[\w./-]{1,200}(?<![./])(?<!\.lock)$")
_SCP_LIKE = re.compile(r"^git@[\w.-]+:[\w./~-]+$")  # git@host:owner/repo.git
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


class RepositoryUnavailable(StudioError):
    """The artist's repository is being fetched by another run for too long, or git took too long (503)."""

    status_code = 503


def mask_url(url: str | None) -> str | None:
    """The address with any user or token taken out (`https://***@host/...`), for answers, pages and logs."""
    if url is None:
        return None
    return _USERINFO.sub("***@", url)


def allowed_schemes(settings: Settings) -> tuple[str, ...]:
    return ("https",) + (("ssh",) if settings.repository_allow_ssh else ()) + (
        ("file",) if settings.repository_allow_file else ())


def check_repository_url(url: str, settings: Settings) -> None:
    """Only https (ssh and git@host: by setting, file:// for tests by setting); every other transport refused."""
    schemes = allowed_schemes(settings)
    if _SCP_LIKE.match(url):
        if "ssh" in schemes:
            return
        raise BadInput("git@host: repository addresses are not allowed here (REPOSITORY_ALLOW_SSH is off); "
                       "use an https:// address", field=["repository"])
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    if scheme not in schemes or any(c.isspace() for c in url) or url.startswith("-"):
        shown = f"{scheme}://" if scheme else "a local path or other transport"
        raise BadInput(f"Repository addresses must be {' or '.join(s + '://' for s in schemes)}; "
                       f"{shown} is not fetched", field=["repository"])


def check_ref(ref: str | None) -> None:
    if ref is not None and not _REF.match(ref):
        raise BadInput("The repository's branch or tag name is not one git allows", field=["ref"])


def git_base(settings: Settings) -> list[str]:
    """git with every transport off but the allowed ones (also for redirects and submodules), and no symlinks."""
    args = ["git", "-c", "protocol.allow=never", "-c", "core.symlinks=false"]
    for scheme in allowed_schemes(settings):
        args += ["-c", f"protocol.{scheme}.allow=always"]
    return args


def tree_bytes(path: Path) -> int:
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                continue  # git removed it while we counted
    return total


def run_git(args: list[str], *, watch: Path, settings: Settings) -> None:
    """Run git while watching the size of `watch`: over the cap it is stopped and the folder removed."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_PROTOCOL_FROM_USER": "0", "GIT_ASKPASS": "true"}
    deadline = time.monotonic() + settings.repository_timeout_seconds
    with tempfile.TemporaryFile() as errors:  # a file, not a pipe: git's messages can never fill it and stall git
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors, env=env)
        while True:
            try:
                proc.wait(timeout=0.25)
                break
            except subprocess.TimeoutExpired:
                pass
            if watch.exists() and tree_bytes(watch) > settings.repository_max_bytes:
                _stop(proc)
                raise _too_large(watch, settings)
            if time.monotonic() > deadline:
                _stop(proc)
                raise RepositoryUnavailable(f"Fetching the artist's repository took longer than "
                                            f"{settings.repository_timeout_seconds:g} s; try again later")
        errors.seek(0)
        stderr = errors.read(64 * 1024).decode(errors="replace")
    if proc.returncode != 0:
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        reason = mask_url(lines[-1]) if lines else "git failed"
        raise BadInput(f"Could not fetch the artist's repository: {reason}")
    if tree_bytes(watch) > settings.repository_max_bytes:
        raise _too_large(watch, settings)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait()


def _too_large(watch: Path, settings: Settings) -> BadInput:
    shutil.rmtree(watch, ignore_errors=True)  # a partial or oversized clone is never used
    return BadInput(f"The artist's repository is larger than the {settings.repository_max_bytes // 2**20} MB "
                    "limit (REPOSITORY_MAX_BYTES)", field=["repository"])


def clone_or_update(url: str, ref: str | None, dest: Path, settings: Settings) -> None:
    """A shallow clone of `ref` into `dest`, or a shallow fetch and hard reset of the clone already there."""
    check_repository_url(url, settings)
    check_ref(ref)
    git = git_base(settings)
    if (dest / ".git").exists():
        run_git([*git, "-C", str(dest), "fetch", "--depth", "1", "--no-tags", "origin", "--", ref or "HEAD"],
                watch=dest, settings=settings)
        run_git([*git, "-C", str(dest), "reset", "-q", "--hard", "FETCH_HEAD"], watch=dest, settings=settings)
        return
    tmp = dest.with_name(dest.name + ".cloning")
    shutil.rmtree(tmp, ignore_errors=True)
    args = [*git, "clone", "-q", "--depth", "1", "--single-branch", "--no-tags", "--config", "core.symlinks=false"]
    if ref:
        args.append(f"--branch={ref}")
    try:
        run_git([*args, "--", url, str(tmp)], watch=tmp, settings=settings)
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
