exports.handler = (context, event, callback) => {
  // Providing a single string or an Error object will result in a 500 Error
  return callback("Something went very, very wrong.");
};
