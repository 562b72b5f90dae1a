"""``python -m services.members``: serve the members API."""

from kizuna.serve import serve
from kizuna.settings import ServiceSettings

from .app import create_app

if __name__ == "__main__":
    settings = ServiceSettings(service_name="members")
    serve(create_app(settings), settings)
