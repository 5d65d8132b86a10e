"""Pages of a list: LIMIT/OFFSET as bind parameters, a total and RFC 8288 links.

A list view declares `query=` a model with `page` and `per_page` (schemas.py,
`paginated=True` on its @endpoint) and returns
`paginate(statement, order..., pages=query)`'s rows with its headers.
"""

from urllib.parse import urlencode

from flask import request
from sqlalchemy import bindparam, func, select

from models import db

# Characters Werkzeug's url_for leaves unescaped in query strings.
QUERY_SAFE = "!$'()*,/:;?@"


class PageQuery:
    """A list query built once: its page (LIMIT and OFFSET as bind parameters)
    and its count. The busy lists keep one per shape (functools.cache), because
    building a statement and its cache key costs more CPU than running it.

    `plain=True`: the statement selects columns only, and its rows skip the
    ORM's loading machinery (run on the session's connection, same transaction).
    `count_in_page=True`: the page also carries count(*) OVER (), so a full
    page needs no second statement; for short lists (lots), where counting
    every row before the LIMIT costs nothing.
    """

    def __init__(self, stmt, *order_by, plain: bool = False, count_in_page: bool = False):
        self.plain = plain
        self.count_in_page = count_in_page
        page = stmt.add_columns(func.count().over()) if count_in_page else stmt
        self.rows = (
            page.order_by(*order_by).limit(bindparam("page_limit")).offset(bindparam("page_offset"))
        )
        self.count = select(func.count()).select_from(stmt.order_by(None).subquery())


def paginate(query, *order_by, pages, params: dict | None = None):
    """Run one page of `query` (a select, or a PageQuery run with `params`) and
    a count; return (rows, pagination headers). `pages` is the request's
    query model (its `page` and `per_page`).

    At most two SQL statements whatever the size of the table: a page that is
    not full is the last one, so it gives the total without a count.
    """
    if not isinstance(query, PageQuery):
        query = PageQuery(query, *order_by)
    params = params or {}
    page, per_page = pages.page, pages.per_page
    execute = db.session.connection().execute if query.plain else db.session.execute
    rows = execute(
        query.rows, {**params, "page_limit": per_page, "page_offset": (page - 1) * per_page}
    ).all()
    total = None
    if query.count_in_page and rows:
        total = rows[0][-1]
        rows = [row[:-1] for row in rows]
    elif len(rows) < per_page and (rows or page == 1):
        total = (page - 1) * per_page + len(rows)
    if total is None:
        total = execute(query.count, params).scalar()
    last = max(1, -(-total // per_page))
    args = request.args.to_dict()
    base = request.base_url  # what url_for(request.endpoint, _external=True) builds, cheaper

    def link(target: int, rel: str) -> str:
        query = urlencode({**args, "page": target, "per_page": per_page}, safe=QUERY_SAFE)
        return f'<{base}?{query}>; rel="{rel}"'

    links = [link(1, "first")]
    if page > 1:
        links.append(link(min(page - 1, last), "prev"))
    if page < last:
        links.append(link(page + 1, "next"))
    links.append(link(last, "last"))
    return rows, {"X-Total-Count": str(total), "Link": ", ".join(links)}
