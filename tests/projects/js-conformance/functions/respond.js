// One handler, many ways to call back (the callback table of behavior.md), picked by `event.mode`.
const os = require('os');

const IDENTITY = `${os.hostname()}:${process.pid}`;

class QuotaError extends Error {
  constructor(message) {
    super(message);
    this.name = 'QuotaError';
  }
}

function twiml(kind) {
  if (kind === 'messaging') {
    const response = new Twilio.twiml.MessagingResponse();
    response.message('Hello, World!');
    return response;
  }
  if (kind === 'voice') {
    const response = new Twilio.twiml.VoiceResponse();
    response.say({ voice: 'alice' }, 'Ahoy');
    response.play('https://demo.twilio.com/docs/classic.mp3');
    return response;
  }
  const response = new Twilio.twiml.FaxResponse();
  response.receive({ action: '/fax/received' });
  return response;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

exports.handler = (context, event, callback) => {
  const mode = event.mode;
  const n = Number(event.n || '0');
  switch (mode) {
    case 'none': return callback();
    case 'null': return callback(null);
    case 'null-null': return callback(null, null);
    case 'undefined-undefined': return callback(undefined, undefined);
    case 'text': return callback(null, 'This is fine');
    case 'unicode': return callback(null, 'héllo ✓ 🎉');
    case 'empty-string': return callback(null, '');
    case 'object': return callback(null, { a: 1, b: [1, 2], c: null, d: 'ü' });
    case 'array': return callback(null, [1, 'two', null, { x: true }]);
    case 'true': return callback(null, true);
    case 'false': return callback(null, false);
    case 'number': return callback(null, 42);
    case 'float': return callback(null, 1.5);
    case 'zero': return callback(null, 0);
    case 'twiml-messaging': return callback(null, twiml('messaging'));
    case 'twiml-voice': return callback(null, twiml('voice'));
    case 'twiml-fax': return callback(null, twiml('fax'));
    case 'buffer': return callback(null, Buffer.from(Array.from({ length: 1024 }, (_, i) => i % 256)));
    case 'uint8array': return callback(null, new Uint8Array([0, 255, 13, 10, 27, 0, 255, 13, 10, 27]));
    case 'falsy-error-empty-string': return callback('', 'falsy error means success');
    case 'falsy-error-zero': return callback(0, 'falsy error means success');
    case 'falsy-error-false': return callback(false, 'falsy error means success');
    case 'error-string': return callback('Something went very, very wrong.');
    case 'error-error': return callback(new Error('bad value'));
    case 'error-type-error': return callback(new TypeError('wrong type'));
    case 'error-custom': return callback(new QuotaError('over quota'));
    case 'error-object': return callback({ code: 20404, detail: 'not found' });
    case 'error-array': return callback(['a', 1]);
    case 'error-number': return callback(42);
    case 'throw': throw new RangeError('handler blew up');
    case 'throw-string': throw 'a thrown string'; // eslint-disable-line no-throw-literal
    case 'returned-rejection': return Promise.reject(new TypeError('rejected promise'));
    case 'unhandled-rejection':
      // Nobody awaits or catches this, and the callback is never called.
      Promise.reject(new SyntaxError('nobody caught me'));
      return undefined;
    case 'uncaught-exception':
      setTimeout(() => {
        throw new EvalError('uncaught in a timer');
      }, 20);
      return undefined;
    case 'first-wins':
      callback(null, 'first');
      return callback(null, 'second');
    case 'first-wins-error':
      callback(null, 'first');
      return callback('second is an error');
    case 'error-then-success':
      callback('first error');
      return callback(null, 'second');
    case 'throw-after-callback':
      callback(null, 'done');
      throw new Error('thrown after the callback');
    case 'timer-callback':
      setTimeout(() => callback(null, 'from a timer'), 50);
      return undefined;
    case 'promise-callback':
      Promise.resolve().then(() => callback(null, 'from a promise'));
      return undefined;
    case 'big-text': return callback(null, 'x'.repeat(n));
    case 'big-multibyte': return callback(null, 'é'.repeat(n));
    case 'big-buffer': return callback(null, Buffer.alloc(n, 0xab));
    case 'big-json': return callback(null, { data: 'x'.repeat(n) });
    case 'big-response': return callback(null, new Twilio.Response().setBody('y'.repeat(n)));
    case 'whoami': return callback(null, IDENTITY);
    case 'memory': {
      const hog = [];
      for (;;) hog.push(Buffer.alloc(16 * 1024 * 1024, 1));
    }
    case 'exit':
      process.exit(3);
      return undefined;
    default: return callback(null, `unknown mode ${mode}`);
  }
};

