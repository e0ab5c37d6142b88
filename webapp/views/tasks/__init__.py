"""The ``tasks`` blueprint: the list, a task's page, live updates, import and export.

The routes live in the package's modules, which register on :data:`bp`; importing them here, after
``bp`` exists, is what attaches them.
"""

from flask import Blueprint

bp = Blueprint("tasks", __name__)

from webapp.views.tasks import actions  # noqa: E402
from webapp.views.tasks import detail  # noqa: E402
from webapp.views.tasks import export  # noqa: E402
from webapp.views.tasks import imports  # noqa: E402
from webapp.views.tasks import index  # noqa: E402
from webapp.views.tasks import links  # noqa: E402

__all__ = ["actions", "bp", "detail", "export", "imports", "index", "links"]
