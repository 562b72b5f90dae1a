"""``python -m services.identity``: serve people's sign-in and accounts."""

from kizuna.serve import serve
from kizuna.settings import ServiceSettings

from .app import create_app

if __name__ == "__main__":
    settings = ServiceSettings(service_name="identity")
    serve(create_app(settings), settings)
