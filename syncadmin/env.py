"""Read settings from the environment, failing loudly with the variable's name and expected form.

Every problem raises `SettingError`, which `settings.py` turns into one line, `Configuration error: ...`, and exit:
any process (web, worker, scheduler, manage.py) stops at start with a message a person can act on, not a traceback.
"""

import os
import secrets
from pathlib import Path
from urllib.parse import urlparse

import dj_database_url


class SettingError(Exception):
    """A setting read from the environment has a bad value."""


TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise SettingError(f"{name}={raw!r} is not a boolean: use one of 1/0, true/false, yes/no, on/off.")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingError(f"{name}={raw!r} is not a whole number.") from None
    if minimum is not None and value < minimum:
        raise SettingError(f"{name}={value} is too small: it must be at least {minimum}.")
    if maximum is not None and value > maximum:
        raise SettingError(f"{name}={value} is too large: it must be at most {maximum}.")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    items = [item.strip() for item in raw.split(",") if item.strip()]
    if not items:
        raise SettingError(f"{name} is empty: give a comma-separated list, for example 'example.com,127.0.0.1'.")
    return items


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value not in choices:
        raise SettingError(f"{name}={raw!r} is not one of: {', '.join(choices)}.")
    return value


def env_secret(name: str) -> str | None:
    """Return a secret from NAME, or from the file named by NAME_FILE (Docker/Kubernetes secrets)."""
    value = os.environ.get(name)
    file_name = os.environ.get(f"{name}_FILE")
    if value and file_name:
        raise SettingError(f"Both {name} and {name}_FILE are set: set only one of them.")
    if file_name:
        try:
            return Path(file_name).read_text().strip()
        except OSError as exc:
            raise SettingError(f"{name}_FILE={file_name!r} cannot be read: {exc.strerror}.") from None
    return value or None


def env_database(name: str, default: str) -> dj_database_url.DBConfig:
    raw = os.environ.get(name) or default
    scheme = urlparse(raw).scheme
    if scheme not in {"sqlite", "postgres", "postgresql", "pgsql"}:
        raise SettingError(
            f"{name}={raw!r} is not a supported database URL: use postgres://USER:PASSWORD@HOST:PORT/NAME "
            "or sqlite:////absolute/path/to/file.sqlite3."
        )
    try:
        config = dj_database_url.parse(raw, conn_max_age=0)
    except Exception as exc:  # dj-database-url raises several kinds for malformed URLs
        raise SettingError(f"{name}={raw!r} cannot be parsed as a database URL: {exc}.") from None
    if not config.get("NAME"):
        raise SettingError(f"{name}={raw!r} names no database: add the database name (or file) at the end.")
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # WAL lets readers and one writer work at once; IMMEDIATE transactions take the write lock up front, so
        # concurrent writers (web, workers, the sandbox) wait for it instead of failing with "database is locked".
        config["OPTIONS"] = {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
        }
    return config


REDIS_URL_FORM = "use redis://HOST:PORT/DB, rediss://HOST:PORT/DB or unix:///path/to/redis.sock?db=DB"


def env_redis_url(name: str, default: str) -> str:
    from redis.connection import parse_url

    raw = os.environ.get(name) or default
    if urlparse(raw).scheme not in {"redis", "rediss", "unix"}:
        raise SettingError(f"{name}={raw!r} is not a Redis URL: {REDIS_URL_FORM}.")
    try:
        parts = parse_url(raw)
    except ValueError as exc:
        raise SettingError(f"{name}={raw!r} cannot be parsed as a Redis URL ({exc}): {REDIS_URL_FORM}.") from None
    if not (parts.get("host") or parts.get("path")):
        raise SettingError(f"{name}={raw!r} names no Redis server: {REDIS_URL_FORM}.")
    return raw


def env_secret_key(name: str) -> str | None:
    """Django's SECRET_KEY, from NAME or NAME_FILE; a short key would make sessions and tokens guessable."""
    value = env_secret(name)
    if value is not None and len(value) < 32:
        raise SettingError(
            f"{name} is too short ({len(value)} characters): use at least 32 random characters, made with: "
            "python -c 'import secrets; print(secrets.token_urlsafe(50))'."
        )
    return value


def data_dir(name: str, default: Path) -> Path:
    """The folder for local state (SQLite files, generated keys, the embedded Redis socket); created if missing."""
    path = Path(os.environ.get(name) or default).resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SettingError(f"{name}={str(path)!r} cannot be created: {exc.strerror}. Give a writable folder.") from None
    if not os.access(path, os.W_OK):
        raise SettingError(f"{name}={str(path)!r} is not writable: give a folder this user can write to.")
    return path


def local_secret_key(data_dir: Path) -> str:
    """Return the secret key kept in the data folder, creating it once (local use only)."""
    path = data_dir / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


def local_fernet_key(data_dir: Path) -> str:
    """Return the encryption key kept in the data folder, creating it once (local use only)."""
    from cryptography.fernet import Fernet

    path = data_dir / "encryption_key"
    if not path.exists():
        path.write_text(Fernet.generate_key().decode())
        path.chmod(0o600)
    return path.read_text().strip()


def check_fernet_key(name: str, key: str) -> None:
    from cryptography.fernet import Fernet

    try:
        Fernet(key.encode())
    except ValueError:
        raise SettingError(f"{name} is not a Fernet key: it must be 32 url-safe base64-encoded bytes.") from None
