// An `async` handler: the returned promise matters only when it rejects before the callback.
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

exports.handler = async (context, event, callback) => {
  const mode = event.mode;
  if (mode === 'await') {
    await sleep(20);
    return callback(null, 'async fine');
  }
  if (mode === 'throw') {
    await sleep(5);
    throw new TypeError('async bad');
  }
  if (mode === 'resolve-without-callback') {
    // Resolving the promise is not calling back: the time limit decides.
    return 'not a reply';
  }
  return callback(null, `unknown mode ${mode}`);
};
