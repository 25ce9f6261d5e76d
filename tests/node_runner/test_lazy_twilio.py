"""The `twilio` package is loaded lazily (lib/twilio_lazy.js) and preloaded when idle (lib/preload.js).

Handlers must not see the difference: `Twilio` and `require('twilio')` are one object with the
package's shape, every part works whether or not the worker has preloaded yet, and a part first
loaded during an invocation does not make it unclean.
"""

from __future__ import annotations

import json
import subprocess
import time

from .conftest import NODE_DIR

LIB = NODE_DIR / "lib"
TWILIO_INDEX = NODE_DIR / "node_modules" / "twilio" / "lib" / "index.js"

# Reports what is loaded, then uses every part of the facade a handler commonly uses.
PROBE = r"""
const path = require('path');
const loaded = (rel) => Object.keys(require.cache).some((f) => f.endsWith(path.join('node_modules', 'twilio', 'lib', rel)));
exports.handler = (context, event, callback) => {
  const before = {rest: loaded('rest/Twilio.js'), jwt: loaded('jwt/AccessToken.js'), twiml: loaded('twiml/TwiML.js')};
  const lazyKeys = Object.keys(Twilio).filter((k) => Object.getOwnPropertyDescriptor(Twilio, k).get);
  const client = Twilio('AC' + '0'.repeat(32), 'token');
  const fromContext = context.getTwilioClient();
  const token = new Twilio.jwt.AccessToken('AC' + '0'.repeat(32), 'SK' + '0'.repeat(32), 'secret', {identity: 'alice'});
  const url = 'https://example.com/hook';
  const signature = Twilio.getExpectedTwilioSignature('token', url, {a: '1'});
  const twiml = new Twilio.twiml.MessagingResponse();
  twiml.message('hi');
  const out = {
    before, lazyKeys,
    same: require('twilio') === Twilio,
    clientSid: client.accountSid,
    isTwilio: client instanceof Twilio.Twilio,
    contextSid: fromContext.accountSid,
    jwtParts: token.toJwt().split('.').length,
    valid: Twilio.validateRequest('token', signature, url, {a: '1'}),
    response: typeof Twilio.Response,
    knob: process.env.RUNNER_PRELOAD_IDLE_MS === undefined,
  };
  if (event.twiml) return callback(null, twiml);
  callback(null, out);
};
"""
ENV = {"ACCOUNT_SID": "AC" + "1" * 32, "AUTH_TOKEN": "tok"}


def probe(runner, **event):
    outcome = runner.invoke("probe", event)
    assert outcome.result["status"] == 200, outcome.result
    assert outcome.done["clean"] is True, outcome.done
    return outcome


def test_every_part_works_before_any_preload(node_runner) -> None:
    runner = node_runner({"functions/probe.js": PROBE}, env=ENV, process_env={"RUNNER_PRELOAD_IDLE_MS": "never"})
    time.sleep(0.3)
    out = probe(runner).json()
    assert out["before"] == {"rest": False, "jwt": False, "twiml": False}
    assert "Twilio" in out["lazyKeys"] and "validateRequest" in out["lazyKeys"]
    assert out | {"before": None, "lazyKeys": None} == {
        "before": None, "lazyKeys": None, "same": True, "clientSid": "AC" + "0" * 32, "isTwilio": True,
        "contextSid": ENV["ACCOUNT_SID"], "jwtParts": 3, "valid": True, "response": "function", "knob": True,
    }
    # Loaded during that invocation, still working (and clean) in the next ones.
    again = probe(runner).json()
    assert again["before"] == {"rest": True, "jwt": True, "twiml": True}
    assert again["clientSid"] == "AC" + "0" * 32 and again["valid"] is True


def test_twiml_is_recognised_when_its_module_is_first_loaded_by_the_handler(node_runner) -> None:
    runner = node_runner({"functions/probe.js": PROBE}, env=ENV, process_env={"RUNNER_PRELOAD_IDLE_MS": "never"})
    outcome = probe(runner, twiml="1")
    assert outcome.header("Content-Type").startswith("text/xml")
    assert outcome.text.endswith("<Response><Message>hi</Message></Response>")


def test_an_idle_worker_preloads_everything(node_runner) -> None:
    runner = node_runner({"functions/probe.js": PROBE}, env=ENV, process_env={"RUNNER_PRELOAD_IDLE_MS": "0"})
    deadline = time.monotonic() + 10
    while True:
        out = probe(runner).json()
        if out["before"]["rest"] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert out["before"] == {"rest": True, "jwt": True, "twiml": True}
    assert out["lazyKeys"] == []
    assert out["same"] and out["isTwilio"] and out["valid"] and out["knob"]
    assert out["contextSid"] == ENV["ACCOUNT_SID"]


def test_a_first_invoke_right_after_ready_is_answered_with_the_default_idle_wait(node_runner) -> None:
    runner = node_runner({"functions/probe.js": PROBE}, env=ENV)
    out = probe(runner).json()
    assert out["clientSid"] == "AC" + "0" * 32 and out["valid"] is True
    time.sleep(1)
    assert probe(runner).json()["before"] == {"rest": True, "jwt": True, "twiml": True}


def run_node(node_bin: str, script: str) -> object:
    done = subprocess.run([node_bin, "-e", script], capture_output=True, text=True, timeout=60, cwd=LIB)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_facade_has_the_package_shape_and_values(node_runner, node_bin: str) -> None:
    # The real index.js first, then the facade over the same (cached) modules: same keys in the same
    # order, and the very same values once touched. Catches a package upgrade that adds an export.
    result = run_node(node_bin, f"""
const real = require({json.dumps(str(TWILIO_INDEX))});
delete require.cache[{json.dumps(str(TWILIO_INDEX))}];
const lazy = require('./twilio_lazy');
const facade = lazy.makeLazyTwilio(lazy.resolveTwilioIndex());
const diffs = [];
function compare(a, b, where) {{
  const ka = Object.keys(a), kb = Object.keys(b);
  if (JSON.stringify(ka) !== JSON.stringify(kb)) diffs.push(`${{where}} keys ${{ka}} != ${{kb}}`);
  for (const k of kb) {{
    const va = a[k], vb = b[k];
    if (vb !== null && typeof vb === 'object' && !vb.__esModule) compare(va, vb, `${{where}}.${{k}}`);
    else if (va !== vb) diffs.push(`${{where}}.${{k}} differs`);
  }}
}}
compare(facade, real, 'twilio');
console.log(JSON.stringify({{diffs, name: facade.name, length: facade.length, left: lazy.lazyProperties(facade).length}}));
""")
    assert result == {"diffs": [], "name": "TwilioSDK", "length": 3, "left": 0}


def test_building_and_installing_the_facade_loads_nothing_of_the_package(node_bin: str) -> None:
    result = run_node(node_bin, """
const lazy = require('./twilio_lazy');
const index = lazy.resolveTwilioIndex();
const facade = lazy.makeLazyTwilio(index);
lazy.install(facade, index);
const loaded = Object.keys(require.cache).filter((f) => f.includes('node_modules') && f !== index);
const same = require(require.resolve('twilio')) === facade;
facade.RestException = 'replaced';
console.log(JSON.stringify({loaded, same, replaced: facade.RestException, lazy: lazy.lazyProperties(facade).length > 20}));
""")
    assert result == {"loaded": [], "same": True, "replaced": "replaced", "lazy": True}


def test_the_preloader_waits_while_busy_and_for_quiet(node_bin: str) -> None:
    result = run_node(node_bin, """
const { Preloader, idleMsFrom } = require('./preload');
const ran = [];
let busy = true;
let last = performance.now();
const p = new Preloader([1, 2, 3].map((n) => () => { ran.push(n); if (n === 2) throw new Error('x'); }),
  { busy: () => busy, lastActivity: () => last, idleMs: 20 });
p.start();
setTimeout(() => {
  const whileBusy = ran.length;
  busy = false;
  last = performance.now();
  setTimeout(() => {
    const rightAfter = ran.length;
    setTimeout(() => console.log(JSON.stringify({whileBusy, rightAfter, ran, pending: p.pending,
      knobs: [idleMsFrom(undefined), idleMsFrom('never'), idleMsFrom('5'), idleMsFrom('junk')]})), 200);
  }, 5);
}, 100);
setTimeout(() => {}, 400);
""")
    assert result == {"whileBusy": 0, "rightAfter": 0, "ran": [1, 2, 3], "pending": False, "knobs": [50, None, 5, 50]}
