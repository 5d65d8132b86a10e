"""A covering index for the report's closed-ticket aggregates.

The 30-day report sums amount_due and averages duration_minutes of the lot's
tickets closed in the range. With those two columns in the (lot_id,
check_out) index the scan never visits the table (PostgreSQL: index-only scan;
bench/README.md). The new index replaces the old one, whose columns it starts
with.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index(
        "ix_tickets_lot_check_out_amount",
        "tickets",
        ["lot_id", "check_out", "amount_due", "duration_minutes"],
    )
    op.drop_index("ix_tickets_lot_check_out", table_name="tickets")


def downgrade():
    op.create_index("ix_tickets_lot_check_out", "tickets", ["lot_id", "check_out"])
    op.drop_index("ix_tickets_lot_check_out_amount", table_name="tickets")
