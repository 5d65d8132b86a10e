"""A driver's tickets at one lot: an index in the list's order.

GET /api/tickets?lot_id= for a driver read the driver's tickets (user_id,
check_in, id) and filtered the lot, and its X-Total-Count counted up to
10,000 of them from the table: `make bench-scale` measured the busiest
driver's tickets at one lot at 1.96x from small to large data. With
(user_id, lot_id, check_in, id) the page and the count are index-only ranges.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index(
        "ix_tickets_user_lot_check_in_id", "tickets", ["user_id", "lot_id", "check_in", "id"]
    )


def downgrade():
    op.drop_index("ix_tickets_user_lot_check_in_id", table_name="tickets")
