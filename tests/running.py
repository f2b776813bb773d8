"""A whole mizu started in the test's reactor from an ini file, as ``twistd mizu`` builds it."""

from twisted.internet import reactor

from mizu.config import load_config
from mizu.tap import build


async def running_mizu(path, database, datadir):
    """The started service tree of ``path`` on the test database; ``config_path`` is kept
    so a test can rewrite the file and ``reload``."""

    def load():
        return load_config(str(path), dsn=database, datadir=str(datadir))

    root = build(load(), load, reactor)
    root.config_path = path
    root.startService()
    await root.whenReady()
    return root
