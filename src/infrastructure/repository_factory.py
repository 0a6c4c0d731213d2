"""Choose the store from settings: MongoDB when `MONGODB_URL` is set, else the embedded SQLite file."""

from __future__ import annotations

from pathlib import Path

from src.application.ports import Repository
from src.config import Settings


def build_repository(settings: Settings) -> Repository:
    """Build (but do not connect or initialize) the repository the settings ask for."""
    if settings.mongodb_url is not None:
        from src.infrastructure.mongo_repository import build_mongo_repository

        return build_mongo_repository(
            settings.mongodb_url.get_secret_value(),
            settings.database_name,
            settings.mongodb_max_pool_size,
        )
    from src.infrastructure.sqlite_repository import SQLiteRepository

    path = Path(settings.sqlite_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return SQLiteRepository(str(path))
