exports.handler = (context, event, callback) => {
  return callback(null, 'never';
};
