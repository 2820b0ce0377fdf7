"""The run store's tables as the last release before migrations made them (`metadata.create_all` of
taskqueue/store.py at 3b07ee7), frozen here so that the upgrade tests keep meeting that release's database
after the code's own tables change."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Boolean, Column, Float, Index, Integer, MetaData, String, Table

metadata = MetaData()

runs = Table(
    "runs", metadata,
    Column("id", String(40), primary_key=True),
    Column("batch_id", String(40), nullable=False),
    Column("owner", String(64), nullable=False),
    Column("artist_account_id", String(36), nullable=False),
    Column("artist_slug", String(100), nullable=False),
    Column("template", String(100), nullable=True),
    Column("request", JSON, nullable=False),
    Column("seed", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("step", String(40), nullable=True),
    Column("progress", Float, nullable=False, default=0.0),
    Column("timeline", JSON, nullable=False),
    Column("output", JSON, nullable=True),
    Column("error", JSON, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    Column("worker", String(200), nullable=True),
    Column("heartbeat_at", Float, nullable=True),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Index("ix_runs_owner_created", "owner", "created_at"),
    Index("ix_runs_status_heartbeat", "status", "heartbeat_at"),
)

api_keys = Table(
    "api_keys", metadata,
    Column("key_hash", String(64), primary_key=True),
    Column("account_id", String(64), nullable=False),
    Column("label", String(200), nullable=False, default=""),
    Column("created_at", Float, nullable=False),
)

idempotency_keys = Table(
    "idempotency_keys", metadata,
    Column("owner", String(64), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("body_hash", String(64), nullable=False),
    Column("response", JSON(none_as_null=True), nullable=True),
    Column("created_at", Float, nullable=False),
)

workers = Table(
    "workers", metadata,
    Column("name", String(200), primary_key=True),
    Column("host", String(200), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
    Column("current_run", String(40), nullable=True),
)
