'use strict';
/**
 * The callback table of behavior.md: `callback(error, response)` -> an HTTP reply.
 *
 * This is the one place that maps handler outcomes to statuses: a truthy error (or a failure) is
 * a 500, anything else is a 200 or the status of a `Twilio.Response`.
 */

const { Reply } = require('./framing');
const { Response } = require('./response');

const TEXT = 'text/plain; charset=utf-8';
const JSON_TYPE = 'application/json; charset=utf-8';
const XML = 'text/xml; charset=utf-8';
const BINARY = 'application/octet-stream';

let TwiML = null;
let twimlFile = null;

/** Tell the table which class TwiML objects (Messaging/Voice/Fax responses) derive from. */
function setTwiMLClass(cls) {
  TwiML = cls;
}

/**
 * The same, by the module that defines the class (twilio/lib/twiml/TwiML.js), taken once something
 * loaded it: until then no object can be an instance of it.
 */
function setTwiMLModule(file) {
  TwiML = null;
  twimlFile = file;
}

function twimlClass() {
  if (TwiML === null && twimlFile !== null) {
    const mod = require.cache[twimlFile];
    if (mod && mod.loaded) TwiML = mod.exports && mod.exports.default ? mod.exports.default : mod.exports;
  }
  return TwiML;
}

/** A TwiML document: an instance of the runner's twilio TwiML class, or of a project-pinned copy. */
function isTwiML(value) {
  if (value === null || typeof value !== 'object') return false;
  const cls = twimlClass();
  if (typeof cls === 'function' && value instanceof cls) return true;
  return value._propertyName === 'response' && typeof value.response === 'object' && typeof value.toString === 'function'
    && /^(Messaging|Voice|Fax)Response$/.test(value.constructor && value.constructor.name);
}

function isBytes(value) {
  return Buffer.isBuffer(value) || ArrayBuffer.isView(value) || value instanceof ArrayBuffer;
}

function toBuffer(value) {
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof ArrayBuffer) return Buffer.from(value);
  return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

function isError(value) {
  return value instanceof Error || Object.prototype.toString.call(value) === '[object Error]';
}

/** JSON text of a value; a value JSON cannot hold (function, symbol) gives an empty body. */
function toJSON(value) {
  const text = JSON.stringify(value);
  return text === undefined ? '' : text;
}

/** The 500 JSON `{"message", "name"}` of an Error, plus `stack` in dev mode. */
function errorReply(err, devMode, prefix = '') {
  const body = { message: prefix + String(err && err.message !== undefined ? err.message : err), name: errorName(err) };
  if (devMode && err && typeof err.stack === 'string') body.stack = err.stack;
  return new Reply(500, [['Content-Type', JSON_TYPE]], toJSON(body));
}

function errorName(err) {
  if (err === null || typeof err !== 'object') return 'Error';
  if (typeof err.name === 'string' && err.name) return err.name;
  if (err.constructor && typeof err.constructor.name === 'string' && err.constructor.name) return err.constructor.name;
  return 'Error';
}

/** 500 JSON for an error the runner itself describes (load errors, unknown function). */
function runnerErrorReply(message, name = 'Error') {
  return new Reply(500, [['Content-Type', JSON_TYPE]], toJSON({ message, name }));
}

/** 500 replies for `callback(error)`: text for a string, {message, name} for an Error, else JSON. */
function errorValueReply(error, devMode) {
  if (isError(error)) return errorReply(error, devMode);
  if (typeof error === 'string') return new Reply(500, [['Content-Type', TEXT]], error);
  if (isBytes(error)) return new Reply(500, [['Content-Type', BINARY]], toBuffer(error));
  return new Reply(500, [['Content-Type', JSON_TYPE]], toJSON(error));
}

/** 200 replies by the type of `response`. */
function successReply(response) {
  if (response === undefined || response === null) return new Reply(200);
  if (response instanceof Response) return responseReply(response);
  if (typeof response === 'string') return new Reply(200, [['Content-Type', TEXT]], response);
  if (isBytes(response)) return new Reply(200, [['Content-Type', BINARY]], toBuffer(response));
  if (isTwiML(response)) return new Reply(200, [['Content-Type', XML]], String(response.toString()));
  return new Reply(200, [['Content-Type', JSON_TYPE]], toJSON(response));
}

/** A `Twilio.Response` as of now, adding a Content-Type when the handler set none. */
function responseReply(response) {
  const status = checkStatus(response.statusCode);
  const pairs = [];
  let hasType = false;
  const headers = response.headers && typeof response.headers === 'object' ? response.headers : {};
  for (const [name, value] of Object.entries(headers)) {
    const values = Array.isArray(value) ? value : [value];
    for (const item of values) {
      if (item === undefined || item === null) continue;
      pairs.push([name, String(item)]);
      if (name.toLowerCase() === 'content-type') hasType = true;
    }
  }
  const [body, defaultType] = renderBody(response.body);
  if (defaultType && !hasType) pairs.push(['Content-Type', defaultType]);
  return new Reply(status, pairs, body);
}

function renderBody(body) {
  if (body === undefined || body === null) return ['', null];
  if (typeof body === 'string') return [body, TEXT];
  if (isBytes(body)) return [toBuffer(body), null];
  if (isTwiML(body)) return [String(body.toString()), XML];
  return [toJSON(body), 'application/json'];
}

function checkStatus(code) {
  const status = typeof code === 'string' && /^\s*\d+\s*$/.test(code) ? Number(code) : code;
  if (!Number.isInteger(status) || status < 100 || status > 599) {
    throw new RangeError(`Twilio.Response status code must be an integer from 100 to 599, got ${JSON.stringify(code)}`);
  }
  return status;
}

/** The reply for a callback call; a response that cannot be serialised becomes a 500. */
function buildReply(error, response, devMode) {
  if (error) {
    try {
      return errorValueReply(error, devMode);
    } catch (err) {
      return runnerErrorReply(`callback error that cannot be serialised (${err.message})`, errorName(error));
    }
  }
  try {
    return successReply(response);
  } catch (err) {
    return errorReply(err, devMode, 'cannot serialise the callback response: ');
  }
}

module.exports = {
  TEXT, JSON_TYPE, XML, BINARY,
  setTwiMLClass, setTwiMLModule, isTwiML, isError, buildReply, errorReply, runnerErrorReply, errorValueReply, successReply,
};
