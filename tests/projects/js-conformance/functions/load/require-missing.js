const missing = require('module-that-does-not-exist-4f2a');

exports.handler = (context, event, callback) => callback(null, missing);
