exports.handler = (context, event, callback) => callback(null, { custom: event.request.headers['x-custom'] });
