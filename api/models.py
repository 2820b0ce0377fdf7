"""The API's answers as pydantic models: the original's published shapes (recoupable/docs OpenAPI) plus ours.

Field names follow the original (camelCase where it uses it); fields it does not have are marked
"(studio)" in their description. The OpenAPI page and generated clients are built from these.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from taskqueue.store import STATUSES

RunStatus = Literal[STATUSES]  # type: ignore[valid-type]  # the tuple of the store's statuses


class _Open(BaseModel):
    """Answers may grow fields; a client must ignore the ones it does not know."""

    model_config = ConfigDict(extra="allow")


class ErrorResponse(BaseModel):
    status: Literal["error"] = "error"
    error: str = Field(description="What went wrong, in one sentence")
    field: list[str | int] | None = Field(None, description="The path of the field the error is about")
    message: str | None = Field(None, description="The same sentence, where the original names it `message`")


class MissingFile(BaseModel):
    file: str = Field(examples=["context/images/face-guide.png"])
    severity: Literal["required", "recommended"]
    description: str = Field(description="What this file is used for in the pipeline")
    fix: str


class CreateErrorResponse(ErrorResponse):
    ready: bool | None = Field(None, description="false when the artist is missing required files")
    missing: list[MissingFile] | None = None
    available_templates: list[str] | None = Field(None, description="Present when the template is unknown")


class CreateResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "runIds": ["run_9f2c4e1a7b3d5f60a1b2c3d4"], "status": "triggered",
        "artist_account_id": "1873859c-dd37-4e9a-9bac-80d3558527a9", "template": "artist-caption-stage",
        "lipsync": False}]})

    runIds: list[str]
    status: Literal["triggered"]
    artist_account_id: str
    template: str | None = Field(description="null in malleable mode")
    lipsync: bool
    failed: int | None = Field(None, description="Number of runs that could not be queued; only when some failed")
    warnings: list[str] | None = Field(None, description="(studio) Unknown body fields that were ignored")


class TemplateSummary(BaseModel):
    id: str
    description: str


class TemplatesResponse(BaseModel):
    status: Literal["success"] = "success"
    templates: list[TemplateSummary]


class EditOperation(_Open):
    type: Literal["trim", "crop", "resize", "overlay_text", "mux_audio"]


class TemplateVideo(_Open):
    moods: list[str] = Field(description="Mood names (the original's strings)")
    movements: list[str] = Field(description="Movement prompts (the original's strings)")
    moodDetails: list[dict[str, Any]] = Field(description="(studio) Each mood with its energy")
    movementDetails: list[dict[str, Any]] = Field(description="(studio) Each movement with the local motion style")


class TemplateEdit(_Open):
    operations: list[EditOperation] = Field(description="The edit as the original's operations")


class TemplateDetail(_Open):
    """The whole template: the original's fields, and ours (grade, caption style, ...) beside them."""

    status: Literal["success"] = "success"
    id: str
    description: str
    image: dict[str, Any]
    video: TemplateVideo
    caption: dict[str, Any]
    edit: TemplateEdit


class ValidationCheck(_Open):
    status: Literal["ok", "missing", "warning"]


class SongsCheck(ValidationCheck):
    count: int


class ValidateChecks(BaseModel):
    face_guide: ValidationCheck
    artist_context: ValidationCheck
    audience_context: ValidationCheck
    songs: SongsCheck


class ValidateResponse(BaseModel):
    status: Literal["success"] = "success"
    artist_account_id: str
    ready: bool
    songs: int = Field(description="Number of songs found in the artist's songs/")
    templates: list[str] = Field(description="Templates that can be used with this artist")
    checks: ValidateChecks
    missing: list[MissingFile] = Field(description="Missing files, required and recommended, each with its fix")
    warnings: list[str] = Field(description="Fixes for missing recommended files")


class StepEstimate(BaseModel):
    name: str = Field(examples=["Generate Image"])
    model: str = Field(examples=["fal-ai/nano-banana-2/edit"], description="The model or service, `local` here")
    cost: float = Field(description="USD for this step of one video")
    unit: str | None = Field(None, description="Billing unit (images, seconds, ...); absent for free steps")
    unitPrice: float | None = Field(None, description="USD per unit; absent for free steps")
    note: str
    provider: str = Field(description="(studio) local, openai or fal")
    seconds: float | None = Field(None, description="(studio) Typical seconds of this step for one video")


class CostBreakdown(BaseModel):
    mostExpensiveStep: str
    mostExpensivePercent: int


class WorkflowEstimate(BaseModel):
    name: str
    perVideo: float = Field(description="USD per video")
    steps: list[StepEstimate]
    costBreakdown: CostBreakdown | None = None


class EstimateComparison(BaseModel):
    cheapest: str
    cheapestPerVideo: float
    mostExpensive: str
    mostExpensivePerVideo: float
    savingsPercent: int


class BatchEstimate(BaseModel):
    count: int
    cheapestTotal: float
    mostExpensiveTotal: float


class TimeEstimate(BaseModel):
    perVideoSeconds: float
    totalSeconds: float = Field(description="For the whole batch with this installation's workers")
    workers: int
    basis: str
    sampleSize: int


class EstimateResponse(BaseModel):
    status: Literal["success"] = "success"
    workflows: list[WorkflowEstimate]
    comparison: EstimateComparison | None = Field(None, description="Only with compare=true")
    batch: BatchEstimate | None = Field(None, description="Only when batch > 1")
    time: TimeEstimate = Field(description="(studio) How long, from this installation's past runs")


class RunErrorInfo(_Open):
    message: str
    name: str | None = Field(None, description="The stage that failed")
    stage: str | None = None


class Attempt(BaseModel):
    id: str
    status: Literal["PENDING", "EXECUTING", "PAUSED", "COMPLETED", "FAILED", "CANCELED"]
    createdAt: str | None = None
    updatedAt: str | None = None
    startedAt: str | None = None
    completedAt: str | None = None


class TimelineEntry(BaseModel):
    step: str | None
    startedAt: str | None
    finishedAt: str | None
    seconds: float | None


class RunEnv(BaseModel):
    id: str
    name: str
    user: str | None = None


class WebhookDelivery(BaseModel):
    id: str
    event: str
    attempt: int
    at: str | None
    status: int | None = Field(description="The receiver's HTTP status; null when it did not answer")
    error: str | None


class RunWebhook(BaseModel):
    url: str
    deliveries: list[WebhookDelivery]


class Run(BaseModel):
    """A run, shaped as the Trigger.dev run objects of the original, with the studio's progress fields."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "run_9f2c4e1a7b3d5f60a1b2c3d4", "status": "EXECUTING", "taskIdentifier": "create-content",
        "createdAt": "2026-12-01T17:00:00.000Z", "updatedAt": "2026-12-01T17:00:03.500Z",
        "startedAt": "2026-12-01T17:00:00.400Z", "finishedAt": None, "step": "render", "progress": 72.5,
        "batchId": "batch_1a2b3c4d5e6f7a8b", "attempts": [{"id": "attempt_9f2c4e1a_1", "status": "EXECUTING"}],
        "output": None, "error": None}]})

    id: str
    status: RunStatus
    taskIdentifier: str
    idempotencyKey: str | None
    version: str
    isTest: bool
    createdAt: str
    updatedAt: str
    startedAt: str | None
    finishedAt: str | None
    delayedUntil: str | None
    expiredAt: str | None
    ttl: str | None
    tags: list[str]
    metadata: dict[str, Any] | None
    costInCents: float = Field(description="What the run's remote steps cost, in US cents (0 when all local)")
    baseCostInCents: float
    durationMs: float
    env: RunEnv
    depth: int
    batchId: str | None
    triggerFunction: Literal["trigger", "triggerAndWait", "batchTrigger", "batchTriggerAndWait"]
    payload: dict[str, Any] | None = Field(description="The create request the run was made from")
    output: dict[str, Any] | None = Field(description="A completed run's result: video URL, choices, cost")
    error: RunErrorInfo | None
    attempts: list[Attempt]
    step: str | None = Field(description="(studio) The step running now")
    progress: float = Field(description="(studio) 0 to 100")
    artist_account_id: str
    artistSlug: str
    template: str | None
    seed: int
    request: dict[str, Any]
    attemptCount: int = Field(description="(studio) How many times a worker claimed the run")
    cancelRequested: bool
    isFinal: bool
    heartbeatAt: str | None
    worker: str | None
    durationSeconds: float | None
    timeline: list[TimelineEntry]
    webhook: RunWebhook | None = Field(None, description="(studio) Where the run's events go, and each try")


class RunsResponse(BaseModel):
    status: Literal["success"] = "success"
    runs: list[Run]


class CancelResponse(BaseModel):
    status: Literal["success"] = "success"
    run: Run


class ArtistSocial(BaseModel):
    id: str
    platform: str
    username: str
    profile_url: str


class ArtistInfo(BaseModel):
    account_id: str
    name: str
    image: str | None = Field(description="A signed link to the face guide")
    pinned: bool
    socials: list[ArtistSocial]
    slug: str
    songs: list[str]
    repository: str | None
    ready: bool
    missing: list[MissingFile]


class ArtistsResponse(BaseModel):
    status: Literal["success"] = "success"
    artists: list[ArtistInfo]


class AccountIdResponse(BaseModel):
    status: Literal["success"] = "success"
    accountId: str


class HealthQueue(BaseModel):
    pending: int | None
    scheduled: int | None
    name: str
    backend: Literal["redis", "sqlite"]


class HealthWorker(BaseModel):
    name: str
    host: str
    pid: int
    startedAt: str | None
    heartbeatAt: str | None
    currentRun: str | None


class HealthResponse(BaseModel):
    """Without a key only `status` and `ok`; with one, the queue, runs by status and the live workers."""

    status: Literal["ok"]
    ok: bool
    queue: HealthQueue | None = None
    runs: dict[str, int] | None = None
    workers: list[HealthWorker] | None = None
    liveWorkers: int | None = None
