'use strict';
/** The runner -> engine stream: whole frames, written synchronously on the protocol descriptor. */

const { realExit } = require('./process_guard');
const { DEFAULT_LIMITS } = require('./limits');
const { encodeFrame } = require('./framing');
const { writeAll, writeCrash } = require('./stdio');

class Channel {
  constructor(fd) {
    this.fd = fd;
    this.maxFrameBytes = DEFAULT_LIMITS.max_frame_bytes;
  }

  /** Send one message; throws FrameTooLarge (nothing written) when it does not fit a frame. */
  send(message) {
    this.sendBytes(encodeFrame(message, this.maxFrameBytes));
  }

  /** Send an already encoded frame. The engine gone (EPIPE) means there is nobody left to serve. */
  sendBytes(frame) {
    try {
      writeAll(this.fd, frame);
    } catch (err) {
      if (err.code === 'EPIPE' || err.code === 'EBADF') {
        writeCrash(`runner: protocol stream closed (${err.code}); exiting\n`);
        realExit(0);
      }
      throw err;
    }
  }
}

module.exports = { Channel };
