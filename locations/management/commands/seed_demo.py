import importlib.util
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from locations.models import Camera, Location

SHARED_DATA = settings.BASE_DIR.parent / "shared" / "data"
# Found without importing ultralytics (and torch): seeding must be quick.
ULTRALYTICS_ASSETS = Path(importlib.util.find_spec("ultralytics").origin).parent / "assets"

# name, latitude, longitude, capacity, description
LOCATIONS = [
    ("Campus Walkway", 51.4531, -0.9731, 10, "Pedestrian walkway watched by a fixed camera (PETS09 S2L1)."),
    ("Mall Atrium", 51.5072, -0.2213, 60, "Shopping-centre atrium, ground floor."),
    ("Central Station Concourse", 51.5308, -0.1238, 400, "Main concourse between platforms 1 and 8."),
    ("Stadium North Gate", 51.5560, -0.2795, 1500, "Turnstiles and forecourt at the north entrance."),
]


def demo_sources() -> dict[str, str]:
    """Camera sources for the demo: real footage from ../shared when present, else ultralytics' samples."""
    video = SHARED_DATA / "video" / "pets09_s2l1_view001_frames301-795.mp4"
    mall = SHARED_DATA / "mall" / "images"
    sources = {}
    sources["Campus Walkway"] = f"file://{video}?loop=1" if video.exists() else str(ULTRALYTICS_ASSETS / "*.jpg")
    if mall.is_dir():
        sources["Mall Atrium"] = str(mall)
    return sources


class Command(BaseCommand):
    help = "Create demo locations, cameras on real footage, and a demo login (printed)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="demo")
        parser.add_argument("--password", help="default: a new random password, printed")

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        for name, lat, lon, capacity, description in LOCATIONS:
            location, created = Location.objects.get_or_create(
                name=name,
                defaults={"latitude": lat, "longitude": lon, "capacity_limit": capacity, "description": description},
            )
            self.stdout.write(f"{'Created' if created else 'Kept'} location {location.name} (capacity {capacity})")
        for location_name, source in demo_sources().items():
            camera, created = Camera.objects.update_or_create(
                location=Location.objects.get(name=location_name), name="Camera 1", defaults={"source": source}
            )
            self.stdout.write(f"{'Created' if created else 'Updated'} camera {camera} -> {source}")

        password = options["password"] or secrets.token_urlsafe(9)
        user, _ = get_user_model().objects.get_or_create(username=options["username"])
        try:  # the demo login is a superuser: a chosen password must pass the same checks as any other
            validate_password(password, user)
        except ValidationError as exc:
            raise CommandError(f"--password: {' '.join(exc.messages)}") from exc
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        self.stdout.write(self.style.SUCCESS(f"Demo login: {user.username} / {password}"))
