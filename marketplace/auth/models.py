from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Integer, String
from sqlalchemy import false as sa_false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from marketplace.db import UTCDateTime, db

ROLES = ("admin", "auditor", "provider", "recipient")


class User(db.Model):
    __tablename__ = "user_account"
    __table_args__ = (
        CheckConstraint("role IN ('admin', 'auditor', 'provider', 'recipient')", name="role_known"),
        CheckConstraint("role != 'provider' OR provider_id IS NOT NULL", name="provider_has_provider"),
        CheckConstraint("role != 'recipient' OR recipient_id IS NOT NULL", name="recipient_has_recipient"),
        CheckConstraint("region_code IS NULL OR role = 'admin'", name="region_scope_admin_only"),
        CheckConstraint("NOT provider_manager OR role = 'provider'", name="manager_is_provider"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Stored lower-cased: usernames are compared without regard to case.
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    # For admins: the region code prefix they may act within (None = every region).
    region_code: Mapped[str | None] = mapped_column(String(6))
    # Links to the provider or recipient this login belongs to. The provider table belongs to a higher
    # domain: it is named here, never imported.
    provider_id: Mapped[int | None] = mapped_column(ForeignKey("provider.id"), index=True)
    recipient_id: Mapped[int | None] = mapped_column(ForeignKey("recipient.id"), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # A provider's manager adds and deactivates that provider's scanning staff logins; the provider's
    # first login (the one it registered with) is its manager.
    provider_manager: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
    # The previous successful login, so the next one can tell what changed meanwhile (a provider's
    # approval, rejection or suspension is shown once, on the first login after it).
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Who created this login (None: the CLI or self-registration). Four eyes: an admin never approves
    # a settlement drafted by the admin who created their account (vouchers.service.settlement).
    created_by: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))

    # Flask-Login: set on the instance that a session or bearer token loaded.
    is_authenticated = True
    is_anonymous = False
    auth_token = None

    @property
    def is_active(self) -> bool:
        return self.active

    def get_id(self) -> str | None:
        # Flask-Login keeps this in the session cookie: the raw session token, never the user id,
        # so that logging out (revoking the token) kills every copy of the cookie.
        return self.auth_token


class AuthToken(db.Model):
    """A bearer token or a cookie session; only the sha256 of the secret is kept."""

    __tablename__ = "auth_token"
    __table_args__ = (CheckConstraint("kind IN ('bearer', 'session')", name="kind_known"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(8))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    user: Mapped[User] = relationship(lazy="joined")
