'use strict';
/**
 * `Twilio.Response`: a reply whose status, headers and body the handler sets itself
 * (the `Twilio.Response` section of behavior.md).
 *
 * Like the hosted class, it keeps public `statusCode`, `headers` and `body` fields; `headers` maps
 * a name to a string, or to an array for a multi-valued header (each value is its own header line).
 * Names are matched case-insensitively and keep their first spelling. The runner does not filter
 * names or values: the engine drops unsafe ones when it frames the HTTP reply.
 */

const SET_COOKIE = 'Set-Cookie';

function headerValues(name, value) {
  const items = Array.isArray(value) ? value : [value];
  return items.map((item) => {
    if (item !== null && typeof item === 'object') {
      throw new TypeError(
        `Twilio.Response header "${name}": value must be a string, number or array of them, not an object`,
      );
    }
    return String(item);
  });
}

function findKey(headers, name) {
  const lower = String(name).toLowerCase();
  return Object.keys(headers).find((key) => key.toLowerCase() === lower);
}

function cookieName(cookie) {
  const text = String(cookie);
  const eq = text.indexOf('=');
  return (eq === -1 ? text : text.slice(0, eq)).trim();
}

class Response {
  /** `new Twilio.Response({statusCode, headers, body})`, every option optional. */
  constructor(options) {
    const opts = options && typeof options === 'object' ? options : {};
    this.statusCode = opts.statusCode !== undefined ? opts.statusCode : 200;
    this.headers = {};
    this.body = opts.body !== undefined ? opts.body : null;
    if (opts.headers !== undefined && opts.headers !== null) this.setHeaders(opts.headers);
  }

  setStatusCode(statusCode) {
    this.statusCode = statusCode;
    return this;
  }

  setBody(body) {
    this.body = body;
    return this;
  }

  /** Add a header; an existing name (any case) becomes multi-valued; an array adds each item. */
  appendHeader(name, value) {
    const values = headerValues(name, value);
    const key = findKey(this.headers, name);
    if (key === undefined) {
      this.headers[String(name)] = values.length === 1 && !Array.isArray(value) ? values[0] : values;
    } else {
      const existing = this.headers[key];
      this.headers[key] = (Array.isArray(existing) ? existing : [String(existing)]).concat(values);
    }
    return this;
  }

  /** Replace every header, cookies included. */
  setHeaders(headers) {
    if (headers === null || typeof headers !== 'object' || Array.isArray(headers)) {
      throw new TypeError('Twilio.Response.setHeaders() takes an object mapping header names to values');
    }
    this.headers = {};
    for (const [name, value] of Object.entries(headers)) this.appendHeader(name, value);
    return this;
  }

  /** Append `name=value;attr1;attr2` as its own Set-Cookie line. */
  setCookie(name, value, attributes = []) {
    const attrs = Array.isArray(attributes) ? attributes : [attributes];
    const cookie = [`${name}=${value}`, ...attrs.map(String)].join(';');
    return this.appendHeader(SET_COOKIE, [cookie]);
  }

  /** Drop earlier Set-Cookie lines for name and expire it in the browser (`name=;Max-Age=0`). */
  removeCookie(name) {
    const key = findKey(this.headers, SET_COOKIE);
    if (key !== undefined) {
      const existing = this.headers[key];
      const kept = (Array.isArray(existing) ? existing : [existing]).filter((c) => cookieName(c) !== String(name));
      if (kept.length) this.headers[key] = kept;
      else delete this.headers[key];
    }
    return this.appendHeader(SET_COOKIE, [`${name}=;Max-Age=0`]);
  }
}

module.exports = { Response };
