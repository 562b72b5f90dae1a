"""``python -m services.notifications``: serve the notifications API and send what is due."""

from kizuna.serve import serve
from kizuna.settings import ServiceSettings

from .app import create_app

if __name__ == "__main__":
    settings = ServiceSettings(service_name="notifications")
    serve(create_app(settings), settings)
