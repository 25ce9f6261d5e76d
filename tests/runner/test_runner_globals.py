"""The globals (`Twilio`, `Runtime`) and `context`, as handlers see them."""

from __future__ import annotations

from typing import Callable

from runner_harness import RunnerHarness
from twilio.request_validator import RequestValidator


def test_twilio_globals_are_usable_at_module_top_level(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({"functions/f.py": """
        import twilio.twiml.messaging_response, twilio.jwt.access_token, twilio.rest
        TOP = Twilio.twiml.MessagingResponse()
        TOP.message("built at import time")
        IDENTITY = {
            "messaging": Twilio.twiml.MessagingResponse is twilio.twiml.messaging_response.MessagingResponse,
            "voice": Twilio.twiml.VoiceResponse.__module__,
            "fax": Twilio.twiml.FaxResponse.__module__,
            "access_token": Twilio.jwt.AccessToken is twilio.jwt.access_token.AccessToken,
            "sync_grant": Twilio.jwt.AccessToken.SyncGrant.__name__,
            "voice_grant": Twilio.jwt.access_token.grants.VoiceGrant.__name__,
            "client": Twilio.Client is twilio.rest.Client and Twilio.rest.Client is twilio.rest.Client,
            "response": Twilio.Response.__name__,
            "runtime": type(Runtime).__name__,
            "exceptions": Twilio.base.exceptions.TwilioRestException.__name__,
        }
        def handler(context, event, callback):
            token = Twilio.jwt.AccessToken("AC" + "0" * 32, "SK" + "0" * 32, "secret", identity="alice")
            token.add_grant(Twilio.jwt.AccessToken.SyncGrant(service_sid="IS" + "0" * 32))
            callback(None, {"identity": IDENTITY, "twiml": str(TOP), "jwt": token.to_jwt().count(".")})
        """})
    body = runner.invoke("f").json()
    assert body["identity"] == {
        "messaging": True, "voice": "twilio.twiml.voice_response", "fax": "twilio.twiml.fax_response",
        "access_token": True, "sync_grant": "SyncGrant", "voice_grant": "VoiceGrant", "client": True,
        "response": "Response", "runtime": "Runtime", "exceptions": "TwilioRestException"}
    assert "built at import time" in body["twiml"] and body["jwt"] == 2


def test_validate_request_uses_the_js_argument_order(make_runner: Callable[..., RunnerHarness]) -> None:
    url, params = "https://example.com/sms?x=1", {"Body": "hi", "From": "+1555"}
    signature = RequestValidator("token123").compute_signature(url, params)
    runner = make_runner({"functions/f.py": """
        def handler(context, event, callback):
            args = ("token123", event["signature"], event["url"], event["params"])
            callback(None, [Twilio.validateRequest(*args), Twilio.validate_request("wrong", *args[1:])])
        """})
    assert runner.invoke("f", {"signature": signature, "url": url, "params": params}).json() == [True, False]


def test_context_built_ins_env_overrides_and_access_styles(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({"functions/f.py": """
        def handler(context, event, callback):
            callback(None, {
                "path": context.PATH, "domain": context.DOMAIN_NAME, "service": context["SERVICE_SID"],
                "env_sid": context.ENVIRONMENT_SID, "mine": context.MY_VAR,
                "missing": getattr(context, "NOPE", "default"), "get": context.get("NOPE"),
            })
        """}, env={"MY_VAR": "hello", "DOMAIN_NAME": "override.example.com"})
    body = runner.invoke("f", context={"PATH": "/f", "DOMAIN_NAME": "host:3000", "SERVICE_SID": "ZS1",
                                       "ENVIRONMENT_SID": "ZE1"}).json()
    assert body == {"path": "/f", "domain": "override.example.com", "service": "ZS1", "env_sid": "ZE1",
                    "mine": "hello", "missing": "default", "get": None}


def test_get_twilio_client_without_credentials_is_a_500(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({"functions/f.py": """
        def handler(context, event, callback):
            client = context.get_twilio_client()
            callback(None, "unreachable")
        """, "functions/camel.py": """
        def handler(context, event, callback):
            context.getTwilioClient()
        """, "functions/sync.py": """
        def handler(context, event, callback):
            Runtime.get_sync()
        """})
    for name in ("f", "camel", "sync"):
        outcome = runner.invoke(name)
        assert outcome.status == 500
        assert "ACCOUNT_SID and AUTH_TOKEN must be set" in outcome.json()["message"]


def test_get_twilio_client_and_get_sync_with_credentials(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({"functions/f.py": """
        def handler(context, event, callback):
            client = context.get_twilio_client()
            sync = Runtime.getSync()
            named = Runtime.get_sync(service_sid="IS123")
            callback(None, [client.account_sid, type(client).__name__, type(sync).__name__,
                            sync._solution["sid"], named._solution["sid"]])
        """}, env={"ACCOUNT_SID": "AC" + "1" * 32, "AUTH_TOKEN": "tok"})
    assert runner.invoke("f").json() == ["AC" + "1" * 32, "Client", "ServiceContext", "default", "IS123"]


def test_runtime_assets_functions_and_require(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({
        "assets/my-file.txt": "Your file contents",
        "assets/secret.private.json": '{"k": 1}',
        "assets/img/logo.png": b"\x89PNG",
        "functions/zz/helper.private.py": """
            COUNTER = []
            def greet(name):
                COUNTER.append(name)
                return f"hello {name}"
            def handler(context, event, callback):
                callback(None, len(COUNTER))
        """,
        "functions/sub/main.py": """
            helper = Runtime.require(Runtime.get_functions()["zz/helper"].path)  # before its turn
            def handler(context, event, callback):
                assets = Runtime.getAssets()
                functions = Runtime.getFunctions()
                same = Runtime.require(functions["zz/helper"]["path"]) is helper
                callback(None, {
                    "assets": sorted(assets), "text": assets["/my-file.txt"].open(),
                    "private": assets["/secret.json"].open(), "asset_path": assets["/img/logo.png"]["path"],
                    "functions": sorted(functions), "fn_path": functions["sub/main"].path,
                    "greet": helper.greet("bob"), "same": same,
                })
        """})
    body = runner.invoke("sub/main").json()
    root = str(runner.project)
    assert body == {
        "assets": ["/img/logo.png", "/my-file.txt", "/secret.json"], "text": "Your file contents",
        "private": '{"k": 1}', "asset_path": f"{root}/assets/img/logo.png",
        "functions": ["sub/main", "zz/helper"], "fn_path": f"{root}/functions/sub/main.py",
        "greet": "hello bob", "same": True,
    }
    assert runner.invoke("zz/helper").body == "1"  # one module object shared by require and the runner


def test_require_accepts_project_relative_paths_and_names(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({
        "functions/a.py": """
            def handler(context, event, callback):
                b1 = Runtime.require("functions/b.py")
                b2 = Runtime.require("functions/b")
                b3 = Runtime.require("b")
                try:
                    Runtime.require("functions/missing.py")
                except ImportError as exc:
                    missing = str(exc)
                try:
                    Runtime.require("functions/broken.py")
                except ImportError as exc:
                    broken = str(exc)
                callback(None, [b1 is b2 is b3, b1.VALUE, missing, broken])
        """,
        "functions/b.py": "VALUE = 'b'\ndef handler(context, event, callback):\n    callback()\n",
        "functions/broken.py": "raise ValueError('nope')\n",
    })
    same, value, missing, broken = runner.invoke("a").json()
    assert same is True and value == "b" and "missing.py" in missing
    assert broken == "functions/broken.py: ValueError: nope (line 1)"


def test_globals_are_per_module_and_builtin(make_runner: Callable[..., RunnerHarness]) -> None:
    runner = make_runner({"functions/f.py": """
        import builtins
        def handler(context, event, callback):
            callback(None, [Twilio is builtins.Twilio, Runtime is builtins.Runtime])
        """})
    assert runner.invoke("f").json() == [True, True]
