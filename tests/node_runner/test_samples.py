"""Every JavaScript sample of functions-execution.md, verbatim, gives the documented response.

The samples below are copied character for character from /work/shared/spec/functions-execution.md
(`SAMPLES`: the titled handler samples; `SNIPPETS`: the untitled fragments, run inside a module or
a handler). The SMS samples have no credentials here, so context.getTwilioClient() throws and the
uncaught error is a 500 naming the missing ACCOUNT_SID / AUTH_TOKEN.
"""

from __future__ import annotations

import re

import pytest

SAMPLES = {
    'Handler Method Boilerplate': '''\
exports.handler = (context, event, callback) => {
  // Your application logic

  // To emit a response and stop execution, call the callback() method
  return callback();
};
''',
    'Use built-in Twilio REST Helper to send an SMS Message': '''\
exports.handler = (context, event, callback) => {
  // Access the pre-initialized Twilio REST client
  const twilioClient = context.getTwilioClient();

  // Determine message details from the incoming event, with fallback values
  const from = event.From || "+15095550100";
  const to = event.To || "+15105550101";
  const body = event.Body || "Ahoy, World!";

  twilioClient.messages
    .create({ to, from, body })
    .then((result) => {
      console.log("Created message using callback");
      console.log(result.sid);
      return callback();
    })
    .catch((error) => {
      console.error(error);
      return callback(error);
    });
};
''',
    'Retrieve Domain from Default Environment Variables': '''\
exports.handler = (context, event, callback) => {
  // Check to see if the Domain name is null
  const domain = context.DOMAIN_NAME || "No Domain available";
  // Respond with the Domain hosting this Function
  return callback(null, domain);
};
''',
    'Retrieve Environment Variables': '''\
exports.handler = (context, event, callback) => {
  // Get the primary and secondary phone numbers, if set
  const primary = context.PRIMARY_PHONE_NUMBER || "There is no primary number";
  const secondary =
    context.SECONDARY_PHONE_NUMBER || "There is no secondary number!";

  // Build our response object
  const response = {
    phone_numbers: {
      primary,
      backup: secondary,
    },
  };

  // Return the response object as JSON
  return callback(null, response);
};
''',
    'Access webhook values from event': '''\
// !mark(6)
exports.handler = (context, event, callback) => {
  // Prepare a new messaging response object; no need to import Twilio
  const twiml = new Twilio.twiml.MessagingResponse();
  // Access incoming text information like the from number and contents off of `event`
  // Access environment variables and other runtime data from `context`
  twiml.message({ to: context.MY_NUMBER }, `${event.From}: ${event.Body}`);
  // Remember to return the TwiML as the second argument to `callback`
  return callback(null, twiml);
};
''',
    'Complete Execution with Asynchronous HTTP Request': '''\
exports.handler = (context, event, callback) => {
  // Fetch the already initialized Twilio REST client
  const client = context.getTwilioClient();

  // Determine message details from the incoming event, with fallback values
  const from = event.From || "+15095550100";
  const to = event.To || "+15105550101";
  const body = event.Body || "Ahoy, World!";

  client.messages
    .create({ to, from, body })
    .then((result) => {
      console.log("Created message using callback");
      console.log(result.sid);
      // Callback is placed inside the successful response of the request
      return callback();
    })
    .catch((error) => {
      console.error(error);
      // Callback is also used in the catch handler to end execution on errors
      return callback(error);
    });

  // If you were to place the callback() function here, instead, then the process would
  // terminate before your API request to create a message could complete.
};
''',
    'Return an Error Response': '''\
exports.handler = (context, event, callback) => {
  // Providing a single string or an Error object will result in a 500 Error
  return callback("Something went very, very wrong.");
};
''',
    'Return a Simple Successful Response': '''\
exports.handler = (context, event, callback) => {
  // Providing neither error nor response will result in a 200 OK
  return callback();
};
''',
    'Return a Successful Plaintext Response': '''\
exports.handler = (context, event, callback) => {
  // Providing a string will result in a 200 OK
  return callback(null, "This is fine");
};
''',
    'Return a Successful JSON Response': '''\
exports.handler = (context, event, callback) => {
  // Construct an object in any way
  const response = { result: "winner winner!" };
  // A JavaScript object as a response will be serialized to JSON and returned
  // with the Content-Type header set to "application/json" automatically
  return callback(null, response);
};
''',
    'Return a static Messaging response to incoming text messages': '''\
exports.handler = (context, event, callback) => {
  // Create a new messaging response object
  const twiml = new Twilio.twiml.MessagingResponse();
  // Use any of the Node.js SDK methods, such as `message`, to compose a response
  twiml.message("Hello, World!");
  // Return the TwiML as the second argument to `callback`
  // This will render the response as XML in reply to the webhook request
  return callback(null, twiml);
};
''',
    'Return a Voice response that includes Say and Play verbs': '''\
exports.handler = (context, event, callback) => {
  // Create a new voice response object
  const twiml = new Twilio.twiml.VoiceResponse();
  // Webhook information is accessible as properties of the `event` object
  const city = event.FromCity;
  const number = event.From;

  // You can optionally edit the voice used, template variables into your
  // response, play recorded audio, and more
  twiml.say({ voice: "alice" }, `Never gonna give you up, ${city || number}`);
  twiml.play("https://demo.twilio.com/docs/classic.mp3");
  // Return the TwiML as the second argument to `callback`
  // This will render the response as XML in reply to the webhook request
  return callback(null, twiml);
};
''',
    'Set a Status Code in a Response': '''\
exports.handler = (context, event, callback) => {
  // No need to import Twilio; it is globally available in Functions
  const response = new Twilio.Response();

  // Set the status code to 204 Not Content
  response.setStatusCode(204);

  return callback(null, response);
};
''',
    'Build a Plaintext Response': '''\
exports.handler = (context, event, callback) => {
  // No need to import Twilio; it is globally available in Functions
  const response = new Twilio.Response();

  response
    // Set the status code to 200 OK
    .setStatusCode(200)
    // Set the response body
    .setBody("This is fine");

  return callback(null, response);
};
''',
    'Building a JSON Response': '''\
exports.handler = (context, event, callback) => {
  // No need to import Twilio; it is globally available in Functions
  const response = new Twilio.Response();

  response
    // Set the status code to 200 OK
    .setStatusCode(200)
    // Set the Content-Type Header
    .appendHeader("Content-Type", "application/json")
    // Set the response body
    .setBody({
      everything: "is alright",
    });

  return callback(null, response);
};
''',
    'Set an HTTP Header in a Response': '''\
exports.handler = (context, event, callback) => {
  // No need to import Twilio; it is globally available in Functions
  const response = new Twilio.Response();

  response
    // Set the status code to 301 Redirect
    .setStatusCode(301)
    // Set the Location header for redirect
    .appendHeader("Location", "https://twilio.com");

  return callback(null, response);
};
''',
    'Set Multiple HTTP Headers in a Response': '''\
exports.handler = (context, event, callback) => {
  // No need to import Twilio; it is globally available in Functions
  const response = new Twilio.Response();

  // Build a mapping of headers as a way to set many with one command
  const headers = {
    "Access-Control-Allow-Origin": "example.com",
    "Access-Control-Allow-Methods": "GET,PUT,POST,DELETE,OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type",
  };

  // Set headers in response
  response.setHeaders(headers);

  return callback(null, response);
};
''',
}
SNIPPETS = [
    '''\
return callback(error);
''',
    '''\
return callback(null, response);
''',
    '''\
// Initialize TwiML without needing to import Twilio
const response = new Twilio.twiml.MessagingResponse();

// Similarly for other utilities, such as Access Tokens
const AccessToken = Twilio.jwt.AccessToken;
const SyncGrant = AccessToken.SyncGrant;
''',
    '''\
const text = Runtime.getAssets()["/my-file.txt"].open();
console.log("Your file contents: " + text);
''',
    '''\
// No need to import Twilio; it is globally available in Functions
const response = new Twilio.Response();
''',
]

TEXT = "text/plain; charset=utf-8"
JSON = "application/json; charset=utf-8"
XML = "text/xml; charset=utf-8"
XML_DECL = '<?xml version="1.0" encoding="UTF-8"?>'


def slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


@pytest.fixture(scope="module")
def samples_project() -> dict[str, str]:
    files = {f"functions/{slug(title)}.js": code for title, code in SAMPLES.items()}
    twilio_snippet, asset_snippet, response_snippet = SNIPPETS[2:]
    files["functions/snippet-error.js"] = (
        "exports.handler = (context, event, callback) => {\n  const error = new Error('boom');\n  "
        + SNIPPETS[0] + "};\n"
    )
    files["functions/snippet-response.js"] = (
        "exports.handler = (context, event, callback) => {\n  const response = { ok: true };\n  "
        + SNIPPETS[1] + "};\n"
    )
    # The fragments about globals run at module top level, before any handler: that is where the
    # hosted service lets them run too.
    files["functions/snippet-globals.js"] = (
        twilio_snippet + "\n"
        + "exports.handler = (context, event, callback) => {\n"
        + "  response.message('top level');\n"
        + "  return callback(null, { twiml: response.toString(), grant: typeof SyncGrant, token: typeof AccessToken });\n"
        + "};\n"
    )
    files["functions/snippet-asset.js"] = (
        "exports.handler = (context, event, callback) => {\n" + asset_snippet + "  return callback(null, text);\n};\n"
    )
    files["functions/snippet-twilio-response.js"] = (
        response_snippet + "exports.handler = (context, event, callback) => callback(null, response.setBody('made at load'));\n"
    )
    files["assets/my-file.txt"] = "the contents of my file\n"
    return files


@pytest.fixture
def runner(node_runner, samples_project):
    return node_runner(samples_project, env={"MY_NUMBER": "+15550001111"})


def test_samples_all_load(runner) -> None:
    """Every sample module loads without a load error."""
    assert runner.ready["load_errors"] == {}


def test_boilerplate_is_an_empty_200(runner) -> None:
    out = runner.invoke(slug("Handler Method Boilerplate"))
    assert (out.status, out.result["headers"], out.body) == (200, [], b"")
    assert out.done["clean"] is True


@pytest.mark.parametrize("title", [
    "Use built-in Twilio REST Helper to send an SMS Message",
    "Complete Execution with Asynchronous HTTP Request",
])
def test_sms_samples_without_credentials_are_500_from_get_twilio_client(runner, title) -> None:
    out = runner.invoke(slug(title), {"From": "+15550000001", "Body": "hi", "request": {"headers": {}, "cookies": {}}})
    assert out.status == 500
    assert out.header("Content-Type") == JSON
    body = out.json()
    assert body["name"] == "Error"
    assert "context.getTwilioClient()" in body["message"]
    assert "ACCOUNT_SID and AUTH_TOKEN" in body["message"]
    assert "stack" not in body
    assert any("at " in m for m in out.messages("error")), "the stack goes to the logs"
    assert out.done["clean"] is True


def test_domain_sample_returns_the_domain(runner) -> None:
    out = runner.invoke(slug("Retrieve Domain from Default Environment Variables"),
                        context={"DOMAIN_NAME": "shop.example.com"})
    assert (out.status, out.header("Content-Type"), out.text) == (200, TEXT, "shop.example.com")


def test_environment_variables_sample_without_them(runner) -> None:
    out = runner.invoke(slug("Retrieve Environment Variables"))
    assert out.header("Content-Type") == JSON
    assert out.json() == {"phone_numbers": {"primary": "There is no primary number",
                                            "backup": "There is no secondary number!"}}


def test_environment_variables_sample_with_them(node_runner, samples_project) -> None:
    runner = node_runner(samples_project, env={"PRIMARY_PHONE_NUMBER": "+1555000", "SECONDARY_PHONE_NUMBER": "+1555001"})
    out = runner.invoke(slug("Retrieve Environment Variables"))
    assert out.json() == {"phone_numbers": {"primary": "+1555000", "backup": "+1555001"}}


def test_webhook_sample_renders_twiml(runner) -> None:
    event = {"From": "+14444444444", "Body": "Ahoy!", "request": {"headers": {}, "cookies": {}}}
    out = runner.invoke(slug("Access webhook values from event"), event)
    assert (out.status, out.header("Content-Type")) == (200, XML)
    assert out.text == XML_DECL + '<Response><Message to="+15550001111">+14444444444: Ahoy!</Message></Response>'


def test_error_response_sample(runner) -> None:
    out = runner.invoke(slug("Return an Error Response"))
    assert (out.status, out.header("Content-Type"), out.text) == (500, TEXT, "Something went very, very wrong.")


def test_simple_successful_response_sample(runner) -> None:
    out = runner.invoke(slug("Return a Simple Successful Response"))
    assert (out.status, out.result["headers"], out.body) == (200, [], b"")


def test_plaintext_sample(runner) -> None:
    out = runner.invoke(slug("Return a Successful Plaintext Response"))
    assert (out.status, out.header("Content-Type"), out.text) == (200, TEXT, "This is fine")


def test_json_sample(runner) -> None:
    out = runner.invoke(slug("Return a Successful JSON Response"))
    assert (out.status, out.header("Content-Type")) == (200, JSON)
    assert out.json() == {"result": "winner winner!"}


def test_static_messaging_sample(runner) -> None:
    out = runner.invoke(slug("Return a static Messaging response to incoming text messages"))
    assert (out.status, out.header("Content-Type")) == (200, XML)
    assert out.text == XML_DECL + "<Response><Message>Hello, World!</Message></Response>"


def test_voice_sample(runner) -> None:
    event = {"FromCity": "BOULEVARD", "From": "+14444444444", "request": {"headers": {}, "cookies": {}}}
    out = runner.invoke(slug("Return a Voice response that includes Say and Play verbs"), event)
    assert (out.status, out.header("Content-Type")) == (200, XML)
    assert out.text == (XML_DECL + '<Response><Say voice="alice">Never gonna give you up, BOULEVARD</Say>'
                        "<Play>https://demo.twilio.com/docs/classic.mp3</Play></Response>")


def test_status_code_sample(runner) -> None:
    out = runner.invoke(slug("Set a Status Code in a Response"))
    assert (out.status, out.result["headers"], out.body) == (204, [], b"")


def test_plaintext_response_sample(runner) -> None:
    out = runner.invoke(slug("Build a Plaintext Response"))
    assert (out.status, out.header("Content-Type"), out.text) == (200, TEXT, "This is fine")


def test_json_response_sample(runner) -> None:
    out = runner.invoke(slug("Building a JSON Response"))
    assert out.status == 200
    assert out.headers("Content-Type") == ["application/json"]
    assert out.json() == {"everything": "is alright"}


def test_header_sample(runner) -> None:
    out = runner.invoke(slug("Set an HTTP Header in a Response"))
    assert (out.status, out.result["headers"], out.body) == (301, [["Location", "https://twilio.com"]], b"")


def test_multiple_headers_sample(runner) -> None:
    out = runner.invoke(slug("Set Multiple HTTP Headers in a Response"))
    assert out.status == 200
    assert out.result["headers"] == [
        ["Access-Control-Allow-Origin", "example.com"],
        ["Access-Control-Allow-Methods", "GET,PUT,POST,DELETE,OPTIONS"],
        ["Access-Control-Allow-Headers", "Content-Type"],
    ]
    assert out.body == b""


def test_callback_error_snippet(runner) -> None:
    out = runner.invoke("snippet-error")
    assert out.status == 500
    assert out.json() == {"message": "boom", "name": "Error"}


def test_callback_response_snippet(runner) -> None:
    out = runner.invoke("snippet-response")
    assert (out.status, out.json()) == (200, {"ok": True})


def test_twilio_global_snippet_at_module_top_level(runner) -> None:
    out = runner.invoke("snippet-globals")
    assert out.json() == {
        "twiml": XML_DECL + "<Response><Message>top level</Message></Response>",
        "grant": "function", "token": "function",
    }


def test_runtime_asset_snippet(runner) -> None:
    out = runner.invoke("snippet-asset")
    assert out.text == "the contents of my file\n"
    assert "Your file contents: the contents of my file" in out.messages("info")


def test_twilio_response_snippet_at_module_top_level(runner) -> None:
    out = runner.invoke("snippet-twilio-response")
    assert (out.status, out.header("Content-Type"), out.text) == (200, TEXT, "made at load")
