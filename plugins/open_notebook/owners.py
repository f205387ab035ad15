"""Who owns what in Open Notebook, which has no users: the portal keeps each notebook, source,
note and chat session it created with the portal user it created it for."""
from __future__ import annotations

import time

import sqlalchemy as sa

from agent_portal.database import create_tables

metadata = sa.MetaData()
owned = sa.Table(
    "portal_notebook_objects", metadata,
    sa.Column("object_id", sa.String(200), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),  # notebook, source, note, session
    sa.Column("owner", sa.String(200), nullable=False, index=True),
    sa.Column("notebook_id", sa.String(200), index=True),  # the notebook it belongs to (itself for a notebook)
    sa.Column("created_at", sa.Float, nullable=False),
)


class OwnerStore:
    """Objects and their owners, in the portal's database."""

    def __init__(self, engine):
        self.engine = engine
        create_tables(engine, metadata)

    def add(self, kind: str, object_id: str, owner: str, notebook_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(owned.insert().values(object_id=object_id, kind=kind, owner=owner,
                                               notebook_id=notebook_id, created_at=time.time()))

    def get(self, kind: str, object_id: str) -> dict | None:
        """Return ``{owner, notebook_id}`` of ``object_id`` of ``kind``, or None when the portal
        did not create it."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(owned.c.owner, owned.c.notebook_id)
                               .where(owned.c.object_id == object_id, owned.c.kind == kind)).first()
        return None if row is None else {"owner": row.owner, "notebook_id": row.notebook_id}

    def ids(self, kind: str, owner: str | None = None, notebook_id: str | None = None) -> set:
        """Return the ids of ``kind`` owned by ``owner`` (any when None), in ``notebook_id``
        (any when None)."""
        query = sa.select(owned.c.object_id).where(owned.c.kind == kind)
        if owner is not None:
            query = query.where(owned.c.owner == owner)
        if notebook_id is not None:
            query = query.where(owned.c.notebook_id == notebook_id)
        with self.engine.connect() as conn:
            return {row.object_id for row in conn.execute(query)}

    def remove(self, object_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(owned.delete().where(owned.c.object_id == object_id))

    def remove_notebook(self, notebook_id: str) -> None:
        """Forget a deleted notebook and its notes and sessions (its sources go with it too: the
        portal only ever makes a source for one notebook)."""
        with self.engine.begin() as conn:
            conn.execute(owned.delete().where(owned.c.notebook_id == notebook_id))
