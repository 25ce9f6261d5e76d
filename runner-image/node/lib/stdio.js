'use strict';
/**
 * The protocol's file descriptors, set up before any other code runs.
 *
 * The engine talks to the runner over fds 0 and 1. A handler must not be able to read the
 * engine's frames or forge ours, so the runner moves the protocol off those numbers:
 *
 * - stdout: `/proc/self/fd/1` is reopened as a new descriptor for the protocol (same pipe), and
 *   fd 1 itself becomes the write end of a private FIFO that the runner reads back and turns into
 *   `log` messages (raw `fs.writeSync(1, ...)`, child processes with inherited stdio).
 * - stdin: `/proc/self/fd/0` is reopened for the protocol and fd 0 becomes /dev/null.
 * - stderr (fd 2) stays the real one: it carries runner crash output, which must survive a crash.
 *
 * Node has no dup(2), so these are the only ways to get a second descriptor on the same pipe.
 * Where they are not possible (no /proc, stdout is a socket, no `mkfifo`), the runner keeps using
 * fds 0 and 1 directly and says so at bootstrap; handler output through console / process.stdout /
 * process.stderr is captured either way.
 */

const childProcess = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const { O_RDONLY, O_WRONLY, O_NONBLOCK, O_APPEND } = fs.constants;

/** Reopen fd (0 or 1) through /proc: a new descriptor on the same pipe, or null when impossible. */
function reopen(fd, flags) {
  try {
    const st = fs.fstatSync(fd);
    // Reopening a socket through /proc fails (ENXIO); a terminal or a file works but is pointless
    // to protect, except that a regular file reopened for writing must append, not truncate.
    if (!(st.isFIFO() || st.isFile() || st.isCharacterDevice())) return null;
    return fs.openSync(`/proc/self/fd/${fd}`, flags);
  } catch {
    return null;
  }
}

/** Make fd 1 the write end of a private FIFO; returns the read end (non-blocking) or null. */
function divertStdout() {
  let dir = null;
  try {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'runner-out-'));
    const fifo = path.join(dir, 'stdout');
    childProcess.execFileSync('mkfifo', ['-m', '600', fifo], { stdio: 'ignore', timeout: 5000 });
    const readFd = fs.openSync(fifo, O_RDONLY | O_NONBLOCK);
    fs.closeSync(1);
    // The lowest free descriptor is 1: nothing else runs yet that could take it first.
    const writeFd = fs.openSync(fifo, O_WRONLY);
    if (writeFd !== 1) {
      fs.closeSync(writeFd);
      fs.closeSync(readFd);
      return null;
    }
    return readFd;
  } catch {
    return null;
  } finally {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Point fd 0 at /dev/null so a handler reading stdin gets end-of-file, never the engine's frames. */
function detachStdin() {
  try {
    fs.closeSync(0);
    const fd = fs.openSync('/dev/null', O_RDONLY);
    if (fd !== 0) fs.closeSync(fd);
    return fd === 0;
  } catch {
    return false;
  }
}

/**
 * Set the protocol descriptors up. Returns `{inFd, outFd, rawStdoutFd, notes}`: rawStdoutFd is the
 * read end of the FIFO behind fd 1 (null when fd 1 was left alone); notes explain any fallback.
 */
function setupProtocolFds() {
  const notes = [];
  let outFd = reopen(1, O_WRONLY | O_APPEND);
  let rawStdoutFd = null;
  if (outFd === null) {
    outFd = 1;
    notes.push('stdout could not be reopened: raw writes to fd 1 would reach the protocol stream');
  } else {
    rawStdoutFd = divertStdout();
    if (rawStdoutFd === null) {
      fs.closeSync(outFd);
      outFd = 1;
      notes.push('fd 1 could not be diverted (no mkfifo or no writable tmpdir): raw writes to fd 1 would reach the protocol stream');
    }
  }
  let inFd = reopen(0, O_RDONLY);
  if (inFd === null) {
    inFd = 0;
    notes.push('stdin could not be reopened: a handler reading fd 0 could consume engine frames');
  } else if (!detachStdin()) {
    notes.push('fd 0 could not be pointed at /dev/null');
  }
  return { inFd, outFd, rawStdoutFd, notes };
}

const sleepCell = new Int32Array(new SharedArrayBuffer(4));

/** Write all of buf to fd, waiting out EAGAIN (a non-blocking pipe that is full). */
function writeAll(fd, buf) {
  let offset = 0;
  while (offset < buf.length) {
    try {
      offset += fs.writeSync(fd, buf, offset, buf.length - offset);
    } catch (err) {
      if (err.code !== 'EAGAIN') throw err;
      Atomics.wait(sleepCell, 0, 0, 1);
    }
  }
}

module.exports = { setupProtocolFds, writeAll };
