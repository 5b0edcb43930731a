"""Tables of the web area: API tokens (only their SHA-256 hashes are stored)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from wattwise.store.models import Base, utcnow


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    #: hex SHA-256 of the whole token; tokens are 256-bit random, so a fast hash is enough
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    #: first characters of the token, shown in listings so a person can tell tokens apart
    prefix: Mapped[str] = mapped_column(String(16))
    scope: Mapped[str] = mapped_column(String(10), default="write")  # read | write
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
