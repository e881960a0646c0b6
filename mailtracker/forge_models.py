"""The tables of the forge integration (``forge.py``, ``forge_github.py``): pull requests
and commits linked to issues, and the webhook deliveries already handled.

Apart from ``models.py`` because nothing on the mail path reads them. They share its
``Base``, so its metadata (and alembic's autogenerate, through ``migrations/env.py``)
knows them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mailtracker.models import Base, utcnow

__all__ = ["KEY_LENGTH", "ForgeLink", "WebhookDelivery"]


# ``pr:owner/name#7``: GitHub's owner and repository names stop at 39 and 100 characters.
KEY_LENGTH = 300


class ForgeLink(Base):
    """A pull request or commit linked to an issue; ``key`` names it on its forge."""

    __tablename__ = "forge_links"
    __table_args__ = (UniqueConstraint("issue_id", "key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    issue_id: Mapped[int] = mapped_column(ForeignKey("issues.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(KEY_LENGTH))
    kind: Mapped[str] = mapped_column(String(20))
    url: Mapped[str] = mapped_column(Text)
    title: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(20), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class WebhookDelivery(Base):
    """Webhook deliveries already handled (``X-GitHub-Delivery``): a redelivery is a no-op."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("forge", "delivery_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    forge: Mapped[str] = mapped_column(String(20))
    delivery_id: Mapped[str] = mapped_column(String(100))
    event: Mapped[str] = mapped_column(String(50))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
