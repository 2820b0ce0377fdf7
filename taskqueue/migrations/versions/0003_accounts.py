"""Accounts: users who sign in, API keys with an id, last use and revocation, an index for per-account quotas,
and what the fair queue needs (each account's last claim; a retry's earliest start).

Keys made before this revision get an id derived from their hash, so they keep working (and their runs stay
their account's: runs.owner and api_keys.account_id do not change).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_accounts"
down_revision = "0002_webhook_deliveries"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("is_admin", sa.Boolean, nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("session_epoch", sa.Integer, nullable=False),
    )
    op.create_index("ix_users_email", "users", ["email"], unique=True)
    op.create_index("ix_users_account", "users", ["account_id"])
    op.add_column("api_keys", sa.Column("id", sa.String(40), nullable=True))
    op.add_column("api_keys", sa.Column("last_used_at", sa.Float, nullable=True))
    op.add_column("api_keys", sa.Column("revoked_at", sa.Float, nullable=True))
    # The rows already there: an id from the hash (16 hex digits, unique as the hashes are)
    op.execute("UPDATE api_keys SET id = 'key_' || substr(key_hash, 1, 16) WHERE id IS NULL")
    op.create_index("ix_api_keys_id", "api_keys", ["id"], unique=True)
    op.create_index("ix_api_keys_account", "api_keys", ["account_id"])
    op.create_index("ix_runs_owner_status", "runs", ["owner", "status"])
    op.add_column("runs", sa.Column("not_before", sa.Float, nullable=True))
    op.create_table(
        "account_turns",
        sa.Column("owner", sa.String(64), primary_key=True),
        sa.Column("claimed_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("account_turns")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("not_before")
    op.drop_index("ix_runs_owner_status", table_name="runs")
    op.drop_index("ix_api_keys_account", table_name="api_keys")
    op.drop_index("ix_api_keys_id", table_name="api_keys")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("revoked_at")
        batch.drop_column("last_used_at")
        batch.drop_column("id")
    op.drop_table("users")
