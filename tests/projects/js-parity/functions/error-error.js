exports.handler = (context, event, callback) => callback(new TypeError('bad value'));
