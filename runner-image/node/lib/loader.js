'use strict';
/**
 * Loads function modules by file path, with the globals already in place.
 *
 * Each module is loaded through a `require` made for its own path (module.createRequire), so a
 * `require('x')` inside it finds the project's node_modules first; the runner's node_modules
 * (`twilio`) come last, through NODE_PATH. A module that fails to load, or has no `handler`, does
 * not stop bootstrap: the error is kept and answered as a 500 on every invocation.
 */

const Module = require('module');
const path = require('path');

/** Add the runner's node_modules as the last place modules are looked up. */
function addFallbackModulePath(dir) {
  const current = (process.env.NODE_PATH || '').split(path.delimiter).filter(Boolean);
  if (!current.includes(dir)) current.push(dir);
  process.env.NODE_PATH = current.join(path.delimiter);
  Module._initPaths(); // re-reads NODE_PATH (the documented way to change the global paths at run time)
}

/** The line of `file` where err was raised, from its stack (or a SyntaxError's header). */
function errorLine(err, file) {
  const stack = err && typeof err.stack === 'string' ? err.stack : '';
  const header = stack.split('\n', 1)[0];
  if (header.startsWith(`${file}:`)) {
    const line = Number(header.slice(file.length + 1));
    if (Number.isInteger(line)) return line;
  }
  const escaped = file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const match = stack.match(new RegExp(`${escaped}:(\\d+)(?::\\d+)?`));
  return match ? Number(match[1]) : null;
}

/** `functions/broken.js: SyntaxError: Unexpected token '}' (line 3)`: file, error, and where. */
function describeLoadError(rel, file, err) {
  const name = err && typeof err.name === 'string' ? err.name : 'Error';
  const message = String(err && err.message !== undefined ? err.message : err).split('\n', 1)[0];
  const line = errorLine(err, file);
  return `${rel}: ${name}: ${message}${line ? ` (line ${line})` : ''}`;
}

/** err's stack without the frames of node's module loader and of the runner itself. */
function userStack(err) {
  if (!err || typeof err.stack !== 'string') return '';
  const runnerDir = path.resolve(__dirname, '..');
  return err.stack.split('\n')
    .filter((line) => !/^\s+at /.test(line) || !(line.includes('node:internal/modules/') || line.includes(runnerDir)))
    .join('\n');
}

/**
 * Load one function file. Returns `{handler}` or `{error: {message, name}}`; `logError` receives the
 * full description (stack included) for the bootstrap log.
 */
function loadFunction(projectRoot, fileRel, logError) {
  const file = path.resolve(projectRoot, fileRel);
  const rel = path.relative(projectRoot, file).split(path.sep).join('/');
  let exported;
  try {
    exported = Module.createRequire(file)(file);
  } catch (err) {
    const message = describeLoadError(rel, file, err);
    logError(`${message}\n${userStack(err)}`.trimEnd());
    return { error: { message, name: err && typeof err.name === 'string' ? err.name : 'Error' } };
  }
  const handler = exported === null || exported === undefined ? undefined : exported.handler;
  if (handler === undefined) {
    return {
      error: {
        message: `${rel}: the file has no \`handler\` export (define \`exports.handler = (context, event, callback) => { ... }\`)`,
        name: 'Error',
      },
    };
  }
  if (typeof handler !== 'function') {
    return { error: { message: `${rel}: \`handler\` is a ${typeof handler}, not a function`, name: 'TypeError' } };
  }
  return { handler };
}

module.exports = { addFallbackModulePath, loadFunction, describeLoadError };
