"""The error every KOMOJU call raises, in a module of its own: the operators catch it without importing the
hook (and requests) when Airflow parses the DAG files."""

from __future__ import annotations

from typing import Any


class KomojuAPIError(Exception):
    """A KOMOJU call that failed: an HTTP error answer, an unusable body, or a network failure."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        param: str | None = None,
        transient: bool = False,
        method: str | None = None,
        path: str | None = None,
        conn_id: str | None = None,
        attempts: int = 1,
        retry_after: float | None = None,
        json_error: bool = False,
    ) -> None:
        self.message = message
        self.status = status
        self.code = code
        self.param = param
        self.transient = transient
        self.method = method
        self.path = path
        self.conn_id = conn_id
        self.attempts = attempts
        self.retry_after = retry_after
        self.json_error = json_error  # KOMOJU's own JSON error object (not a proxy's page, not a lost connection)
        super().__init__(message)

    def __str__(self) -> str:
        """The operator-facing sentence (kept current when the retry loop updates ``attempts``)."""
        return self._sentence()

    @property
    def auth_failure(self) -> bool:
        """True when KOMOJU refused the secret key: HTTP 401, or its own 403 (a firewall's 403 page is not)."""
        return self.status == 401 or (self.status == 403 and self.json_error)

    def _sentence(self) -> str:
        """The operator-facing text: what was called, what KOMOJU answered, and what to do about it."""
        call = f"KOMOJU call {self.method or '?'} {self.path or '?'}"
        if self.conn_id:
            call += f" (connection '{self.conn_id}')"
        if self.attempts > 1:
            call += f" failed after {self.attempts} attempts"
        else:
            call += " failed"
        answer = f"HTTP {self.status}" if self.status is not None else "no HTTP answer"
        if self.code:
            answer += f", KOMOJU code '{self.code}'"
        if self.param:
            answer += f", parameter '{self.param}'"
        message = self.message if self.message.endswith((".", "!", "?", "…")) else f"{self.message}."
        text = f"{call}: {answer}: {message}"
        if self.auth_failure:
            text += (
                f" The secret key of connection '{self.conn_id}' was refused: check the secret key in the"
                " password field of that Airflow connection."
            )
        elif self.transient:
            text += " This failure is transient: retrying later may succeed."
        return text

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle by attributes (keyword-only arguments defeat the default exception pickling)."""
        return (_rebuild_error, (type(self), dict(self.__dict__)))


def _rebuild_error(cls: type[KomojuAPIError], state: dict[str, Any]) -> KomojuAPIError:
    """Recreate a pickled KomojuAPIError from its attributes."""
    return cls(state.pop("message"), **state)
