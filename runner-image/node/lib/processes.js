'use strict';
/**
 * Processes an invocation leaves running: every process the runner's code could have started,
 * found through /proc, not only the direct children node knows about.
 *
 * Node cannot make itself a child subreaper (no prctl), and a subreaper it could not `wait` for
 * would collect zombies anyway. So an orphan (the `sleep` of `exec('(sleep 1; ...) &')`, whose shell
 * has exited) is found by where it lives instead, decided once before any user code runs:
 *
 *   namespace  the runner shares its PID namespace with no one but the container's init (pid 1):
 *              a Docker worker (`init: true`, runc or runsc). Every other live process in /proc is
 *              the handler's, orphans included (they are re-parented to init, which reaps them).
 *   session    the runner leads its own session (the process backend starts it so): every live
 *              process of that session, or of a session led by a direct child the invocation
 *              started (`detached: true`). A grandchild that called setsid() itself escapes this one.
 *   tree       neither: the runner's live descendants by parent pid. Orphans escape this one.
 *
 * Scans run only for invocations that could have started a process (an async child, a
 * `spawnSync` / `execSync`, or a worker thread: the tracker marks them), so the common invocation
 * pays nothing. Processes alive before the first invocation (started while the modules loaded) are
 * a baseline that never counts. Without /proc nothing is found (and nothing is claimed).
 */

const fs = require('fs');

const SELF = process.pid;

/** The numeric entries of /proc: every process of this PID namespace; empty without /proc. */
function listPids() {
  let names;
  try {
    names = fs.readdirSync('/proc');
  } catch {
    return [];
  }
  const pids = [];
  for (const name of names) {
    const code = name.charCodeAt(0);
    if (code >= 48 && code <= 57) pids.push(Number(name));
  }
  return pids;
}

/** {state, ppid, sid, comm} of a process, or null once it is gone. comm may hold spaces and ')'. */
function statOf(pid) {
  let text;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return null;
  }
  const close = text.lastIndexOf(')');
  if (close < 0) return null;
  const comm = text.slice(text.indexOf('(') + 1, close);
  const fields = text.slice(close + 2).split(' ');
  return { state: fields[0], ppid: Number(fields[1]), sid: Number(fields[3]), comm };
}

/** Which processes count as the runner's (see the top of this file). */
function detectMode() {
  const others = listPids().filter((pid) => pid !== SELF && pid !== 1);
  if (others.length === 0 && (SELF === 1 || process.ppid === 1)) return 'namespace';
  const self = statOf(SELF);
  if (self !== null && self.sid === SELF) return 'session';
  return 'tree';
}

function alive(stat) {
  return stat !== null && stat.state !== 'Z' && stat.state !== 'X' && stat.state !== 'x';
}

class ProcessWatch {
  constructor() {
    this.mode = detectMode();
    this.baseline = new Set();
  }

  /**
   * Live processes of the runner's (by mode), without the runner itself: [{pid, comm}].
   * `children`: pids of direct children (in session mode, their own sessions count too).
   */
  scan(children = new Set()) {
    const found = [];
    if (this.mode === 'namespace') {
      for (const pid of listPids()) {
        if (pid === SELF || pid === 1) continue;
        const stat = statOf(pid);
        if (alive(stat)) found.push({ pid, comm: stat.comm });
      }
      return found;
    }
    const stats = new Map();
    for (const pid of listPids()) {
      if (pid === SELF) continue;
      const stat = statOf(pid);
      if (stat !== null) stats.set(pid, stat);
    }
    if (this.mode === 'session') {
      for (const [pid, stat] of stats) {
        if ((stat.sid === SELF || children.has(stat.sid)) && alive(stat)) found.push({ pid, comm: stat.comm });
      }
      return found;
    }
    const ours = new Set([SELF]);
    let grew = true;
    while (grew) {
      grew = false;
      for (const [pid, stat] of stats) {
        if (!ours.has(pid) && ours.has(stat.ppid)) {
          ours.add(pid);
          grew = true;
        }
      }
    }
    for (const [pid, stat] of stats) if (ours.has(pid) && alive(stat)) found.push({ pid, comm: stat.comm });
    return found;
  }

  /** Remember what runs now (processes the modules started while loading) as never counting. */
  takeBaseline() {
    this.baseline = new Set(this.scan().map((p) => p.pid));
  }

  /** Processes still running that are not in the baseline nor in `exclude` (pids already killed). */
  leftovers(exclude) {
    return this.scan(exclude).filter((p) => !this.baseline.has(p.pid) && !exclude.has(p.pid));
  }
}

module.exports = { ProcessWatch, statOf, listPids };
