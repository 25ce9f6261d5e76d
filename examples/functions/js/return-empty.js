exports.handler = (context, event, callback) => {
  // Providing neither error nor response will result in a 200 OK
  return callback();
};
