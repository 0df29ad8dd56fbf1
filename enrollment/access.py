"""Who may read a student's pages: the student themself, or staff with the `enrollment.view_student` permission.

The student is a Django user linked to the Student (`Student.user`), signed in by session, or the bearer of a
token the platform issues for that student (`issue_token`: signed with SECRET_KEY, valid for
STUDENT_TOKEN_MAX_AGE_SECONDS; `manage.py student_token ID` prints one). Anyone else gets the same 404 as for an id
that does not exist: sequential ids cannot be probed for who is enrolled.
"""
from __future__ import annotations

from django.conf import settings
from django.core.signing import BadSignature, TimestampSigner
from django.http import HttpRequest

TOKEN_SALT = "enrollment.access.student-pages"


def issue_token(student_id: int) -> str:
    """A token that opens this student's pages, and no one else's, until it expires."""
    return TimestampSigner(salt=TOKEN_SALT).sign(str(student_id))


def token_student(request: HttpRequest) -> int | None:
    """The student a request's `Authorization: Bearer <token>` opens, or None (no token, forged, expired)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    try:
        value = TimestampSigner(salt=TOKEN_SALT).unsign(token.strip(), max_age=settings.STUDENT_TOKEN_MAX_AGE_SECONDS)
    except BadSignature:  # forged, tampered, or expired (SignatureExpired is a BadSignature)
        return None
    return int(value) if value.isdigit() else None


def may_read(request: HttpRequest, student_id: int) -> bool:
    user = request.user
    if user.is_authenticated:
        if user.has_perm("enrollment.view_student"):
            return True
        linked = getattr(user, "student", None)
        if linked is not None and linked.pk == student_id:
            return True
    return token_student(request) == student_id
