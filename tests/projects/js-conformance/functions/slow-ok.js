// Calls back after 1.5 s: fine under the default 10 s limit, while /slow is capped at 1 s.
exports.handler = (context, event, callback) => {
  setTimeout(() => callback(null, 'finished within the default limit'), 1500);
};
