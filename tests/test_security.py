"""Sign-in and API tokens, request rates, security headers and the audit log (docs/SECURITY.md)."""

import io
import json
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import throttling
from accounts.models import ApiToken, AuditLog, hash_key
from alerts.models import Alert
from locations.models import Camera, Location

pytestmark = pytest.mark.django_db
PASSWORD = "a-long-test-password-123"


@pytest.fixture(autouse=True)
def fast_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # tests only


def member(username: str, role: str | None, **fields: Any) -> User:
    user = User.objects.create_user(username, password=PASSWORD, **fields)
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


def token_client(key: str, **extra: Any) -> APIClient:
    client = APIClient(**extra)
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


@pytest.fixture
def gate() -> Location:
    return Location.objects.create(name="Gate A", capacity_limit=200)


# --- roles ----------------------------------------------------------------------------------------------------------


def perms_of(role: str) -> set[str]:
    group = Group.objects.get(name=role)
    return {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")}


def test_roles_hold_exactly_their_permissions() -> None:
    read = {
        "locations.view_location",
        "locations.view_camera",
        "locations.view_crowdlog",
        "locations.view_densitysnapshot",
        "alerts.view_alert",
    }
    assert perms_of("viewer") == {"accounts.view_dashboard", *read}
    assert perms_of("operator") == {"accounts.view_dashboard", "alerts.change_alert", *read}
    assert perms_of("integrator") == {"locations.add_crowdlog", *read}
    admin = perms_of("admin")
    assert {"accounts.view_dashboard", "locations.change_location", "locations.add_camera"} <= admin
    assert {
        "alerts.change_alertrule",
        "auth.change_user",
        "accounts.add_apitoken",
        "accounts.view_auditlog",
        "locations.add_crowdlog",
    } <= admin
    assert not {"auth.change_group", "auth.add_permission"} & admin  # roles are assigned, not redefined


def test_an_account_without_a_role_is_a_viewer_until_given_rights_of_its_own() -> None:
    from django.contrib.auth.models import Permission

    newcomer = member("newcomer", None)
    assert newcomer.get_all_permissions() == perms_of("viewer")
    device = member("sensor", None)
    device.user_permissions.add(Permission.objects.get(codename="add_crowdlog"))
    device = User.objects.get(pk=device.pk)  # fresh permission cache
    assert device.get_all_permissions() == {"locations.add_crowdlog"}  # deliberate rights: no dashboard


def test_sync_roles_restores_missing_permissions_and_keeps_extra_ones() -> None:
    from django.contrib.auth.models import Permission
    from django.core.management import call_command

    viewer = Group.objects.get(name="viewer")
    viewer.permissions.remove(Permission.objects.get(codename="view_alert"))
    extra = Permission.objects.get(codename="view_alertrule")
    viewer.permissions.add(extra)
    call_command("sync_roles", stdout=io.StringIO())
    assert "alerts.view_alert" in perms_of("viewer") and "alerts.view_alertrule" in perms_of("viewer")


# --- API tokens -----------------------------------------------------------------------------------------------------


def test_token_endpoint_issues_a_new_hashed_token_each_call(gate: Location) -> None:
    member("sensor", "integrator")
    anonymous = APIClient()
    body = {"username": "sensor", "password": PASSWORD, "name": "north gate counter", "expires_in": 3600}
    first = anonymous.post("/api/auth/token/", body, format="json")
    second = anonymous.post("/api/auth/token/", {"username": "sensor", "password": PASSWORD}, format="json")
    assert first.status_code == second.status_code == 200
    assert first["Cache-Control"] == "no-store"
    one, two = first.json(), second.json()
    assert one["token"] != two["token"] and one["token"].startswith("cm_")
    assert one["token"].startswith(one["prefix"]) and one["name"] == "north gate counter"
    expires = timezone.datetime.fromisoformat(one["expires_at"])
    assert timedelta(minutes=59) < expires - timezone.now() <= timedelta(hours=1)
    # Default lifetime: API_TOKEN_LIFETIME (90 days).
    assert timezone.datetime.fromisoformat(two["expires_at"]) - timezone.now() > timedelta(days=89)

    # At rest: a SHA-256 and a short prefix, never the key.
    stored = list(ApiToken.objects.values())
    assert len(stored) == 2
    assert {row["key_hash"] for row in stored} == {hash_key(one["token"]), hash_key(two["token"])}
    for row in stored:
        assert one["token"] not in json.dumps(row, default=str) and two["token"] not in json.dumps(row, default=str)
        assert len(row["prefix"]) == 11

    for key in (one["token"], two["token"]):
        assert token_client(key).get("/api/locations/").status_code == 200
    issued = AuditLog.objects.filter(object_type="accounts.apitoken", action="create")
    assert [(e.actor_username, e.via) for e in issued] == [("sensor", "api")] * 2
    assert "key_hash" not in issued[0].changes and one["token"] not in json.dumps(issued[0].changes)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"username": "sensor"}, "password"),
        ({"password": PASSWORD}, "username"),
        ({"username": "sensor", "password": PASSWORD, "expires_in": 10}, "expires_in"),
        ({"username": "sensor", "password": PASSWORD, "expires_in": "soon"}, "expires_in"),
        ({"username": "sensor", "password": PASSWORD, "name": "x" * 101}, "name"),
        ({"username": "sen\x00sor", "password": PASSWORD}, "username"),
        ({"username": "sensor", "password": "wrong"}, "non_field_errors"),
        ({"username": "sensor'; DROP TABLE auth_user; --", "password": PASSWORD}, "non_field_errors"),
    ],
)
def test_token_endpoint_rejects_bad_requests(body: dict[str, Any], field: str) -> None:
    member("sensor", "integrator")
    response = APIClient().post("/api/auth/token/", body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert not ApiToken.objects.exists()


def test_inactive_users_get_no_token_and_their_tokens_stop_working(gate: Location) -> None:
    user = member("sensor", "integrator")
    _token, key = ApiToken.issue(user)
    user.is_active = False
    user.save()
    response = APIClient().post("/api/auth/token/", {"username": "sensor", "password": PASSWORD}, format="json")
    assert response.status_code == 400
    assert token_client(key).get("/api/locations/").status_code == 401


def test_revoked_and_expired_tokens_are_refused(gate: Location) -> None:
    user = member("sensor", "integrator")
    revoked, revoked_key = ApiToken.issue(user)
    revoked.revoke()
    _expired, expired_key = ApiToken.issue(user, expires_at=timezone.now() - timedelta(seconds=1))
    _valid, valid_key = ApiToken.issue(user, expires_at=timezone.now() + timedelta(hours=1))
    for key, reason in ((revoked_key, "revoked"), (expired_key, "expired"), ("cm_" + "x" * 43, "Invalid")):
        response = token_client(key).get("/api/locations/")
        assert response.status_code == 401
        assert reason in response.json()["detail"]
        assert response["WWW-Authenticate"] == "Token"
    assert token_client(valid_key).get("/api/locations/").status_code == 200
    for header in ("Token", "Token a b", "Bearer " + valid_key, "Token " + "x" * 5000):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=header)
        assert client.get("/api/locations/").status_code in (401, 403), header


def test_token_records_when_and_where_it_was_last_used(gate: Location) -> None:
    token, key = ApiToken.issue(member("sensor", "integrator"))
    assert token.last_used_at is None
    token_client(key, REMOTE_ADDR="203.0.113.7").get("/api/locations/")
    token.refresh_from_db()
    assert timezone.now() - token.last_used_at < timedelta(seconds=10)
    assert token.last_used_ip == "203.0.113.7"


def test_admin_issues_a_token_shows_the_key_once_and_revokes_it(admin_client: Client, gate: Location) -> None:
    sensor = member("sensor", "integrator")
    form = {"user": sensor.pk, "name": "south gate", "expires_at_0": "", "expires_at_1": ""}
    response = admin_client.post("/admin/accounts/apitoken/add/", form)
    assert response.status_code == 200, response.content
    assert "no-store" in response["Cache-Control"]
    token = ApiToken.objects.get()
    page = response.content.decode()
    key = page.split('id="api-key"')[1].split('value="')[1].split('"')[0]
    assert key.startswith(token.prefix) and hash_key(key) == token.key_hash
    assert token.created_by.username == "admin"

    # Never again: not in the list, not on the token's page, not in the session's messages.
    for url in ("/admin/accounts/apitoken/", f"/admin/accounts/apitoken/{token.pk}/change/"):
        listed = admin_client.get(url)
        assert listed.status_code == 200
        assert key not in listed.content.decode() and token.prefix in listed.content.decode()
    assert token_client(key).get("/api/locations/").status_code == 200

    response = admin_client.post(
        "/admin/accounts/apitoken/", {"action": "revoke_selected", "_selected_action": [token.pk]}, follow=True
    )
    assert "1 token(s) revoked" in response.content.decode()
    assert token_client(key).get("/api/locations/").status_code == 401
    assert AuditLog.objects.filter(object_type="accounts.apitoken", action="update").exists()


# --- integrators: API with tokens only ------------------------------------------------------------------------------


def test_integrators_cannot_sign_in_to_the_dashboard_or_use_the_api_with_a_session(gate: Location) -> None:
    integrator = member("sensor", "integrator")
    browser = Client()
    response = browser.post("/login/", {"username": "sensor", "password": PASSWORD})
    assert response.status_code == 200  # the form again, with the reason
    assert "API tokens only" in str(response.context["form"].errors)
    assert "_auth_user_id" not in browser.session

    # Even with a session (e.g. signed in through admin before the role changed), the API wants a token.
    browser.force_login(integrator)
    assert browser.get("/api/locations/").status_code == 401
    assert browser.get("/").status_code == 302


def test_viewers_use_the_api_with_their_browser_session(gate: Location) -> None:
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(member("watcher", "viewer"))
    assert browser.get("/api/locations/").status_code == 200
    # Unsafe methods with a session need the CSRF token (the pages send it).
    operator = Client(enforce_csrf_checks=True)
    operator.force_login(member("duty", "operator"))
    alert = Alert.objects.create(location=gate, kind="STALE", key="STALE", severity="WARNING", message="m")
    response = operator.post(f"/api/alerts/{alert.pk}/acknowledge/", {}, content_type="application/json")
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]


# --- sign-in lockout ------------------------------------------------------------------------------------------------


def test_login_page_locks_a_username_out_after_repeated_failures(settings: Any) -> None:
    settings.LOGIN_MAX_FAILURES = 3
    member("duty", "operator")
    browser = Client(REMOTE_ADDR="198.51.100.1")
    for _ in range(3):
        assert browser.post("/login/", {"username": "duty", "password": "guess"}).status_code == 200
    # Locked: refused even with the right password, without checking it.
    response = browser.post("/login/", {"username": "duty", "password": PASSWORD})
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 800
    assert "Too many failed sign-in attempts" in response.content.decode()  # shown on the page, not only kept
    assert "_auth_user_id" not in browser.session
    # Same username from elsewhere, other usernames from here: not locked.
    elsewhere = Client(REMOTE_ADDR="198.51.100.2")
    assert elsewhere.post("/login/", {"username": "duty", "password": PASSWORD}).status_code == 302
    member("other", "viewer")
    assert browser.post("/login/", {"username": "other", "password": PASSWORD}).status_code == 302


def test_token_endpoint_and_admin_login_share_the_lockout(settings: Any) -> None:
    settings.LOGIN_MAX_FAILURES = 2
    member("boss", "admin", is_staff=True)
    api = APIClient(REMOTE_ADDR="198.51.100.9")
    for _ in range(2):
        assert api.post("/api/auth/token/", {"username": "boss", "password": "guess"}, format="json").status_code == 400
    response = api.post("/api/auth/token/", {"username": "boss", "password": PASSWORD}, format="json")
    assert response.status_code == 429
    assert "Too many failed sign-in attempts" in response.json()["detail"]
    assert int(response["Retry-After"]) > 0
    admin_login = Client(REMOTE_ADDR="198.51.100.9").post(
        "/admin/login/", {"username": "BOSS", "password": PASSWORD, "next": "/admin/"}
    )
    assert admin_login.status_code == 429
    assert not ApiToken.objects.exists()


def test_a_successful_sign_in_clears_the_failures(settings: Any) -> None:
    settings.LOGIN_MAX_FAILURES = 3
    member("duty", "operator")
    for _ in range(5):
        browser = Client(REMOTE_ADDR="198.51.100.3")
        assert browser.post("/login/", {"username": "duty", "password": "guess"}).status_code == 200
        assert browser.post("/login/", {"username": "duty", "password": "guess"}).status_code == 200
        assert browser.post("/login/", {"username": "duty", "password": PASSWORD}).status_code == 302


def test_many_usernames_from_one_address_lock_the_address(settings: Any) -> None:
    settings.LOGIN_MAX_FAILURES_PER_IP = 4
    member("duty", "operator")
    api = APIClient(REMOTE_ADDR="198.51.100.4")
    for i in range(4):
        api.post("/api/auth/token/", {"username": f"user{i}", "password": "guess"}, format="json")
    response = api.post("/api/auth/token/", {"username": "duty", "password": PASSWORD}, format="json")
    assert response.status_code == 429


def test_forged_forwarded_for_does_not_escape_the_lockout(settings: Any) -> None:
    """With NUM_PROXIES=0 (no proxy in front) X-Forwarded-For is the client's own claim and is ignored."""
    settings.LOGIN_MAX_FAILURES = 2
    member("duty", "operator")
    for i in range(3):
        APIClient(REMOTE_ADDR="198.51.100.5", HTTP_X_FORWARDED_FOR=f"10.0.0.{i}").post(
            "/api/auth/token/", {"username": "duty", "password": "guess"}, format="json"
        )
    response = APIClient(REMOTE_ADDR="198.51.100.5", HTTP_X_FORWARDED_FOR="10.9.9.9").post(
        "/api/auth/token/", {"username": "duty", "password": PASSWORD}, format="json"
    )
    assert response.status_code == 429


# --- request rates --------------------------------------------------------------------------------------------------


@pytest.fixture
def low_rates(monkeypatch: pytest.MonkeyPatch) -> None:
    rates = {"anon": "3/min", "user": "6/min", "readings": "3/min", "auth": "2/min"}
    for throttle in (
        throttling.TokenOrUserRateThrottle,
        throttling.ReadingsRateThrottle,
        throttling.AnonymousRateThrottle,
        throttling.TokenEndpointThrottle,
        throttling.InvalidTokenThrottle,
    ):
        monkeypatch.setattr(throttle, "THROTTLE_RATES", rates)


@pytest.mark.usefixtures("low_rates")
def test_readings_are_rate_limited_per_token(gate: Location) -> None:
    sensor = member("sensor", "integrator")
    _one, key_one = ApiToken.issue(sensor)
    _two, key_two = ApiToken.issue(sensor)
    url = f"/api/locations/{gate.pk}/readings/"
    statuses = [token_client(key_one).post(url, {"count": 5}, format="json").status_code for _ in range(4)]
    assert statuses == [201, 201, 201, 429]
    refused = token_client(key_one).post(url, {"count": 5}, format="json")
    assert "throttled" in refused.json()["detail"] and int(refused["Retry-After"]) > 0
    # Another token has its own budget; reading still works for the throttled one until the user budget is spent.
    assert token_client(key_two).post(url, {"count": 5}, format="json").status_code == 201
    assert token_client(key_one).get(url).status_code == 200
    assert gate.crowd_logs.count() == 4


@pytest.mark.usefixtures("low_rates")
def test_anonymous_requests_are_rate_limited_per_address() -> None:
    statuses = [APIClient(REMOTE_ADDR="198.51.100.7").get("/api/schema/").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    # Another address is not affected; a forged X-Forwarded-For does not make a new address.
    assert APIClient(REMOTE_ADDR="198.51.100.8").get("/api/schema/").status_code == 200
    forged = APIClient(REMOTE_ADDR="198.51.100.7", HTTP_X_FORWARDED_FOR="192.0.2.1")
    assert forged.get("/api/schema/").status_code == 429


@pytest.mark.usefixtures("low_rates")
def test_guessing_tokens_is_rate_limited_per_address(gate: Location) -> None:
    _token, key = ApiToken.issue(member("sensor", "integrator"))
    guesser = token_client("cm_" + "g" * 43, REMOTE_ADDR="198.51.100.11")
    assert [guesser.get("/api/locations/").status_code for _ in range(4)] == [401, 401, 401, 429]
    # A valid token from the same address still works: only failures are counted.
    assert token_client(key, REMOTE_ADDR="198.51.100.11").get("/api/locations/").status_code == 200


@pytest.mark.usefixtures("low_rates")
def test_token_requests_are_rate_limited_per_address() -> None:
    member("sensor", "integrator")
    api = APIClient(REMOTE_ADDR="198.51.100.10")
    body = {"username": "sensor", "password": PASSWORD}
    assert [api.post("/api/auth/token/", body, format="json").status_code for _ in range(3)] == [200, 200, 429]


def test_behind_a_proxy_the_forwarded_address_counts(settings: Any) -> None:
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    settings.LOGIN_MAX_FAILURES = 2
    member("duty", "operator")
    for _ in range(2):
        APIClient(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.50").post(
            "/api/auth/token/", {"username": "duty", "password": "guess"}, format="json"
        )
    locked = APIClient(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.50")
    other_client = APIClient(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.51")
    body = {"username": "duty", "password": PASSWORD}
    assert locked.post("/api/auth/token/", body, format="json").status_code == 429
    assert other_client.post("/api/auth/token/", body, format="json").status_code == 200


def test_an_unreachable_cache_does_not_take_the_api_or_sign_in_down(
    gate: Location, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis restarting: rates and lockouts are not enforced for a moment, but nothing answers 500."""
    from django.core.cache import caches

    sensor = member("sensor", "integrator")
    _token, key = ApiToken.issue(sensor)

    def down(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("cache down")

    for method in ("get", "set", "add", "incr", "delete", "get_many", "set_many"):
        monkeypatch.setattr(type(caches["default"]), method, down)
    client = token_client(key)
    assert client.get("/api/locations/").status_code == 200
    assert client.post(f"/api/locations/{gate.pk}/readings/", {"count": 5}, format="json").status_code == 201
    assert token_client("cm_" + "z" * 43).get("/api/locations/").status_code == 401
    body = {"username": "sensor", "password": PASSWORD}
    assert APIClient().post("/api/auth/token/", body, format="json").status_code == 200
    assert APIClient().post("/api/auth/token/", {**body, "password": "x"}, format="json").status_code == 400
    member("duty", "operator")
    assert Client().post("/login/", {"username": "duty", "password": PASSWORD}).status_code == 302


# --- headers, cookies, HTTPS ----------------------------------------------------------------------------------------


def test_pages_send_a_strict_content_security_policy_and_security_headers(gate: Location) -> None:
    browser = Client()
    browser.force_login(member("watcher", "viewer"))
    for path in ("/", f"/locations/{gate.pk}/", "/alerts/", "/login/", "/api/locations/"):
        response = browser.get(path)
        assert response.status_code == 200, path
        csp = dict(d.strip().split(" ", 1) for d in response["Content-Security-Policy"].split(";"))
        assert csp["default-src"] == "'self'"
        assert csp["script-src"] == "'self'" and csp["style-src"] == "'self'"
        assert csp["img-src"] == "'self' data: blob:"
        assert csp["connect-src"] == "'self' ws://testserver"
        assert csp["object-src"] == "'none'" and csp["frame-ancestors"] == "'none'" and csp["base-uri"] == "'self'"
        assert response["X-Frame-Options"] == "DENY"
        assert response["Referrer-Policy"] == "same-origin"
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Cross-Origin-Opener-Policy"] == "same-origin"
        assert "camera=()" in response["Permissions-Policy"]


def test_map_tile_host_is_allowed_for_images_only(settings: Any) -> None:
    from crowd_monitor.settings import _tile_origin

    assert _tile_origin("https://{s}.tile.openstreetmap.org/{z}/{x}/{y}.png") == "https://*.tile.openstreetmap.org"
    settings.CSP_IMG_SRC = ["https://*.tile.openstreetmap.org"]
    response = Client().get("/login/")
    assert "img-src 'self' data: blob: https://*.tile.openstreetmap.org;" in response["Content-Security-Policy"]
    assert "openstreetmap" not in response["Content-Security-Policy"].split("img-src")[0]


def test_session_and_csrf_cookies_are_http_only_and_same_site() -> None:
    member("duty", "operator")
    browser = Client()
    browser.get("/login/")
    response = browser.post("/login/", {"username": "duty", "password": PASSWORD})
    assert response.status_code == 302
    session = response.cookies["sessionid"]
    assert session["httponly"] and session["samesite"] == "Lax"
    assert int(session["max-age"]) == 12 * 3600
    csrf = browser.get("/login/").cookies.get("csrftoken") or response.cookies.get("csrftoken")
    if csrf is not None:
        assert csrf["httponly"]


def test_https_redirect_and_hsts(settings: Any) -> None:
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31536000
    response = Client().get("/login/")
    assert response.status_code == 301 and response["Location"] == "https://testserver/login/"
    secure = Client().get("/login/", HTTP_X_FORWARDED_PROTO="https")
    assert secure.status_code == 200
    assert secure["Strict-Transport-Security"].startswith("max-age=31536000")
    # Probes over plain HTTP still get answers.
    assert Client().get("/healthz").status_code == 200
    assert Client().get("/readyz").status_code == 200


def test_production_settings_are_secure() -> None:
    """With DEBUG off and only the documented production variables, every security setting is on."""
    import os
    import subprocess
    import sys

    from django.conf import settings

    env = {
        **os.environ,
        "DEBUG": "False",
        "SECRET_KEY": "a-production-length-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        "ALLOWED_HOSTS": "crowd.example.org",
        "CSRF_TRUSTED_ORIGINS": "https://crowd.example.org",
    }
    for name in ("SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE"):
        env.pop(name, None)
    code = (
        "import django, json; django.setup(); from django.conf import settings as s; "
        "print(json.dumps({n: getattr(s, n) for n in ('SECURE_SSL_REDIRECT', 'SESSION_COOKIE_SECURE', "
        "'CSRF_COOKIE_SECURE', 'SESSION_COOKIE_HTTPONLY', 'CSRF_COOKIE_HTTPONLY', 'SECURE_HSTS_SECONDS', "
        "'SECURE_HSTS_INCLUDE_SUBDOMAINS', 'X_FRAME_OPTIONS', 'DEBUG', 'CSRF_TRUSTED_ORIGINS')}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=settings.BASE_DIR,
        env={**env, "DJANGO_SETTINGS_MODULE": "crowd_monitor.settings"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout.strip().splitlines()[-1])
    assert values == {
        "SECURE_SSL_REDIRECT": True,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SESSION_COOKIE_HTTPONLY": True,
        "CSRF_COOKIE_HTTPONLY": True,
        "SECURE_HSTS_SECONDS": 31536000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "X_FRAME_OPTIONS": "DENY",
        "DEBUG": False,
        "CSRF_TRUSTED_ORIGINS": ["https://crowd.example.org"],
    }


# --- the audit log --------------------------------------------------------------------------------------------------


def test_location_changes_over_the_api_are_audited(gate: Location) -> None:
    boss = member("boss", "admin", is_staff=True)
    _token, key = ApiToken.issue(boss)
    client = token_client(key, REMOTE_ADDR="203.0.113.20")
    response = client.patch(f"/api/locations/{gate.pk}/", {"capacity_limit": 300, "alert_threshold": 90}, format="json")
    assert response.status_code == 200
    entry = AuditLog.objects.get(object_type="locations.location", action="update")
    assert (entry.actor, entry.actor_username, entry.ip, entry.via) == (boss, "boss", "203.0.113.20", "api")
    assert entry.object_id == str(gate.pk) and entry.object_repr == "Gate A"
    assert entry.changes == {
        "capacity_limit": {"old": 200, "new": 300},
        "alert_threshold": {"old": 80.0, "new": 90.0},
    }
    # An unchanged value is no change; readings (live state) are not audited.
    client.patch(f"/api/locations/{gate.pk}/", {"capacity_limit": 300}, format="json")
    client.post(f"/api/locations/{gate.pk}/readings/", {"count": 20}, format="json")
    assert AuditLog.objects.filter(object_type="locations.location").count() == 1
    created = client.post("/api/locations/", {"name": "Hall", "capacity_limit": 5}, format="json").json()
    entry = AuditLog.objects.get(action="create", object_id=str(created["id"]))
    assert entry.changes["name"] == {"new": "Hall"} and entry.changes["capacity_limit"] == {"new": 5}


def test_alert_state_changes_are_audited_with_who_and_the_note(gate: Location) -> None:
    operator = member("duty", "operator")
    alert = Alert.objects.create(location=gate, kind="STALE", key="STALE", severity="WARNING", message="m")
    _token, key = ApiToken.issue(operator)
    client = token_client(key)
    client.post(f"/api/alerts/{alert.pk}/acknowledge/", {"note": "Sending staff"}, format="json")
    client.post(f"/api/alerts/{alert.pk}/resolve/", {}, format="json")
    entries = list(AuditLog.objects.filter(object_type="alerts.alert").order_by("id"))
    assert [(e.action, e.actor_username, e.changes) for e in entries] == [
        (
            "acknowledge",
            "duty",
            {"status": {"old": "ACTIVE", "new": "ACKNOWLEDGED"}, "note": {"old": "", "new": "Sending staff"}},
        ),
        ("resolve", "duty", {"status": {"old": "ACKNOWLEDGED", "new": "RESOLVED"}}),
    ]


def test_admin_changes_are_audited_and_camera_sources_never_logged(admin_client: Client, gate: Location) -> None:
    secret = "S3cret-Pa55"
    camera = Camera.objects.create(location=gate, name="North", source=f"rtsp://admin:{secret}@10.1.2.3:554/live")
    page = admin_client.get(f"/admin/locations/camera/{camera.pk}/change/").content.decode()
    assert secret not in page and "rtsp://admin:***@10.1.2.3:554/live" in page

    form = {
        "location": gate.pk,
        "name": "North",
        "source": "rtsp://admin:***@10.1.2.3:554/live",  # as shown: kept
        "enabled": "on",
        "counting_mode": "auto",
        "zone": "[]",
        "calibration": "{}",
    }
    form = {k: v for k, v in form.items() if k in _camera_form_fields(admin_client, camera)}
    response = admin_client.post(f"/admin/locations/camera/{camera.pk}/change/", {**form, "name": "North gate"})
    assert response.status_code == 302, response.content.decode()[:3000]
    camera.refresh_from_db()
    assert camera.source == f"rtsp://admin:{secret}@10.1.2.3:554/live" and camera.name == "North gate"

    new_secret = "N3w-Secret"
    response = admin_client.post(
        f"/admin/locations/camera/{camera.pk}/change/",
        {**form, "name": "North gate", "source": f"rtsp://admin:{new_secret}@10.1.2.3:554/live"},
    )
    assert response.status_code == 302
    camera.refresh_from_db()
    assert new_secret in camera.source

    entries = list(AuditLog.objects.filter(object_type="locations.camera").order_by("id"))
    assert [(e.action, e.via, e.actor_username) for e in entries] == [("update", "admin", "admin")] * 2
    assert entries[0].changes == {"name": {"old": "North", "new": "North gate"}}
    assert entries[1].changes == {"source": {"changed": True}}
    everything = json.dumps(list(AuditLog.objects.values()), default=str)
    assert secret not in everything and new_secret not in everything


def _camera_form_fields(admin_client: Client, camera: Camera) -> set[str]:
    response = admin_client.get(f"/admin/locations/camera/{camera.pk}/change/")
    return set(response.context["adminform"].form.fields)


def test_role_changes_are_audited(admin_client: Client) -> None:
    user = member("newbie", None)
    user.groups.add(Group.objects.get(name="viewer"))  # outside a request: not audited
    assert not AuditLog.objects.exists()
    response = admin_client.post(
        f"/admin/auth/user/{user.pk}/change/",
        {
            "username": "newbie",
            "groups": [Group.objects.get(name="operator").pk],
            "is_active": "on",
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    changes = [e.changes for e in AuditLog.objects.filter(object_type="auth.user")]
    assert {"groups": {"removed": ["viewer"]}} in changes and {"groups": {"added": ["operator"]}} in changes


def test_audit_log_is_read_only_in_admin(admin_client: Client, gate: Location) -> None:
    boss = member("boss", "admin", is_staff=True)
    _token, key = ApiToken.issue(boss)
    token_client(key).patch(f"/api/locations/{gate.pk}/", {"capacity_limit": 300}, format="json")
    entry = AuditLog.objects.get()
    assert admin_client.get("/admin/accounts/auditlog/").status_code == 200
    assert admin_client.get(f"/admin/accounts/auditlog/{entry.pk}/change/").status_code == 200
    assert admin_client.get("/admin/accounts/auditlog/add/").status_code == 403
    assert admin_client.post(f"/admin/accounts/auditlog/{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AuditLog.objects.filter(pk=entry.pk).exists()


def test_admin_role_cannot_make_superusers_or_take_over_one(gate: Location) -> None:
    boss = member("boss", "admin", is_staff=True)
    root = User.objects.create_superuser("root", "root@example.com", PASSWORD)
    browser = Client()
    browser.force_login(boss)
    assert browser.get(f"/admin/auth/user/{root.pk}/password/").status_code == 403
    assert browser.post(f"/admin/auth/user/{root.pk}/delete/", {"post": "yes"}).status_code == 403
    helper = member("helper", "viewer")
    page = browser.get(f"/admin/auth/user/{helper.pk}/change/")
    assert page.status_code == 200
    assert 'name="is_superuser"' not in page.content.decode()
    assert 'name="user_permissions"' not in page.content.decode()
    assert 'name="groups"' in page.content.decode()


# --- hostile input --------------------------------------------------------------------------------------------------

SQLISH = "Gate'); DROP TABLE locations_location; --"
UNICODE = "Kaaba \u202eetaG\u202c \U0001f54b \u0645\u0637\u0627\u0641 Z\u0351\u0317a\u0362lgo \u00e9\u0301"


def test_sql_looking_and_unicode_text_is_stored_as_text(gate: Location) -> None:
    boss = member("boss", "admin", is_staff=True)
    _token, key = ApiToken.issue(boss)
    client = token_client(key)
    for name in (SQLISH, UNICODE):
        response = client.post("/api/locations/", {"name": name, "capacity_limit": 10}, format="json")
        assert response.status_code == 201, response.content
        assert client.get(f"/api/locations/{response.json()['id']}/").json()["name"] == name
    assert Location.objects.filter(name__in=[SQLISH, UNICODE]).count() == 2
    assert Location.objects.count() == 3

    alert = Alert.objects.create(location=gate, kind="STALE", key="STALE", severity="WARNING", message="m")
    note = f"{SQLISH} {UNICODE}"
    response = client.post(f"/api/alerts/{alert.pk}/acknowledge/", {"note": note}, format="json")
    assert response.status_code == 200 and response.json()["note"] == note


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("post", "/api/locations/", {"name": "Gate\x00B", "capacity_limit": 10}, "name"),
        ("patch", "/api/locations/{loc}/", {"description": "a\x00b"}, "description"),
        ("post", "/api/alerts/{alert}/resolve/", {"note": "done\x00"}, "note"),
        ("get", "/api/alerts/?status=ACTIVE' OR '1'='1", None, "status"),
        ("get", "/api/alerts/?location=1;DROP TABLE alerts_alert", None, "location"),
        ("get", "/api/alerts/?kind=%00", None, "kind"),
        ("get", "/api/alerts/?since=1' OR ''='", None, "since"),
        ("get", "/api/alerts/?page_size=1001", None, "page_size"),
        ("get", "/api/alerts/?page_size=-1", None, "page_size"),
        ("get", "/api/alerts/?page_size=%EF%BC%95", None, "page_size"),  # a full-width digit
        ("get", "/api/locations/{loc}/history/?range=century", None, "range"),
        ("get", "/api/cameras/{cam}/heatmap/?cols=100000", None, "cols"),
        ("get", "/api/cameras/{cam}/heatmap/?since=2999-01-01T00:00:00Z", None, "since"),
    ],
)
def test_hostile_values_get_a_clear_400_and_change_nothing(
    gate: Location, method: str, path: str, body: Any, field: str
) -> None:
    boss = member("boss", "admin", is_staff=True)
    _token, key = ApiToken.issue(boss)
    camera = Camera.objects.create(location=gate, name="North", source="/dev/null")
    alert = Alert.objects.create(location=gate, kind="STALE", key="STALE", severity="WARNING", message="m")
    before = (list(Location.objects.values()), list(Alert.objects.values()))
    url = path.format(loc=gate.pk, alert=alert.pk, cam=camera.pk)
    client = token_client(key)
    response = client.get(url) if method == "get" else getattr(client, method)(url, body, format="json")
    assert response.status_code == 400, (url, response.status_code, response.content)
    assert field in response.json(), response.json()
    assert (list(Location.objects.values()), list(Alert.objects.values())) == before


@pytest.mark.django_db(transaction=True)
def test_websocket_survives_huge_unicode_and_sql_looking_frames(live_asgi_server: Any, session_cookie_for: Any) -> None:
    import asyncio

    from websockets.asyncio.client import connect

    gate = Location.objects.create(name="Gate A", capacity_limit=100)
    sessionid = session_cookie_for(member("watcher", "viewer"))
    frames = [
        "x" * (1024 * 1024),  # 1 MiB of junk
        '{"type": "' + "p" * 500_000 + '"}',
        json.dumps({"type": SQLISH}),
        json.dumps({"type": UNICODE, "location_id": "1 OR 1=1"}),
        "\udcff".encode("utf-8", "surrogatepass").decode("utf-8", "replace"),
        json.dumps({"type": "ping", "extra": [None] * 10000}),
    ]

    async def scenario() -> list[dict[str, Any]]:
        async with connect(
            live_asgi_server.ws_url + "/ws/crowd/",
            additional_headers=live_asgi_server.ws_headers(sessionid),
            proxy=None,
            max_size=None,
        ) as ws:
            replies = [json.loads(await asyncio.wait_for(ws.recv(), 5))]  # the location's state
            for frame in frames:
                await ws.send(frame)
                replies.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
            await ws.send('{"type": "ping"}')
            replies.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
            return replies

    first, *answers, last = asyncio.run(scenario())
    assert first["location_id"] == gate.pk
    assert [a["type"] for a in answers] == ["error"] * 5 + ["pong"]
    assert all(len(json.dumps(a)) < 200 for a in answers)  # errors do not echo the input back
    assert last == {"type": "pong"}
