// Replies with the context (its data; getTwilioClient reported as its type).
exports.handler = (context, event, callback) => {
  const data = {};
  for (const [key, value] of Object.entries(context)) {
    data[key] = typeof value === 'function' ? `<${typeof value}>` : value;
  }
  return callback(null, data);
};
