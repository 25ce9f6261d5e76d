'use strict';
/**
 * The globals every function sees before any of its code runs: `Twilio`, `Runtime`, `Functions`.
 *
 * `Twilio` is the official npm `twilio` export (twiml, jwt, validateRequest, the REST client
 * factory) plus `Twilio.Response`; each part of it is loaded on first use (lib/twilio_lazy.js), and
 * `require('twilio')` returns the same object. `Runtime` lists the service's assets and functions, private
 * ones included, and hands out the Sync service client.
 */

const fs = require('fs');
const path = require('path');

const { Response } = require('./response');

const CREDENTIALS_MISSING = 'ACCOUNT_SID and AUTH_TOKEN must be set in the service\'s .env';

/** A REST client from the service's credentials; `what` names the caller in the error. */
function twilioClient(twilio, env, what, options) {
  const accountSid = env.ACCOUNT_SID;
  const authToken = env.AUTH_TOKEN;
  if (!accountSid || !authToken) throw new Error(`${what}: ${CREDENTIALS_MISSING}`);
  return twilio(accountSid, authToken, options);
}

/** `Runtime.getAssets()`, `getFunctions()`, `getSync()`, as in the hosted service. */
function makeRuntime({ twilio, projectRoot, functions, assets, env }) {
  const assetEntries = assets.map((asset) => {
    const file = path.resolve(projectRoot, asset.file);
    return [asset.url_path, Object.freeze({
      path: file,
      /** The file's text (UTF-8 unless another encoding is asked for). */
      open: (encoding = 'utf8') => fs.readFileSync(file, encoding),
    })];
  });
  const functionEntries = functions.map((fn) => [fn.name, Object.freeze({ path: path.resolve(projectRoot, fn.file) })]);
  return Object.freeze({
    /** Every asset, private ones included, keyed by URL path (`/logo.png`). */
    getAssets: () => Object.fromEntries(assetEntries),
    /** Every function, private ones included, keyed by name (`sms/reply`); `path` works with require(). */
    getFunctions: () => Object.fromEntries(functionEntries),
    /** The Sync service (`default` unless `{serviceName}` says otherwise). */
    getSync: (options) => {
      const name = (options && (options.serviceName || options.serviceSid)) || 'default';
      return twilioClient(twilio, env, 'Runtime.getSync()').sync.services(name);
    },
  });
}

/** Install the globals; returns the Runtime object. */
function installGlobals({ twilio, projectRoot, functions, assets, env }) {
  twilio.Response = Response;
  const runtime = makeRuntime({ twilio, projectRoot, functions, assets, env });
  const define = (name, value) => Object.defineProperty(globalThis, name, {
    value, writable: true, configurable: true, enumerable: false,
  });
  define('Twilio', twilio);
  define('Runtime', runtime);
  define('Functions', runtime.getFunctions());
  return runtime;
}

module.exports = { installGlobals, twilioClient, CREDENTIALS_MISSING };
