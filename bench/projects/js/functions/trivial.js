// Trivial: a short string, nothing else (measures the platform, not the handler).
exports.handler = function (context, event, callback) {
  return callback(null, 'This is fine');
};
