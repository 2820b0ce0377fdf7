"""Kept for imports written before the split: the shared remote helpers now live one concern per module
(http_retries, results, audio_cuts, transcripts, prompts). New code imports those."""

from __future__ import annotations

from pipeline.providers.audio_cuts import (  # noqa: F401
    compact_audio,
    cut_clip_audio,
)
from pipeline.providers.http_retries import (  # noqa: F401
    Retryable,
    RetryPolicy,
    T,
    call_with_retries,
    malformed,
    parse_retry_after,
    raise_for_status,
    reason_from_body,
)
from pipeline.providers.prompts import (  # noqa: F401
    image_prompt,
)
from pipeline.providers.results import (  # noqa: F401
    MIN_IMAGE_SIDE,  # noqa: F401
    ResultDownloader,
    check_audio,
    check_image,
    check_video,
    data_uri,
    fit_still,
    styled_from_file,
)
from pipeline.providers.transcripts import (  # noqa: F401  # noqa: F401
    LINE_GAP_SECONDS,
    MAX_WORDS_PER_LINE,
    TranscriptCache,
    file_sha256,
    lines_as_groups,
    lines_from_words,
)
