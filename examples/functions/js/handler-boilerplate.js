exports.handler = (context, event, callback) => {
  // Your application logic

  // To emit a response and stop execution, call the callback() method
  return callback();
};
