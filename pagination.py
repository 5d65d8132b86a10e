"""Pages of a list whose cost does not grow with the list: keyset cursors,
totals that are cheap or omitted, RFC 8288 links.

A list view declares `query=` a model with `page`, `per_page` and `cursor`
(schemas.py, `paginated=True` on its @endpoint) and returns
`paginate(statement, order..., pages=query)`'s rows with its headers.

Two ways through a list:

* `?cursor=` (keyset): the next page is the rows after the last one shown,
  in the list's order (`WHERE (check_in, id) < (:check_in, :id)`), an index
  range scan that costs the same on page 1 and page 100,000. Clients follow
  `Link: <...?cursor=...>; rel="next"`; the cursor is opaque (the last row's
  order values, base64url JSON).
* `?page=` (OFFSET), kept for existing clients: the database still reads and
  skips every row before the page, so deep pages cost more; links from a
  `page` answer keep page numbers.

The first page (neither given) links `next` with a cursor. Totals:
`X-Total-Count` comes from counters the database keeps when the list has them
(`total=`), else from counting at most COUNT_CAP rows; past that the header is
left out (a total over an unbounded history is what made lists slow), and so
is `rel="last"`.
"""

import base64
import binascii
import json
from collections.abc import Callable
from datetime import datetime
from urllib.parse import urlencode

from flask import request
from sqlalchemy import DateTime, bindparam, func, select, tuple_

from models import db
from validation import ApiError

# Characters Werkzeug's url_for leaves unescaped in query strings.
QUERY_SAFE = "!$'()*,/:;?@"
# A list without counters is counted up to this many rows, and no further.
COUNT_CAP = 10_000


class PageQuery:
    """A list query built once: its page and its capped count, with LIMIT,
    OFFSET and the keyset bound as bind parameters. The busy lists keep one per
    shape (functools.cache), because building a statement and its cache key
    costs more CPU than running it.

    `order_by` are columns, all ascending or all descending (`descending`);
    the last one must be unique (an id). `plain=True`: the statement selects
    columns only, and its rows skip the ORM's loading machinery.
    `count_in_page=True`: the page also carries count(*) OVER (), so a full
    page needs no second statement; for short lists (lots). `count_of`: the
    rows to count, when joins that cannot change the number (non-null foreign
    keys) need not be counted.
    """

    def __init__(
        self,
        stmt,
        *order_by,
        descending: bool = False,
        plain: bool = False,
        count_in_page: bool = False,
        count_of=None,
    ):
        self.plain = plain
        self.count_in_page = count_in_page
        self.keys = order_by
        order = [column.desc() if descending else column for column in order_by]
        # The order values ride at the end of each row, for the next cursor.
        page = stmt.add_columns(*order_by)
        if count_in_page:
            page = page.add_columns(func.count().over())
        self.rows = page.order_by(*order).limit(bindparam("page_limit"))
        self.offset_rows = self.rows.offset(bindparam("page_offset"))
        after = tuple_(*order_by)
        bound = tuple_(
            *(bindparam(f"after_{i}", type_=column.type) for i, column in enumerate(order_by))
        )
        self.keyset_rows = self.rows.where(after < bound if descending else after > bound)
        counted = stmt if count_of is None else count_of
        self.count = select(func.count()).select_from(
            counted.order_by(None).limit(bindparam("count_cap")).subquery()
        )


def encode_cursor(values) -> str:
    plain = [value.isoformat() if isinstance(value, datetime) else value for value in values]
    raw = json.dumps(plain, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, keys) -> dict:
    """The keyset bind values of a cursor (400 when it is not one of ours)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
        if not isinstance(values, list) or len(values) != len(keys):
            raise ValueError(cursor)
        bound = {}
        for i, (value, column) in enumerate(zip(values, keys, strict=True)):
            if isinstance(getattr(column.type, "impl", column.type), DateTime):
                value = datetime.fromisoformat(value)
                if value.tzinfo is None:
                    raise ValueError(value)
            elif not isinstance(value, int | str) or isinstance(value, bool):
                raise ValueError(value)
            bound[f"after_{i}"] = value
        return bound
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError, NotImplementedError):
        raise ApiError(400, "cursor is invalid") from None


def paginate(
    query,
    *order_by,
    pages,
    params: dict | None = None,
    total: Callable[[], int | None] | None = None,
    count_of=None,
):
    """Run one page of `query` (a select, or a PageQuery run with `params`);
    return (rows, pagination headers). `pages` is the request's query model
    (`page`, `per_page`, `cursor`); `total()` gives an exact total cheaply
    (counters), else the rows (of `count_of`, if given) are counted up to
    COUNT_CAP.

    At most two statements, whatever the size of the table: a page that is
    not full is the last one, so it gives the total without a count.
    """
    if not isinstance(query, PageQuery):
        descending = any(getattr(column, "modifier", None) is not None for column in order_by)
        columns = [getattr(column, "element", column) for column in order_by]
        query = PageQuery(query, *columns, descending=descending, count_of=count_of)
    params = dict(params or {})
    per_page = pages.per_page
    cursor = getattr(pages, "cursor", None)
    page = 1 if cursor else pages.page
    execute = db.session.connection().execute if query.plain else db.session.execute
    if cursor:
        statement = query.keyset_rows
        params.update(decode_cursor(cursor, query.keys))
    elif page > 1:
        statement = query.offset_rows
        params["page_offset"] = (page - 1) * per_page
    else:
        statement = query.rows
    rows = execute(statement, {**params, "page_limit": per_page + 1}).all()
    more = len(rows) > per_page
    rows = rows[:per_page]
    count = None
    if query.count_in_page and rows:
        count = rows[0][-1]
        rows = [row[:-1] for row in rows]
    keys = len(query.keys)
    last_values = rows[-1][-keys:] if rows else None
    rows = [row[:-keys] for row in rows]

    if count is None and not more and not cursor and (rows or page == 1):
        count = (page - 1) * per_page + len(rows)  # the last page: nothing to count
    if count is None and total is not None:
        count = total()
    if count is None:
        counted = execute(query.count, {**params, "count_cap": COUNT_CAP + 1}).scalar()
        count = counted if counted <= COUNT_CAP else None
    headers = {} if count is None else {"X-Total-Count": str(count)}

    args = {k: v for k, v in request.args.items() if k not in ("page", "cursor")}
    base = request.base_url  # what url_for(request.endpoint, _external=True) builds, cheaper

    def link(rel: str, **where) -> str:
        target = urlencode({**args, **where, "per_page": per_page}, safe=QUERY_SAFE)
        return f'<{base}?{target}>; rel="{rel}"'

    links = [link("first", page=1)]
    last = None if count is None else max(1, -(-count // per_page))
    if page > 1 and not cursor:
        links.append(link("prev", page=min(page - 1, last or page - 1)))
    if more:
        if page > 1 and not cursor:
            links.append(link("next", page=page + 1))
        else:
            links.append(link("next", cursor=encode_cursor(last_values)))
    if last is not None:
        links.append(link("last", page=last))
    headers["Link"] = ", ".join(links)
    return rows, headers
