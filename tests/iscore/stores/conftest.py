from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from iscore.stores import SqliteStore, Store

# One factory per backend; each test of the contract suite runs once per entry.
# A MongoDB entry joins this list when that backend exists.
BACKENDS: dict[str, Callable[[Path], Store]] = {
    "sqlite": lambda tmp_path: SqliteStore(tmp_path / "store.db"),
}


@pytest.fixture(params=sorted(BACKENDS))
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    """Build a store of the backend under test, sharing data between calls."""
    factory = BACKENDS[request.param]
    return lambda: factory(tmp_path)


@pytest.fixture
async def store(make_store: Callable[[], Store]) -> AsyncIterator[Store]:
    opened = make_store()
    await opened.open()
    yield opened
    await opened.close()
