'use strict';
/**
 * The protocol's file descriptors, set up before any other code runs.
 *
 * The engine talks to the runner over fds 0 and 1. A handler must not be able to read the
 * engine's frames or forge ours, so the runner moves the protocol off those numbers:
 *
 * - stdout: `/proc/self/fd/1` is reopened as a new descriptor for the protocol (same pipe), and
 *   fd 1 itself becomes the write end of a private FIFO that the runner reads back and turns into
 *   `info` log messages (raw `fs.writeSync(1, ...)`, child processes with inherited stdio).
 * - stderr: `/proc/self/fd/2` is reopened as the runner's crash descriptor (its own error output,
 *   which the engine keeps as the worker's stderr), and fd 2 becomes the write end of a second
 *   FIFO whose lines are logged at `error` (`fs.writeSync(2, ...)`, a child's inherited stderr), as
 *   the Python runner does with its pipes.
 * - stdin: `/proc/self/fd/0` is reopened for the protocol and fd 0 becomes /dev/null.
 *
 * Node has no dup(2), so these are the only ways to get a second descriptor on the same pipe.
 * Where they are not possible (no /proc, stdout is a socket, no `mkfifo`), the runner keeps using
 * fds 0, 1 and 2 directly and says so at bootstrap; handler output through console /
 * process.stdout / process.stderr is captured either way.
 *
 * The FIFOs are read by the runner's own event loop: a single synchronous write of more than the
 * pipe's capacity (64 KiB) to fd 1 or 2 from handler code blocks that handler until the engine's
 * deadline (its own request times out; nothing else is affected).
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

/**
 * Make each of `fds` (1, 2) the write end of a private FIFO: returns `[{readFd, markerFd}]` in the
 * same order (the read end and a private write end, both non-blocking), or null when that is not
 * possible. One `mkfifo` process for both: a process start is most of this function's cost.
 */
function divert(fds) {
  let dir = null;
  const opened = [];
  try {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'runner-out-'));
    const fifos = fds.map((fd) => path.join(dir, `fd${fd}`));
    childProcess.execFileSync('mkfifo', ['-m', '600', ...fifos], { stdio: 'ignore', timeout: 5000 });
    const ends = fifos.map((fifo) => {
      const readFd = fs.openSync(fifo, O_RDONLY | O_NONBLOCK);
      opened.push(readFd);
      const markerFd = fs.openSync(fifo, O_WRONLY | O_NONBLOCK);
      opened.push(markerFd);
      return { readFd, markerFd };
    });
    // Nothing may fail half-way: a write end for each FIFO first, then move them onto fds 1/2.
    for (const [i, fd] of fds.entries()) {
      fs.closeSync(fd);
      // The lowest free descriptor is `fd`: nothing else runs yet that could take it first.
      const writeFd = fs.openSync(fifos[i], O_WRONLY);
      if (writeFd !== fd) throw new Error(`the FIFO for fd ${fd} opened as fd ${writeFd}`);
    }
    return ends;
  } catch {
    for (const fd of opened) fs.closeSync(fd);
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
 * Set the protocol descriptors up. Returns `{inFd, outFd, crashFd, rawStdoutFd, rawStderrFd,
 * notes}`: the raw*Fd are `{readFd, markerFd}` of the FIFOs behind fds 1 and 2 (null when that fd
 * was left alone), crashFd is where the runner writes its own errors; notes explain any fallback.
 */
function setupProtocolFds(onSocket = false) {
  if (onSocket) return setupAroundSocket();
  const notes = [];
  let outFd = reopen(1, O_WRONLY | O_APPEND);
  let crashFd = reopen(2, O_WRONLY | O_APPEND);
  let rawStdoutFd = null;
  let rawStderrFd = null;
  if (outFd === null) {
    outFd = 1;
    notes.push('stdout could not be reopened: raw writes to fd 1 would reach the protocol stream');
  }
  if (crashFd === null) {
    crashFd = 2;
    notes.push('stderr could not be reopened: raw writes to fd 2 are not logged');
  }
  const targets = [outFd === 1 ? null : 1, crashFd === 2 ? null : 2].filter((fd) => fd !== null);
  const ends = targets.length ? divert(targets) : [];
  if (ends === null) {
    if (outFd !== 1) fs.closeSync(outFd);
    if (crashFd !== 2) fs.closeSync(crashFd);
    outFd = 1;
    crashFd = 2;
    notes.push('fds 1 and 2 could not be diverted (no mkfifo or no writable tmpdir): raw writes to fd 1 would reach the protocol stream');
  } else {
    for (const [i, fd] of targets.entries()) {
      if (fd === 1) rawStdoutFd = ends[i];
      else rawStderrFd = ends[i];
    }
  }
  let inFd = reopen(0, O_RDONLY);
  if (inFd === null) {
    inFd = 0;
    notes.push('stdin could not be reopened: a handler reading fd 0 could consume engine frames');
  } else if (!detachStdin()) {
    notes.push('fd 0 could not be pointed at /dev/null');
  }
  crashDescriptor = crashFd;
  return { inFd, outFd, crashFd, rawStdoutFd, rawStderrFd, notes };
}

/**
 * The protocol runs on the channel socket (lib/socket_channel.js), not on fds 0/1: fds 1 and 2
 * become capture FIFOs all the same, fd 0 /dev/null. inFd/outFd are null (the caller fills them in
 * once connected).
 */
function setupAroundSocket() {
  const notes = [];
  let crashFd = reopen(2, O_WRONLY | O_APPEND);
  if (crashFd === null) {
    crashFd = 2;
    notes.push('stderr could not be reopened: raw writes to fd 2 are not logged');
  }
  const targets = crashFd === 2 ? [1] : [1, 2];
  const ends = divert(targets);
  let rawStdoutFd = null;
  let rawStderrFd = null;
  if (ends === null) {
    if (crashFd !== 2) fs.closeSync(crashFd);
    crashFd = 2;
    notes.push('fds 1 and 2 could not be diverted (no mkfifo or no writable tmpdir): raw writes to them are not logged');
  } else {
    rawStdoutFd = ends[0];
    if (targets.length === 2) rawStderrFd = ends[1];
  }
  if (!detachStdin()) notes.push('fd 0 could not be pointed at /dev/null');
  crashDescriptor = crashFd;
  return { inFd: null, outFd: null, crashFd, rawStdoutFd, rawStderrFd, notes };
}

let crashDescriptor = 2;

/** Write the runner's own error output (never a handler's) where the engine keeps it; never throws. */
function writeCrash(text) {
  try {
    fs.writeSync(crashDescriptor, text);
  } catch {
    // nowhere left to write to
  }
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

module.exports = { setupProtocolFds, writeAll, writeCrash };
