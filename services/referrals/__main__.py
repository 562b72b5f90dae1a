"""``python -m services.referrals``: serve the referrals API."""

from kizuna.serve import serve
from kizuna.settings import ServiceSettings

from .app import create_app

if __name__ == "__main__":
    settings = ServiceSettings(service_name="referrals")
    serve(create_app(settings), settings)
