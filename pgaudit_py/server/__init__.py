"""The HTTP API (`pip install 'pgaudit_py[server]'`): `create_app` for mounting, `pgaudit serve` to run it."""

from pgaudit_py.server.app import ServerConfig, create_app

__all__ = ["ServerConfig", "create_app"]
