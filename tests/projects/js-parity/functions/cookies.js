exports.handler = (context, event, callback) => callback(null, event.request.cookies);
