'use strict';
/**
 * The `twilio` npm export, built without loading the package: each part is required on first use.
 *
 * `require('twilio')` costs ~75 ms of a worker's start (axios, form-data, jsonwebtoken, the REST
 * client), most of a Node worker's own boot. The facade made here has the same shape as the
 * package's lib/index.js (same keys, in the same order, same values once touched): a function
 * `TwilioSDK(accountSid, authToken, opts)` with `Twilio`, `jwt.*`, `twiml.*`, `RequestClient`,
 * `RestException`, the credential providers and the webhook helpers. Each property is an accessor
 * that requires its module on first read and then replaces itself with a plain data property, so
 * after `preload()` the object is indistinguishable from the package's own export.
 *
 * `install()` puts the facade in the module cache under the package's own index.js, so a
 * handler's `require('twilio')` (falling back to the runner's copy) returns this same object, and
 * `require('twilio') === Twilio` holds as in the hosted service. A project that ships its own
 * `twilio` resolves to another file and gets its own copy, untouched.
 *
 * Lazy loads run through `outside` (the tracker's: as runner code), so a module loaded during an
 * invocation does not belong to it. `preloadSteps()` lists the loads in small pieces (none above
 * ~20 ms) for the idle-time preload (lib/preload.js).
 */

const Module = require('module');
const path = require('path');

/** The package's lib/index.js, resolved as a handler's require('twilio') would (throws when missing). */
function resolveTwilioIndex() {
  return require.resolve('twilio');
}

/** Define a data property as a plain assignment would (writable, enumerable, configurable). */
function setData(obj, key, value) {
  Object.defineProperty(obj, key, { value, writable: true, enumerable: true, configurable: true });
}

/** An accessor that computes the value once, then becomes a data property. */
function lazy(obj, key, compute) {
  Object.defineProperty(obj, key, {
    configurable: true,
    enumerable: true,
    get() {
      const value = compute();
      setData(obj, key, value);
      return value;
    },
    set(value) {
      setData(this, key, value);
    },
  });
}

/** TypeScript's __importDefault / __importStar, as the package's index.js uses them. */
const importDefault = (mod) => (mod && mod.__esModule ? mod.default : mod);
const importStar = (mod) => {
  if (mod && mod.__esModule) return mod;
  const result = {};
  if (mod != null) for (const k of Object.getOwnPropertyNames(mod)) if (k !== 'default') result[k] = mod[k];
  result.default = mod;
  return result;
};

const WEBHOOK_KEYS = [
  'validateBody', 'validateRequest', 'validateRequestWithBody', 'validateExpressRequest',
  'validateIncomingRequest', 'getExpectedBodyHash', 'getExpectedTwilioSignature', 'getSignatureAlgorithm',
  'SIGNATURE_HEADER', 'SIGNATURE_SETTINGS_HEADER', 'HMAC_SHA1', 'HMAC_SHA256', 'webhook',
];

/**
 * Third-party modules the REST client pulls in, heaviest first, loaded one per preload step so that
 * no single step holds the event loop long (each is then found in the cache by the package).
 */
const DEPENDENCY_STEPS = ['form-data', 'follow-redirects', 'proxy-from-env', 'axios', 'qs', 'jsonwebtoken',
  'https-proxy-agent', 'dayjs', 'xmlbuilder'];

/**
 * Build the facade for the package whose lib/index.js is `indexFile`. `outside(fn)` runs fn as
 * runner code (defaults to calling it).
 */
function makeLazyTwilio(indexFile, outside = (fn) => fn()) {
  const libDir = path.dirname(indexFile);
  const load = (rel) => outside(() => require(path.join(libDir, rel)));
  const dflt = (rel) => () => importDefault(load(rel));

  function TwilioSDK(accountSid, authToken, opts) {
    return new TwilioSDK.Twilio(accountSid, authToken, opts);
  }
  lazy(TwilioSDK, 'Twilio', dflt('rest/Twilio'));

  const jwt = {};
  lazy(jwt, 'AccessToken', dflt('jwt/AccessToken'));
  lazy(jwt, 'ValidationToken', dflt('jwt/validation/ValidationToken'));
  lazy(jwt, 'ClientCapability', dflt('jwt/ClientCapability'));
  const taskrouter = {};
  lazy(taskrouter, 'TaskRouterCapability', dflt('jwt/taskrouter/TaskRouterCapability'));
  lazy(taskrouter, 'util', () => importStar(load('jwt/taskrouter/util')));
  jwt.taskrouter = taskrouter;
  TwilioSDK.jwt = jwt;

  const twiml = {};
  lazy(twiml, 'VoiceResponse', dflt('twiml/VoiceResponse'));
  lazy(twiml, 'MessagingResponse', dflt('twiml/MessagingResponse'));
  lazy(twiml, 'FaxResponse', dflt('twiml/FaxResponse'));
  TwilioSDK.twiml = twiml;

  lazy(TwilioSDK, 'RequestClient', dflt('base/RequestClient'));
  lazy(TwilioSDK, 'RestException', dflt('base/RestException'));
  const provider = (rel, name) => () => importDefault(load(rel))[name];
  lazy(TwilioSDK, 'ClientCredentialProviderBuilder', provider('credential_provider/ClientCredentialProvider', 'ClientCredentialProviderBuilder'));
  lazy(TwilioSDK, 'OrgsCredentialProviderBuilder', provider('credential_provider/OrgsCredentialProvider', 'OrgsCredentialProviderBuilder'));
  lazy(TwilioSDK, 'NoAuthCredentialProvider', provider('credential_provider/NoAuthCredentialProvider', 'NoAuthCredentialProvider'));
  const webhooks = () => importStar(load('webhooks/webhooks'));
  for (const key of WEBHOOK_KEYS) lazy(TwilioSDK, key, () => webhooks()[key]);

  return TwilioSDK;
}

/** Make `facade` what require() returns for `indexFile` (the package's own index.js). */
function install(facade, indexFile) {
  const mod = new Module(indexFile, null);
  mod.filename = indexFile;
  mod.paths = Module._nodeModulePaths(path.dirname(indexFile));
  mod.exports = facade;
  mod.loaded = true;
  Module._cache[indexFile] = mod;
}

/** Every lazy (accessor) property of obj and of its namespace objects, as [object, key] pairs. */
function lazyProperties(obj, seen = new Set()) {
  const found = [];
  if (obj === null || (typeof obj !== 'object' && typeof obj !== 'function') || seen.has(obj)) return found;
  seen.add(obj);
  for (const key of Object.keys(obj)) {
    const desc = Object.getOwnPropertyDescriptor(obj, key);
    if (desc.get) found.push([obj, key]);
    else if (desc.value !== null && typeof desc.value === 'object') found.push(...lazyProperties(desc.value, seen));
  }
  return found;
}

/**
 * The preload in small steps: each function loads one piece. The heavy third-party modules first
 * (one each), then every lazy property of the facade (each found in the cache by then, or cheap).
 */
function preloadSteps(facade, indexFile, outside = (fn) => fn()) {
  const pkgDir = path.dirname(path.dirname(indexFile));
  const steps = DEPENDENCY_STEPS.map((name) => () => {
    let file;
    try {
      file = require.resolve(name, { paths: [pkgDir] });
    } catch {
      return; // laid out differently: the package's own modules below load it
    }
    outside(() => require(file));
  });
  // Found when the step runs: a property already read (or replaced by a handler) is skipped.
  const first = ['Twilio', 'RequestClient'];
  for (const key of first) steps.push(() => touch(facade, key));
  steps.push(() => {
    for (const [obj, key] of lazyProperties(facade)) touch(obj, key);
  });
  return steps;
}

/** Read obj[key] if it is still a lazy accessor (which loads it). */
function touch(obj, key) {
  const desc = Object.getOwnPropertyDescriptor(obj, key);
  if (desc && desc.get) void obj[key];
}

module.exports = { makeLazyTwilio, install, preloadSteps, lazyProperties, resolveTwilioIndex };
