"""Why a token was revoked: rotated by a refresh, or logged out.

A refresh token exchanged moments ago may be exchanged again for the same
new pair (an app that retried; tokens.py), which needs to tell a rotation
from a logout. Rows written before are taken as logouts, the stricter reading
(reusing them revokes every token of the user, as before). Family revocations
use the same table: token_type "family", keyed by the family id.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("revoked_tokens") as batch:
        batch.add_column(
            sa.Column("reason", sa.String(16), nullable=False, server_default="logout")
        )
        batch.create_check_constraint("reason", "reason IN ('logout', 'rotated')")


def downgrade():
    with op.batch_alter_table("revoked_tokens") as batch:
        batch.drop_constraint("ck_revoked_tokens_reason", type_="check")
        batch.drop_column("reason")
