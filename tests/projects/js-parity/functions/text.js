exports.handler = (context, event, callback) => callback(null, 'This is fine');
