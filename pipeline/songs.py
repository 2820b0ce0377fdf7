"""Which song a run uses: a URL the caller gave, or one of the artist's songs (filtered by slugs)."""

from __future__ import annotations

import random
from pathlib import Path
from urllib.parse import unquote, urlsplit

from pipeline.artists import find_song, list_songs
from pipeline.errors import BadInput, FetchError
from pipeline.fetch import Fetcher
from pipeline.ffmpeg import probe
from pipeline.models import Artist, Song


def is_url(value: str) -> bool:
    return value.lower().startswith(("http://", "https://", "ftp://", "file://", "gopher://")) or "://" in value


def split_song_specs(specs: list[str] | None) -> tuple[list[str], list[str]]:
    """(slugs, urls) from the request's `songs`."""
    slugs, urls = [], []
    for spec in specs or []:
        (urls if is_url(spec) else slugs).append(spec.strip())
    return slugs, urls


def eligible_songs(artist: Artist, slugs: list[str]) -> list[Song]:
    """The artist's songs the request allows; each slug must be the artist's."""
    if slugs:
        return [find_song(artist, slug) for slug in slugs]
    songs = list_songs(artist)
    if not songs:
        raise BadInput("The artist has no songs: add songs/<slug>/<slug>.mp3 or pass song URLs", field=["songs"])
    return songs


def title_from_url(url: str) -> tuple[str, str]:
    name = Path(unquote(urlsplit(url).path)).name or "song"
    stem = Path(name).stem or "song"
    return stem, stem.replace("-", " ").replace("_", " ").strip().title() or "Song"


def fetch_song(url: str, fetcher: Fetcher, ffmpeg: str | None) -> Song:
    """Download a song URL and make sure it is audio ffmpeg can decode."""
    path = fetcher.fetch(url, field_name="songs")
    try:
        info = probe(path, ffmpeg)
    except BadInput:
        info = None
    if info is None or not info.has_audio or not info.duration:
        path.unlink(missing_ok=True)
        raise FetchError(f"{url} is not audio that can be decoded", field=["songs"])
    slug, title = title_from_url(url)
    return Song(slug=slug, title=title, path=path, source="url", url=url)


def choose_song(artist: Artist, specs: list[str] | None, rng: random.Random, fetcher: Fetcher,
                ffmpeg: str | None = None) -> Song:
    """A URL in `songs` is used directly; otherwise one eligible song of the artist's, at random."""
    slugs, urls = split_song_specs(specs)
    if urls:
        return fetch_song(rng.choice(urls), fetcher, ffmpeg)
    return rng.choice(eligible_songs(artist, slugs))
