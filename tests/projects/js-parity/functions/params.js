// The request parameters (query, form, JSON body merged), without event.request.
exports.handler = (context, event, callback) => {
  const { request, ...params } = event;
  return callback(null, params);
};
