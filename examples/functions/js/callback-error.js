// "How do I return an error?": the fragment `return callback(error);`, verbatim, with an error
// to return (an Error object: a 500 with {"message", "name"}).
exports.handler = (context, event, callback) => {
  const error = new Error("Something went wrong");
  return callback(error);
};
