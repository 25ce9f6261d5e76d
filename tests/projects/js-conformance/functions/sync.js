exports.handler = (context, event, callback) => {
  const sync = Runtime.getSync();
  return callback(null, { type: sync.constructor.name });
};
