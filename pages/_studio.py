"""What the studio's pages do, without Streamlit: the shared context, requests, runs, estimates.

Every run goes through `taskqueue.trigger.trigger()` and the run store, exactly as the API's do.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from pipeline.artists import Missing, Viewer, check_readiness, list_artists, list_songs
from pipeline.errors import BadInput, StudioError
from pipeline.estimate import estimate_request
from pipeline.models import CAPTION_LENGTHS, Artist, Song
from pipeline.request import CreateContentRequest
from pipeline.settings import Settings
from taskqueue.storage import LocalStorage, Storage, make_storage
from taskqueue.store import COMPLETED, Run, RunStore

if TYPE_CHECKING:
    from api.context import UrlSigner
    from taskqueue.trigger import EnqueueMany

MAX_BATCH = 30
MAX_URL_LENGTH = 2048
FALLBACK_SECONDS_PER_VIDEO = 30.0  # when neither past runs nor the provider model can say


@dataclass
class Studio:
    """The studio as one page sees it: settings, the run store, the queue, and who the UI acts for.

    `open_studio` makes the process's one (acting as the local admin); `for_viewer` the copy a session uses."""

    settings: Settings
    store: RunStore
    owner: str  # the account the UI acts for: the signed-in user's, or (no sign-in) the install key's
    enqueue: EnqueueMany
    cancel: Callable[[RunStore, str, str | None], Run | None]
    viewer: Viewer | None = None  # what the owner may see; None: the local admin
    email: str | None = None  # the signed-in user's; None without sign-in

    @cached_property
    def signer(self) -> UrlSigner:
        """Signs the pages' download links (the secret read once per page run, not once per link)."""
        from api.context import UrlSigner

        return UrlSigner.for_settings(self.settings)

    def for_viewer(self, viewer: Viewer, email: str | None) -> Studio:
        return replace(self, owner=viewer.account, viewer=viewer, email=email)

    @property
    def run_scope(self) -> str | None:
        """Whose runs the pages show and may cancel: the owner's; every account's (None) for a signed-in admin.
        The local admin of a studio without sign-in is anyone who reaches the port: it sees its own runs only."""
        signed_in_admin = self.viewer is not None and self.viewer.admin and self.email is not None
        return None if signed_in_admin else self.owner


def open_studio(settings: Settings) -> Studio:
    """The store, the install's own account (its key made on first use, as `serve` does) and the real queue."""
    from taskqueue.keys import ensure_local_key
    from taskqueue.tasks import cancel_run, enqueue_runs

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = RunStore.for_settings(settings)
    _key, account = ensure_local_key(settings, store)
    return Studio(settings=settings, store=store, owner=account, enqueue=enqueue_runs, cancel=cancel_run,
                  viewer=Viewer(account, admin=True))


# --- artists ------------------------------------------------------------------------------------


def workspace_copy(artist: Artist, settings: Settings) -> Artist:
    """A repository artist's files live in its clone (when fetched); others in their own folder."""
    if not artist.repository:
        return artist
    clone = settings.data_dir / "workspaces" / artist.account_id
    if (clone / ".git").exists():
        return replace(artist, root=clone)
    return artist


def artists_with_files(settings: Settings, viewer: Viewer | None = None) -> list[Artist]:
    """The artists `viewer` may use (its own and the shared ones), with their files."""
    return [workspace_copy(a, settings) for a in list_artists(settings, viewer)]


def artist_songs(artist: Artist) -> list[Song]:
    return list_songs(artist)


def required_missing(artist: Artist, *, has_song_urls: bool, has_images: bool) -> list[Missing]:
    return [m for m in check_readiness(artist, has_song_urls=has_song_urls, has_images=has_images)
            if m.severity == "required"]


# --- the create form ----------------------------------------------------------------------------


@dataclass
class CreateChoices:
    """What the Create page collected, before it becomes the API's request body."""

    artist_account_id: str
    template: str | None = None
    caption_length: str = "none"
    lyrics: str | None = None  # None: the template's default
    aspect_ratio: str = "9:16"
    lipsync: bool = False
    upscale: bool = False
    batch: int = 1
    song_slugs: list[str] = field(default_factory=list)
    song_urls: list[str] = field(default_factory=list)
    image_urls: list[str] = field(default_factory=list)
    image_paths: list[str] = field(default_factory=list)  # uploads, saved under DATA_DIR/uploads


def split_lines(text: str) -> list[str]:
    """One entry per non-empty line (commas also separate, since people paste lists)."""
    return [part.strip() for line in (text or "").splitlines() for part in line.split(",") if part.strip()]


def url_problems(urls: list[str], what: str) -> list[str]:
    """A message per entry that is not a public http(s) URL."""
    problems = []
    for url in urls:
        lowered = url.lower()
        if not lowered.startswith(("http://", "https://")) or len(url) < 10 or " " in url:
            problems.append(f"“{url[:80]}” is not a web address; {what} must start with http:// or https://.")
        elif len(url) > MAX_URL_LENGTH:
            problems.append(f"A {what[:-1] if what.endswith('s') else what} address is longer than "
                            f"{MAX_URL_LENGTH} characters.")
    return problems


def form_problems(choices: CreateChoices, artist: Artist | None, known_slugs: list[str]) -> dict[str, list[str]]:
    """Problems per control ("artist", "songs", "song_urls", "image_urls", "batch", "caption_length"), before submit."""
    problems: dict[str, list[str]] = {}

    def add(name: str, message: str) -> None:
        problems.setdefault(name, []).append(message)

    if artist is None:
        add("artist", "Choose an artist (or add one on the Artists page).")
    if choices.caption_length not in CAPTION_LENGTHS:
        add("caption_length", f"Caption length must be one of {', '.join(CAPTION_LENGTHS)}.")
    if not 1 <= choices.batch <= MAX_BATCH:
        add("batch", f"Make between 1 and {MAX_BATCH} videos at a time.")
    for message in url_problems(choices.song_urls, "song URLs"):
        add("song_urls", message)
    for message in url_problems(choices.image_urls, "image URLs"):
        add("image_urls", message)
    unknown = [s for s in choices.song_slugs if s not in known_slugs]
    if unknown:
        add("songs", f"Not this artist's songs: {', '.join(unknown)}.")
    if len(choices.song_slugs) + len(choices.song_urls) > 50:
        add("song_urls", "Use at most 50 songs in one request.")
    if len(choices.image_urls) + len(choices.image_paths) > 20:
        add("image_urls", "Use at most 20 images in one request.")
    if artist is not None:
        # only usable addresses can stand in for the artist's own files
        good_song_urls = [u for u in choices.song_urls if not url_problems([u], "song URLs")]
        good_image_urls = [u for u in choices.image_urls if not url_problems([u], "image URLs")]
        for missing in required_missing(artist, has_song_urls=bool(good_song_urls),
                                        has_images=bool(good_image_urls or choices.image_paths)):
            add("songs" if missing.file.startswith("songs") else "images", missing.fix)
    return problems


def readable_validation(exc: ValidationError) -> str:
    messages = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()))
        messages.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
    return "; ".join(messages)


def build_request(choices: CreateChoices) -> CreateContentRequest:
    """The API's request body. Uploaded images are local paths the API's URL check would refuse, so the
    body is validated with the URLs only and the uploads are added after (the worker accepts local paths
    only from the account's folder of DATA_DIR/uploads)."""
    body = {
        "artist_account_id": choices.artist_account_id,
        "template": choices.template,
        "lipsync": choices.lipsync,
        "caption_length": choices.caption_length,
        "lyrics": choices.lyrics,
        "aspect_ratio": choices.aspect_ratio,
        "upscale": choices.upscale,
        "batch": choices.batch,
        "songs": [*choices.song_slugs, *choices.song_urls] or None,
        "images": choices.image_urls or None,
    }
    try:
        request = CreateContentRequest.model_validate(body)
    except ValidationError as exc:
        raise BadInput(readable_validation(exc)) from None
    if choices.image_paths:
        request = request.model_copy(update={"images": [*choices.image_paths, *(request.images or [])]})
    return request


def start_runs(studio: Studio, request: CreateContentRequest) -> dict:
    """The same trigger as POST /api/content/create; answers with its response (runIds...)."""
    from taskqueue.trigger import trigger

    return trigger(request, studio.owner, settings=studio.settings, store=studio.store, enqueue=studio.enqueue,
                   viewer=studio.viewer)


def choices_from_run(run: Run) -> CreateChoices:
    """The choices a run was made with (for re-run): one video, same settings, a new seed."""
    req = run.request or {}
    songs = list(req.get("songs") or [])
    images = list(req.get("images") or [])
    return CreateChoices(
        artist_account_id=run.artist_account_id,
        template=req.get("template"),
        caption_length=req.get("caption_length") or "none",
        lyrics=req.get("lyrics"),
        aspect_ratio=req.get("aspect_ratio") or "9:16",
        lipsync=bool(req.get("lipsync")),
        upscale=bool(req.get("upscale")),
        batch=1,
        song_slugs=[s for s in songs if "://" not in s],
        song_urls=[s for s in songs if "://" in s],
        image_urls=[i for i in images if "://" in i],
        image_paths=[i for i in images if "://" not in i],
    )


def rerun(studio: Studio, run: Run) -> str:
    """Queue the same request again as one new run; its id."""
    return start_runs(studio, build_request(choices_from_run(run)))["runIds"][0]


def cancel(studio: Studio, run_id: str) -> Run | None:
    run = studio.store.get(run_id, owner=studio.run_scope)
    if run is None:
        raise BadInput("That run is not one of yours.")
    if run.is_final:
        raise BadInput(f"The run already finished ({run.status}); there is nothing to cancel.")
    return studio.cancel(studio.store, run_id, studio.run_scope)


# --- runs and outputs ---------------------------------------------------------------------------


def my_runs(studio: Studio, limit: int = 50) -> list[Run]:
    return studio.store.list_runs(studio.run_scope, limit=limit)


def finished_videos(studio: Studio, *, artist: str | None = None, template: str | None = None,
                    limit: int = 500) -> list[Run]:
    """Completed runs whose video is on disk, newest first; `template` "" means malleable."""
    runs = studio.store.list_runs(studio.run_scope, status=[COMPLETED], artist=artist or None, limit=limit)
    if template is not None:
        runs = [r for r in runs if (r.template or "") == template]
    storage = _storage(studio.settings)
    if isinstance(storage, LocalStorage):
        return [r for r in runs if storage.exists(r.id, "video.mp4")]
    return runs  # remote storage: COMPLETED means the video was published; no HEAD per run on each rerun


def run_file(settings: Settings, run: Run, name: str) -> Path:
    """A run's output as a local file: where the storage keeps it, or a cached copy of a remote (S3) object."""
    storage = _storage(settings)
    local = storage.local_path(run.id, name)
    if local is not None:
        return local
    cached = settings.cache_dir / "outputs" / run.id / name
    if not cached.is_file() and storage.exists(run.id, name):
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_name(f".{name}.part")
        with partial.open("wb") as out:
            for chunk in storage.stream(run.id, name):
                out.write(chunk)
        partial.replace(cached)
    return cached


_STORAGES: dict[tuple[str, str], Storage] = {}


def _storage(settings: Settings) -> Storage:
    # One client per storage for the process: boto3 clients are costly to build on every rerun.
    key = (settings.storage_url or "", str(settings.data_dir))
    if key not in _STORAGES:
        _STORAGES[key] = make_storage(settings)
    return _STORAGES[key]


def video_path(settings: Settings, run: Run) -> Path:
    return run_file(settings, run, "video.mp4")


def poster_path(settings: Settings, run: Run) -> Path:
    return run_file(settings, run, "poster.jpg")


def download_url(studio: Studio, run: Run, name: str) -> str:
    """A signed, expiring link to one of the run's files on the API's files route, which server.py serves beside
    the UI (same origin). The browser fetches it as any download, streamed and with ranges, instead of Streamlit
    reading the whole file into the session on the click (its deferred download sometimes brought nothing on
    a loaded machine). The pages only link runs their viewer may see."""
    from api.shapes import file_url

    return file_url("/api", studio.signer, run.id, name)


# --- estimates ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimeEstimate:
    per_video_seconds: float
    total_seconds: float
    basis: str


def estimate(studio: Studio, *, lipsync: bool, upscale: bool, batch: int) -> TimeEstimate:
    """GET /api/content/estimate's time: the one estimate function, fed this installation's past runs."""
    durations = [] if upscale else studio.store.recent_durations(lipsync=lipsync)
    try:
        plan = estimate_request(studio.settings, durations, lipsync=lipsync, upscale=upscale, batch=batch)
    except StudioError as exc:  # a provider setting that cannot work: the page still renders, and says why
        per_video = FALLBACK_SECONDS_PER_VIDEO * (3 if upscale else 1)
        waves = math.ceil(max(1, batch) / studio.settings.cpu_slots)
        return TimeEstimate(per_video, per_video * waves, f"a rough guess ({exc.message})")
    return TimeEstimate(plan.per_video_seconds, plan.total_seconds, plan.basis)


def model_seconds(settings: Settings, *, lipsync: bool, upscale: bool) -> float:
    try:
        return estimate_request(settings, [], lipsync=lipsync, upscale=upscale).per_video_seconds
    except StudioError:
        return FALLBACK_SECONDS_PER_VIDEO * (3 if upscale else 1)


def option_costs(settings: Settings) -> tuple[float, float]:
    """Extra seconds per video that lip-sync and upscale add, from the provider model."""
    base = model_seconds(settings, lipsync=False, upscale=False)
    return (max(0.0, model_seconds(settings, lipsync=True, upscale=False) - base),
            max(0.0, model_seconds(settings, lipsync=False, upscale=True) - base))


def services(settings: Settings) -> dict[str, str]:
    """Which provider does each step (local, openai, fal), for the toggles' explanations."""
    try:
        from pipeline.providers.registry import chosen_services

        return dict(chosen_services(settings))
    except (ImportError, StudioError):
        return {}
