exports.handler = (context, event, callback) => callback(null, event.value !== 'false');
