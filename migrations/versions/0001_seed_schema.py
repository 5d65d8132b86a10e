"""The seed project's schema, as its models created it.

A database made by the seed's code is adopted with `flask db stamp 0001`
followed by `flask db upgrade`. The unique constraints carry the names
PostgreSQL gives unnamed ones, so 0002 can drop them on either origin.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("username", sa.String(), nullable=False),
        sa.Column("email", sa.String(), nullable=False),
        sa.Column("password_hash", sa.String(), nullable=False),
        sa.UniqueConstraint("username", name="users_username_key"),
        sa.UniqueConstraint("email", name="users_email_key"),
    )
    op.create_table(
        "parking_lots",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("location", sa.String(), nullable=True),
    )
    op.create_table(
        "vehicles",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("plate_number", sa.String(), nullable=False),
        sa.Column("type", sa.String(), nullable=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
    )
    op.create_table(
        "parking_spots",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("spot_number", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=True),
        sa.Column("lot_id", sa.Integer(), sa.ForeignKey("parking_lots.id"), nullable=True),
    )
    op.create_table(
        "tickets",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("vehicle_id", sa.Integer(), sa.ForeignKey("vehicles.id"), nullable=True),
        sa.Column("spot_id", sa.Integer(), sa.ForeignKey("parking_spots.id"), nullable=True),
        sa.Column("check_in", sa.DateTime(), nullable=False),
        sa.Column("check_out", sa.DateTime(), nullable=True),
    )


def downgrade():
    for table in ("tickets", "parking_spots", "vehicles", "parking_lots", "users"):
        op.drop_table(table)
