"""Users and sign-in: argon2id password hashes, one answer for a wrong password and an unknown email, the AUTH
mode, and the signed session cookie the ASGI edge (api/edge.py) sets and reads."""

from __future__ import annotations

import ipaddress

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadSignature, URLSafeTimedSerializer

from pipeline.artists import Viewer
from pipeline.errors import BadInput
from pipeline.settings import Settings
from taskqueue.store import RunStore, User

MIN_PASSWORD_LENGTH = 8
SESSION_COOKIE = "studio_session"
SIGN_IN_FAILED = "Wrong email or password"  # the same words whichever of the two was wrong

# argon2id with the library's defaults (RFC 9106's second recommended profile: 64 MiB, 3 passes, 4 lanes)
_hasher = PasswordHasher()
_dummy_hash: list[str] = []  # a hash to check unknown emails against, so they take as long as wrong passwords


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise BadInput(f"The password must have at least {MIN_PASSWORD_LENGTH} characters", field=["password"])
    return _hasher.hash(password)


def check_password(store: RunStore, email: str, password: str) -> User | None:
    """The user whose email and password these are, else None; an unknown email costs one hash check too."""
    user = store.user_by_email(email)
    if user is None:
        if not _dummy_hash:
            _dummy_hash.append(_hasher.hash("not anyone's password"))
        _matches(_dummy_hash[0], password)
        return None
    if not _matches(user.password_hash, password):
        return None
    if _hasher.check_needs_rehash(user.password_hash):  # parameters raised since it was made
        store.set_password(user.id, _hasher.hash(password))
    return user


def _matches(encoded: str, password: str) -> bool:
    try:
        return _hasher.verify(encoded, password)
    except (VerificationError, InvalidHashError):
        return False


# --- the AUTH mode ----------------------------------------------------------------------------------

def is_loopback(host: str) -> bool:
    host = (host or "").strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def sign_in_required(settings: Settings) -> bool:
    """AUTH=required, or AUTH=auto on a HOST other people can reach."""
    if settings.auth == "auto":
        return not is_loopback(settings.host)
    return settings.auth == "required"


def refusal_to_serve(settings: Settings, store: RunStore) -> str | None:
    """Why this studio must not start as configured (one line), or None."""
    if settings.auth == "off" and not is_loopback(settings.host):
        return (f"AUTH=off is allowed only when HOST is a loopback address (HOST is {settings.host}): anyone who "
                "can reach the port would use the studio. Use AUTH=auto or AUTH=required.")
    if sign_in_required(settings) and not store.has_users():
        return ("Sign-in is required here (HOST is not a loopback address, or AUTH=required) but no user exists "
                "yet. Create one first: python -m taskqueue create-user you@example.com --admin")
    return None


def ui_viewer(settings: Settings, user: User | None, local_account: str) -> Viewer | None:
    """Who the UI acts as: the signed-in user, or (sign-in not required) the local admin; None: nobody."""
    if user is not None:
        return Viewer(user.account_id, user.is_admin)
    if sign_in_required(settings):
        return None
    return Viewer(local_account, admin=True)


# --- the session cookie -----------------------------------------------------------------------------

class Sessions:
    """The cookie's value: the user id and session epoch, signed and timestamped with SECRET_KEY (itsdangerous, as
    the download links are). Signing out raises the user's epoch, which ends every cookie issued before."""

    def __init__(self, secret: str, max_age_seconds: int):
        self.serializer = URLSafeTimedSerializer(secret, salt="studio-session")
        self.max_age = max_age_seconds

    def issue(self, user: User) -> str:
        return self.serializer.dumps({"u": user.id, "e": user.session_epoch})

    def claims(self, token: str | None) -> tuple[str, int] | None:
        """(user id, epoch) of a valid, unexpired cookie."""
        if not token:
            return None
        try:
            value = self.serializer.loads(token, max_age=self.max_age)
        except BadSignature:  # expired ones too
            return None
        if not isinstance(value, dict) or not isinstance(value.get("u"), str) or not isinstance(value.get("e"), int):
            return None
        return value["u"], value["e"]

    def user(self, store: RunStore, token: str | None) -> User | None:
        """The signed-in user: a valid cookie of a user who exists and has not signed out since."""
        claims = self.claims(token)
        if claims is None:
            return None
        user = store.get_user(claims[0])
        return user if user is not None and user.session_epoch == claims[1] else None
