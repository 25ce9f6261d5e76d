// "How do I return a successful response?": the fragment `return callback(null, response);`,
// verbatim, with a response to return (an object: a 200 with JSON).
exports.handler = (context, event, callback) => {
  const response = { ok: true };
  return callback(null, response);
};
