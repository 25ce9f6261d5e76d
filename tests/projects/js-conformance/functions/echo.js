// Replies with the event it was given.
exports.handler = (context, event, callback) => callback(null, event);
