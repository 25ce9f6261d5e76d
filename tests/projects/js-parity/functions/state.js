// Module state: kept by a warm worker between invocations; twilio-run (--live) reloads the module per request.
let count = 0;
exports.handler = (context, event, callback) => {
  count += 1;
  return callback(null, { count });
};
